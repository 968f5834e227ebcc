"""Old Kubernetes API versions in the manifests an app brings: upgraded to the version
clusters serve today where the conversion is mechanical, refused where it is not.

Pure. `upgrade_document` returns a new object and the notes a caller logs; a refusal is a
FieldError naming the field, which the caller places in its file and document.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

__all__ = ["REMOVED_API_VERSIONS", "FieldError", "upgrade_document"]

Object = dict[str, Any]


class FieldError(ValueError):
    """A problem at one field of a manifest; `path` reads like `spec.metrics[0].resource`."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


# API versions Kubernetes no longer serves, with the release that removed the last of
# their kinds (kubernetes.io/docs/reference/using-api/deprecation-guide).
REMOVED_API_VERSIONS = {
    "extensions/v1beta1": "1.22",
    "apps/v1beta1": "1.16",
    "apps/v1beta2": "1.16",
    "policy/v1beta1": "1.25",
    "autoscaling/v2beta1": "1.25",
    "autoscaling/v2beta2": "1.26",
    "batch/v1beta1": "1.25",
    "networking.k8s.io/v1beta1": "1.22",
    "rbac.authorization.k8s.io/v1alpha1": "1.22",
    "rbac.authorization.k8s.io/v1beta1": "1.22",
    "admissionregistration.k8s.io/v1beta1": "1.22",
    "apiextensions.k8s.io/v1beta1": "1.22",
    "apiregistration.k8s.io/v1beta1": "1.22",
    "authentication.k8s.io/v1beta1": "1.22",
    "authorization.k8s.io/v1beta1": "1.22",
    "certificates.k8s.io/v1beta1": "1.22",
    "coordination.k8s.io/v1beta1": "1.22",
    "scheduling.k8s.io/v1beta1": "1.22",
    "discovery.k8s.io/v1beta1": "1.25",
    "events.k8s.io/v1beta1": "1.25",
    "node.k8s.io/v1beta1": "1.25",
    "storage.k8s.io/v1beta1": "1.27",
    "flowcontrol.apiserver.k8s.io/v1beta1": "1.26",
    "flowcontrol.apiserver.k8s.io/v1beta2": "1.29",
    "flowcontrol.apiserver.k8s.io/v1beta3": "1.32",
}

_OLD_APPS_VERSIONS = ("extensions/v1beta1", "apps/v1beta1", "apps/v1beta2")
_APPS_V1_DEFAULTS = {"revisionHistoryLimit": "revisionHistoryLimit 10", "strategy": "rollingUpdate 25%/25%"}
_INGRESS_REFUSAL = (
    "cannot be upgraded mechanically: networking.k8s.io/v1 changed the shape of spec.backend (now "
    "spec.defaultBackend) and of every rule's backend (serviceName/servicePort → service.name and "
    "service.port.number or service.port.name), and each path needs a pathType; rewrite it in networking.k8s.io/v1"
)


def upgrade_document(document: Object) -> tuple[Object, list[str]]:
    """`document` in a served API version (a copy when anything changed) and one note per
    change; raises FieldError when it cannot be upgraded."""
    api_version, kind = document["apiVersion"], document["kind"]
    if kind == "Ingress" and api_version in ("extensions/v1beta1", "networking.k8s.io/v1beta1"):
        raise FieldError("apiVersion", f"{api_version} Ingress {_INGRESS_REFUSAL}")
    upgrade = _UPGRADES.get((api_version, kind))
    if upgrade is None and api_version in REMOVED_API_VERSIONS:
        raise FieldError(
            "apiVersion",
            f"{api_version} {kind} is no longer served (removed in Kubernetes {REMOVED_API_VERSIONS[api_version]}) "
            "and geodeploy does not upgrade it: write it in its current API version",
        )
    upgraded, notes = copy.deepcopy(document), []
    if upgrade is not None:
        target, convert = upgrade
        upgraded["apiVersion"] = target
        notes.append(f"{api_version} {kind} upgraded to {target}")
        notes += convert(upgraded)
    if kind == "HorizontalPodAutoscaler":
        notes += _upgrade_scale_target(upgraded)
    return (upgraded, notes) if notes else (document, [])


def _spec(document: Object) -> Object:
    spec = document.get("spec")
    if not isinstance(spec, dict):
        raise FieldError("spec", "required: a mapping")
    return spec


def _upgrade_deployment(document: Object) -> list[str]:
    spec, notes = _spec(document), []
    if "rollbackTo" in spec:
        # Gone in apps/v1: a rollback is a new release of an earlier digest.
        raise FieldError("spec.rollbackTo", "not in apps/v1; remove it (geodeploy rolls back by redeploying a digest)")
    if not spec.get("selector"):
        template = spec.get("template")
        labels = template.get("metadata", {}).get("labels") if isinstance(template, dict) else None
        if not isinstance(labels, dict) or not labels:
            raise FieldError(
                "spec.selector",
                "required in apps/v1, and spec.template.metadata.labels is empty, so there is nothing to fill it from",
            )
        # What the old versions defaulted to, written out: apps/v1 no longer defaults it.
        spec["selector"] = {"matchLabels": dict(labels)}
        notes.append("spec.selector.matchLabels filled from spec.template.metadata.labels (required in apps/v1)")
    # The old versions defaulted these differently (extensions/v1beta1: every old
    # ReplicaSet kept, 1 pod unavailable / 1 surge); say so rather than change silently.
    silent = [default for field, default in _APPS_V1_DEFAULTS.items() if field not in spec]
    if silent:
        notes.append(f"apps/v1 defaults apply where the document is silent: {', '.join(silent)}")
    return notes


