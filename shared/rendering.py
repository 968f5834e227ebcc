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
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NamedTuple

from shared.config import App, Config, Probe, Region
from shared.contracts import ImageRef
from shared.manifest_sources import BUILTIN, WORKLOAD_KINDS, Placeholder, substitute_placeholders
from shared.rollout import MinAvailable, RolloutState, combine_rollouts, evaluate_workload

__all__ = [
    "HealthTarget",
    "RenderedRelease",
    "object_id",
    "object_key",
    "parse_object_id",
    "render_namespace",
    "render_release",
    "render_shape",
]

Object = dict[str, Any]

MANAGED_BY = "geodeploy"
REGION_LABEL = "geodeploy.dev/region"
ZONE_LABEL = "geodeploy.dev/zone"
NAME_LABEL = "app.kubernetes.io/name"


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
    image: str = ""  # the pinned reference every `__IMAGE__` became

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump_all(list(self.objects), sort_keys=True, default_flow_style=False)

    @property
    def inventory(self) -> tuple[str, ...]:
        """The object_id of every object a prune may remove later: all but the Namespace
        (the release record lives in it)."""
        return tuple(object_id(o) for o in self.objects if o["kind"] != "Namespace")

    def find(self, kind: str) -> Object:
        return next(o for o in self.objects if o["kind"] == kind)

    def workload(self, target: HealthTarget) -> Object:
        return next(o for o in self.objects if _target_of(o) == target)

    def min_available(self, target: HealthTarget) -> MinAvailable:
        """The minAvailable of the first PodDisruptionBudget whose matchLabels select the
        target's pods (0 without one): the least a region serves with."""
        pod_labels = _pod_labels(self.workload(target))
        for budget in (o for o in self.objects if o["kind"] == "PodDisruptionBudget"):
            spec = budget.get("spec") or {}
            selector = spec.get("selector") or {}
            match = selector.get("matchLabels") or {}
            if match and not selector.get("matchExpressions") and match.items() <= pod_labels.items():
                return spec.get("minAvailable", 0) if isinstance(spec.get("minAvailable"), int | str) else 0
        return 0

    def initial_replicas(self, target: HealthTarget) -> int | None:
        """What the HorizontalPodAutoscaler scaling the target would first scale it to
        (its minReplicas), or None when no autoscaler scales it."""
        for autoscaler in (o for o in self.objects if o["kind"] == "HorizontalPodAutoscaler"):
            spec = autoscaler.get("spec") or {}
            ref = spec.get("scaleTargetRef") or {}
            if (ref.get("kind"), ref.get("name")) == (target.kind, target.name):
                return int(spec.get("minReplicas", 1))
        return None

    def restarts(self, obj: Object) -> bool:
        """Whether `obj` is a workload running the release's own image: only such a one
        restarts its pods for every release (its pod template carries the release's
        stamp); another rolls only when its own spec changes."""
        return _target_of(obj) is not None and self.image in _container_images(obj)

    def rollout(
        self,
        live: list[Object | None],
        applied_at: datetime | None = None,
        *,
        now: datetime | None = None,
        progress_deadline_seconds: int | None = None,
    ) -> RolloutState:
        """The release's rollout from its health targets as read (`live`, in the same order);
        its image is the one running where the release puts its own."""
        combined = combine_rollouts(
            [
                (
                    f"{target.kind}/{target.namespace}/{target.name}",
                    evaluate_workload(
                        target.kind,
                        obj,
                        self.min_available(target),
                        applied_at,
                        now=now,
                        progress_deadline_seconds=progress_deadline_seconds,
                    ),
                )
                for target, obj in zip(self.health_targets, live, strict=True)
            ]
        )
        return replace(combined, image=self._running_image(live))

    def _running_image(self, live: list[Object | None]) -> str | None:
        for target, obj in zip(self.health_targets, live, strict=True):
            rendered = _container_images(self.workload(target))
            if self.image in rendered:
                running = _container_images(obj) if obj is not None else []
                index = rendered.index(self.image)
                return running[index] if index < len(running) else None
        return None


# The image the shape of a release is rendered with when only its objects' kinds, names
# and health rules are wanted (they never depend on the image).
_SHAPE_IMAGE = "shape.invalid/geodeploy@sha256:" + "0" * 64


def render_shape(config: Config, app: App, region: Region) -> RenderedRelease:
    """What a release of `app` in `region` consists of, whatever its image: for reading
    its health targets where no release is at hand (traffic, the CLI)."""
    return render_release(config, app, region, ImageRef.parse(_SHAPE_IMAGE))


def object_key(obj: Object) -> str:
    """`Deployment/shop/shop`: how reports and logs name an object."""
    ns = obj["metadata"].get("namespace")
    return f"{obj['kind']}/{ns}/{obj['metadata']['name']}" if ns else f"{obj['kind']}/{obj['metadata']['name']}"


def object_id(obj: Object) -> str:
    """`apps/v1/Deployment/web`: how a release record's inventory names an object of the
    app's namespace (the apiVersion included: the same kind in another group is another
    resource)."""
    return f"{obj['apiVersion']}/{obj['kind']}/{obj['metadata']['name']}"


def parse_object_id(found: str) -> tuple[str, str, str]:
    """(apiVersion, kind, name) of an object_id."""
    api_version, kind, name = found.rsplit("/", 2)
    return api_version, kind, name


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
    return RenderedRelease(objects, manifest_hash(objects), _health_targets(objects), image.reference)


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
    objects = [
        _with_labels(substitute_placeholders(d.body, values), labels) for d in app.source.documents_for(region.name)
    ]
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


def _target_of(obj: Object) -> HealthTarget | None:
    if obj["apiVersion"] != "apps/v1" or obj["kind"] not in WORKLOAD_KINDS:
        return None
    return HealthTarget(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])


def _health_targets(objects: tuple[Object, ...]) -> tuple[HealthTarget, ...]:
    return tuple(target for target in map(_target_of, objects) if target is not None)


def _pod_labels(workload: Object) -> dict[str, Any]:
    return (((workload.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def _container_images(workload: Object) -> list[str | None]:
    pod = ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [c.get("image") for key in ("initContainers", "containers") for c in pod.get(key) or []]


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
