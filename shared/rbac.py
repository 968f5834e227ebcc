"""The Kubernetes RBAC each function needs in one region's cluster, rendered from the
access table in shared/topology.py. Pure.

Per function that connects to the cluster and per app: a Role in the app's namespace
with the table's rules (limited to the app's objects by resourceNames, except a POST
create, which names no object when it is authorized), a rule on a part of what the app
renders (topology.Rendered) becoming one rule per resource of the part, with the names
the app's release gives them in this region; bound to the Kubernetes user
GKE maps the function's Google identity to (its service-account email). The one
cluster-scoped grant is get/patch on the apps' own Namespaces, by name. The bundle starts
with the Namespaces themselves: a Role needs its namespace, and so no function needs to
create one. `geodeploy rbac --region R` prints it for the cluster's admin to apply.
"""

from __future__ import annotations

from typing import Any

from shared.config import App, Config, Region
from shared.kinds import KINDS, Kind, kind_of
from shared.manifest_sources import BUILTIN
from shared.releases import record_name
from shared.rendering import (
    MANAGED_BY,
    HealthTarget,
    RenderedRelease,
    object_key,
    render_namespace,
    render_shape,
)
from shared.status import drift_mark_name
from shared.topology import (
    KubeRule,
    Names,
    Rendered,
    Resource,
    functions_of,
    service_account_email,
)
from shared.traffic import reconcile_mark_name

__all__ = ["render_rbac", "rendered_resources"]

Object = dict[str, Any]
RBAC_API = "rbac.authorization.k8s.io/v1"
_LABELS = {"app.kubernetes.io/managed-by": MANAGED_BY}


def render_rbac(config: Config, region: Region) -> list[Object]:
    """Namespaces, then each function's Roles and bindings, for `region`'s cluster."""
    objects: list[Object] = [render_namespace(app, region) for app in config.apps]
    rendered = {app.name: rendered_resources(config, app, region) for app in config.apps}
    for spec in functions_of(config):
        if region.name not in spec.access.clusters or not spec.access.kube:
            continue
        user = service_account_email(config, spec.identity)
        name = f"{config.name}-{spec.identity.replace('_', '-')}"
        namespaced = [r for r in spec.access.kube if r.names != Names.NAMESPACE]
        for app in config.apps:
            meta = {"name": name, "namespace": app.namespace, "labels": dict(_LABELS)}
            rules = _rules(namespaced, config, app, rendered[app.name])
            objects.append({"apiVersion": RBAC_API, "kind": "Role", "metadata": meta, "rules": rules})
            objects.append(_binding("RoleBinding", meta, "Role", user))
        on_namespaces = [r for r in spec.access.kube if r.names == Names.NAMESPACE]
        if on_namespaces:
            meta = {"name": f"{name}-namespaces", "labels": dict(_LABELS)}
            rules = [_rule(r.resource, r.verbs, [a.namespace for a in config.apps]) for r in on_namespaces]
            objects.append({"apiVersion": RBAC_API, "kind": "ClusterRole", "metadata": meta, "rules": rules})
            objects.append(_binding("ClusterRoleBinding", meta, "ClusterRole", user))
    return objects


def rendered_resources(config: Config, app: App, region: Region) -> dict[Rendered, dict[Resource, list[str]]]:
    """Each part of what `app` renders in `region`: its resources, each with the names of
    its objects in document order."""
    release = render_shape(config, app, region)
    workloads = set(release.health_targets)
    scaled = _scaled(release)
    parts: dict[Rendered, dict[Resource, list[str]]] = {part: {} for part in Rendered}
    for obj in release.objects:
        kind, meta = _kind_of(obj), obj["metadata"]
        if not kind.namespaced:
            continue  # the app's Namespace: granted cluster-wide, by name (Names.NAMESPACE)
        resource = Resource(kind.api_group, kind.rbac_resource)
        if HealthTarget(obj["kind"], meta["namespace"], meta["name"]) not in workloads:
            _add(parts[Rendered.OBJECTS], resource, meta["name"])
            continue
        _add(parts[Rendered.WORKLOADS], resource, meta["name"])
        if (obj["kind"], meta["name"]) in scaled:
            _add(parts[Rendered.SCALED], Resource(kind.api_group, f"{kind.rbac_resource}/scale"), meta["name"])
    if app.source.kind != BUILTIN:
        parts[Rendered.PRUNABLE] = {Resource(k.api_group, k.rbac_resource): [] for k in KINDS if k.namespaced}
    return parts


def _kind_of(obj: Object) -> Kind:
    kind = kind_of(obj["apiVersion"], obj["kind"])
    if kind is None:  # the config refuses such a document when it loads
        raise ValueError(f"{object_key(obj)}: {obj['apiVersion']} is not a kind geodeploy can apply")
    return kind


def _scaled(release: RenderedRelease) -> set[tuple[str, str]]:
    """(kind, name) of what a deploy scales: each workload an HPA scales (once, when it
    is created, to the HPA's minimum)."""
    return {(t.kind, t.name) for t in release.health_targets if release.initial_replicas(t) is not None}


def _add(resources: dict[Resource, list[str]], resource: Resource, name: str) -> None:
    names = resources.setdefault(resource, [])
    if name not in names:
        names.append(name)


def _rules(
    rules: list[KubeRule], config: Config, app: App, rendered: dict[Rendered, dict[Resource, list[str]]]
) -> list[Object]:
    names = {
        Names.RECORD: [record_name(app.name)],
        Names.RECONCILE_MARK: [reconcile_mark_name(config, app.name)],
        Names.DRIFT_MARK: [drift_mark_name(config, app.name)],
        Names.ANY: [],
    }
    out = []
    for rule in rules:
        if not isinstance(rule.on, Rendered):
            out.append(_rule(rule.resource, rule.verbs, names[rule.names]))
            continue
        for resource, its_names in rendered[rule.on].items():
            out.append(_rule(resource, rule.verbs, its_names if rule.names == Names.RENDERED else []))
    return out


def _rule(resource: Resource, verbs: tuple[str, ...], names: list[str]) -> Object:
    out: Object = {"apiGroups": [resource.api_group], "resources": [resource.resource], "verbs": list(verbs)}
    if names:
        out["resourceNames"] = names
    return out


def _binding(kind: str, meta: Object, role_kind: str, user: str) -> Object:
    return {
        "apiVersion": RBAC_API,
        "kind": kind,
        "metadata": dict(meta),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": meta["name"]},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