def _upgrade_disruption_budget(document: Object) -> list[str]:
    if not _spec(document).get("selector"):
        raise FieldError(
            "spec.selector",
            "an empty or missing selector protects no pod in policy/v1beta1 but every pod of the namespace in "
            "policy/v1: write the labels of the pods it protects",
        )
    return []


def _upgrade_autoscaler_v2beta1(document: Object) -> list[str]:
    spec = _spec(document)
    metrics = spec.get("metrics", [])
    if not isinstance(metrics, list):
        raise FieldError("spec.metrics", "must be a list")
    spec["metrics"] = [_metric_v2(metric, f"spec.metrics[{i}]") for i, metric in enumerate(metrics)]
    return ["spec.metrics rewritten to autoscaling/v2 targets"] if metrics else []


# Per v2beta1 metric type: its source key, and how its fields map to a v2 metric.
_METRIC_NAME_FIELD = {"Resource": "name", "Pods": "metricName", "Object": "metricName", "External": "metricName"}
_METRIC_SELECTOR_FIELD = {"Pods": "selector", "Object": "selector", "External": "metricSelector"}
_TARGET_FIELDS = {
    "targetAverageUtilization": ("Utilization", "averageUtilization"),
    "targetAverageValue": ("AverageValue", "averageValue"),
    "targetValue": ("Value", "value"),
    "averageValue": ("AverageValue", "averageValue"),  # ObjectMetricSource only
}


def _metric_v2(metric: Any, path: str) -> Object:
    metric_type = metric.get("type") if isinstance(metric, dict) else None
    if metric_type not in _METRIC_NAME_FIELD:
        raise FieldError(f"{path}.type", f"{metric_type!r} is not an autoscaling/v2beta1 metric type")
    key = metric_type.lower()
    source = metric.get(key)
    if not isinstance(source, dict):
        raise FieldError(f"{path}.{key}", "required: a mapping")
    source, path = dict(source), f"{path}.{key}"
    name_field, selector_field = _METRIC_NAME_FIELD[metric_type], _METRIC_SELECTOR_FIELD.get(metric_type)
    targets = [field for field in _TARGET_FIELDS if field in source]
    if len(targets) != 1:
        raise FieldError(path, f"needs exactly one target ({', '.join(_TARGET_FIELDS)}), has {len(targets)}")
    target_type, value_field = _TARGET_FIELDS[targets[0]]
    converted: Object = {"target": {"type": target_type, value_field: source.pop(targets[0])}}
    name = source.pop(name_field, None)
    if not isinstance(name, str) or not name:
        raise FieldError(f"{path}.{name_field}", "required: the metric's name")
    if metric_type == "Resource":
        converted["name"] = name
    else:
        converted["metric"] = {"name": name}
        if selector_field in source:
            converted["metric"]["selector"] = source.pop(selector_field)
    if metric_type == "Object":
        converted["describedObject"] = source.pop("target", None)
    if source:
        raise FieldError(f"{path}.{sorted(source)[0]}", "not an autoscaling/v2beta1 field geodeploy can convert")
    return {"type": metric_type, key: converted}


def _upgrade_scale_target(document: Object) -> list[str]:
    """An autoscaler of any version may still point at an old apps version of its target."""
    spec = document.get("spec")
    ref = spec.get("scaleTargetRef") if isinstance(spec, dict) else None
    if isinstance(ref, dict) and ref.get("apiVersion") in _OLD_APPS_VERSIONS:
        old, ref["apiVersion"] = ref["apiVersion"], "apps/v1"
        return [f"spec.scaleTargetRef.apiVersion {old} upgraded to apps/v1"]
    return []


def _unchanged(document: Object) -> list[str]:
    return []


# (old apiVersion, kind) → (target apiVersion, the conversion beyond the apiVersion).
_UPGRADES: dict[tuple[str, str], tuple[str, Callable[[Object], list[str]]]] = {
    **{(old, "Deployment"): ("apps/v1", _upgrade_deployment) for old in _OLD_APPS_VERSIONS},
    ("policy/v1beta1", "PodDisruptionBudget"): ("policy/v1", _upgrade_disruption_budget),
    ("autoscaling/v2beta1", "HorizontalPodAutoscaler"): ("autoscaling/v2", _upgrade_autoscaler_v2beta1),
    ("autoscaling/v2beta2", "HorizontalPodAutoscaler"): ("autoscaling/v2", _unchanged),  # the same schema
    ("batch/v1beta1", "CronJob"): ("batch/v1", _unchanged),
}
