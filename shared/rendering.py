"""Renders an app's Kubernetes objects for one region, from the config and a pinned image.

Pure and deterministic: the same config, region and digest give byte-identical objects
and the same manifest hash, so a rollback to a digest reproduces its original release
exactly. Structured objects only; nothing is templated as text.

Per the app's source (shared/manifest_sources.py): `builtin` renders the seed article's
app in current API versions (apps/v1, autoscaling/v2, policy/v1), whose Deployment never
sets `replicas` (the HPA owns that field); a template or directory renders the documents
loaded with the config, in their order, with the placeholders substituted, geodeploy's
labels added and the app's Namespace first when they lack it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, NamedTuple

from shared.config import App, Config, Probe, Region
from shared.contracts import ImageRef
from shared.manifest_sources import BUILTIN, Placeholder, substitute_placeholders

__all__ = ["HealthTarget", "RenderedRelease", "object_key", "render_namespace", "render_release"]

Object = dict[str, Any]

MANAGED_BY = "geodeploy"
REGION_LABEL = "geodeploy.dev/region"
ZONE_LABEL = "geodeploy.dev/zone"
NAME_LABEL = "app.kubernetes.io/name"
# The kinds whose rollout a release waits for (apps/v1 only: a CRD may reuse the names).
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


class HealthTarget(NamedTuple):
    """A workload a release is healthy only when it has rolled out."""

    kind: str
    namespace: str
    name: str


@dataclass(frozen=True)
class RenderedRelease:
    objects: tuple[Object, ...]
    manifest_hash: str
    health_targets: tuple[HealthTarget, ...]  # in document order

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump_all(list(self.objects), sort_keys=True, default_flow_style=False)

    def find(self, kind: str) -> Object:
        return next(o for o in self.objects if o["kind"] == kind)


def object_key(obj: Object) -> str:
    """`Deployment/shop/shop`: how reports and logs name an object."""
    ns = obj["metadata"].get("namespace")
    return f"{obj['kind']}/{ns}/{obj['metadata']['name']}" if ns else f"{obj['kind']}/{obj['metadata']['name']}"


def _labels(app: App, region: Region) -> dict[str, str]:
    return {
        NAME_LABEL: app.name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        REGION_LABEL: region.name,
        ZONE_LABEL: region.cluster.location,
    }


def render_namespace(app: App, region: Region) -> Object:
    """The app's Namespace exactly as a release applies it (the RBAC bundle creates it first)."""
    return _namespace(app, _labels(app, region))


def render_release(config: Config, app: App, region: Region, image: ImageRef) -> RenderedRelease:
    labels = _labels(app, region)
    if app.source.kind == BUILTIN:
        objects = _builtin_objects(config, app, region, image, labels)
    else:
        objects = _brought_objects(config, app, region, image, labels)
    return RenderedRelease(objects, manifest_hash(objects), _health_targets(objects))


def _builtin_objects(
    config: Config, app: App, region: Region, image: ImageRef, labels: dict[str, str]
) -> tuple[Object, ...]:
    steered = config.cloudflare.app == app.name
    return (
        _namespace(app, labels),
        _service(app, region, labels, steered),
        _deployment(config, app, image, labels),
        _autoscaler(app, labels),
        _disruption_budget(app, labels),
    )


def placeholder_values(app: App, region: Region, image: ImageRef) -> dict[Placeholder, str]:
    return {
        Placeholder.IMAGE: image.reference,
        Placeholder.ZONE: region.cluster.location,
        Placeholder.IP: region.static_ip.address,
        Placeholder.REGION: region.name,
        Placeholder.NAMESPACE: app.namespace,
        Placeholder.APP: app.name,
    }


def _brought_objects(
    config: Config, app: App, region: Region, image: ImageRef, labels: dict[str, str]
) -> tuple[Object, ...]:
    values = placeholder_values(app, region, image)
    # substitute_placeholders copies: nothing rendered shares state with the loaded config.
    objects = [_with_labels(substitute_placeholders(d.body, values), labels) for d in app.source.documents]
    for obj in objects:
        spec = obj.get("spec")
        if obj["kind"] == "Deployment" and isinstance(spec, dict):
            # The deadline the deploy's watch and redeliveries are planned around (the
            # config refuses a document that sets another).
            spec.setdefault("progressDeadlineSeconds", config.rollout.progress_deadline_seconds)
    if not any(obj["kind"] == "Namespace" for obj in objects):
        objects.insert(0, _namespace(app, labels))
    return tuple(objects)


def _with_labels(obj: Object, labels: dict[str, str]) -> Object:
    """geodeploy's labels on the object itself (ours win for our keys: they say what
    geodeploy owns); never on selectors or pod templates, whose changes Kubernetes refuses
    or rolls out."""
    meta = obj["metadata"]
    return {**obj, "metadata": {**meta, "labels": {**meta.get("labels", {}), **labels}}}


def _health_targets(objects: tuple[Object, ...]) -> tuple[HealthTarget, ...]:
    return tuple(
        HealthTarget(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        for obj in objects
        if obj["apiVersion"] == "apps/v1" and obj["kind"] in WORKLOAD_KINDS
    )


def manifest_hash(objects: tuple[Object, ...] | list[Object]) -> str:
    canonical = json.dumps(list(objects), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _meta(app: App, name: str, labels: dict[str, str]) -> Object:
    return {"name": name, "namespace": app.namespace, "labels": dict(labels)}


def _namespace(app: App, labels: dict[str, str]) -> Object:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": app.namespace, "labels": dict(labels)}}


def _service(app: App, region: Region, labels: dict[str, str], steered: bool) -> Object:
    m = app.manifests
    spec: Object = {
        "selector": {NAME_LABEL: app.name},
        "ports": [{"name": "http", "port": m.service_port, "targetPort": "http", "protocol": "TCP"}],
    }
    if steered:
        # The region's reserved static IP is what its Cloudflare pool points at.
        spec["type"] = "LoadBalancer"
        spec["loadBalancerIP"] = region.static_ip.address
    else:
        spec["type"] = "ClusterIP"
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(app, app.name, labels), "spec": spec}


def _probe(probe: Probe) -> Object:
    return {
        "httpGet": {"path": probe.path, "port": "monitoring"},
        "initialDelaySeconds": probe.initial_delay_seconds,
        "timeoutSeconds": probe.timeout_seconds,
        "periodSeconds": probe.period_seconds,
        "failureThreshold": probe.failure_threshold,
        "successThreshold": probe.success_threshold,
    }


def _deployment(config: Config, app: App, image: ImageRef, labels: dict[str, str]) -> Object:
    m = app.manifests
    container: Object = {
        "name": m.container_name,
        "image": image.reference,
        "ports": [
            {"name": "http", "containerPort": m.traffic_port, "protocol": "TCP"},
            {"name": "monitoring", "containerPort": m.monitoring_port, "protocol": "TCP"},
        ],
        "resources": {
            "requests": {"cpu": m.resources.requests_cpu, "memory": m.resources.requests_memory},
            "limits": {"cpu": m.resources.limits_cpu, "memory": m.resources.limits_memory},
        },
        "readinessProbe": _probe(m.readiness),
        "livenessProbe": _probe(m.liveness),
    }
    if m.env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(m.env.items())]
    anti_affinity = {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 100,
                "podAffinityTerm": {
                    "topologyKey": "kubernetes.io/hostname",
                    "labelSelector": {
                        "matchExpressions": [{"key": NAME_LABEL, "operator": "In", "values": [app.name]}]
                    },
                },
            }
        ]
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(app, app.name, labels),
        "spec": {
            # No `replicas`: the HPA owns it (setting it here would fight every scale-up).
            "revisionHistoryLimit": m.revision_history_limit,
            "progressDeadlineSeconds": config.rollout.progress_deadline_seconds,
            "selector": {"matchLabels": {NAME_LABEL: app.name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": m.max_unavailable, "maxSurge": m.max_surge},
            },
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "affinity": {"podAntiAffinity": anti_affinity},
                    "containers": [container],
                },
            },
        },
    }


def _autoscaler(app: App, labels: dict[str, str]) -> Object:
    m = app.manifests
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(app, app.name, labels),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app.name},
            "minReplicas": m.min_replicas,
            "maxReplicas": m.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": m.cpu_target_percent},
                    },
                }
            ],
        },
    }


def _disruption_budget(app: App, labels: dict[str, str]) -> Object:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(app, app.name, labels),
        "spec": {"minAvailable": app.manifests.min_available, "selector": {"matchLabels": {NAME_LABEL: app.name}}},
    }
