"""The Kubernetes RBAC each function needs in one region's cluster, rendered from the
access table in shared/topology.py. Pure.

Per function that connects to the cluster and per app: a Role in the app's namespace
with the table's rules (limited to the app's objects by resourceNames, except a POST
create, which names no object when it is authorized), bound to the Kubernetes user
GKE maps the function's Google identity to (its service-account email). The one
cluster-scoped grant is get/patch on the apps' own Namespaces, by name. The bundle starts
with the Namespaces themselves: a Role needs its namespace, and so no function needs to
create one. `geodeploy rbac --region R` prints it for the cluster's admin to apply.
"""

from __future__ import annotations

from typing import Any

from shared.config import App, Config, Region
from shared.releases import record_name
from shared.rendering import MANAGED_BY, render_namespace
from shared.topology import KubeRule, Names, functions_of, service_account_email
from shared.traffic import reconcile_mark_name

__all__ = ["render_rbac"]

Object = dict[str, Any]
RBAC_API = "rbac.authorization.k8s.io/v1"
_LABELS = {"app.kubernetes.io/managed-by": MANAGED_BY}


def render_rbac(config: Config, region: Region) -> list[Object]:
    """Namespaces, then each function's Roles and bindings, for `region`'s cluster."""
    objects: list[Object] = [render_namespace(app, region) for app in config.apps]
    for spec in functions_of(config):
        if region.name not in spec.access.clusters or not spec.access.kube:
            continue
        user = service_account_email(config, spec.identity)
        name = f"{config.name}-{spec.identity.replace('_', '-')}"
        namespaced = [r for r in spec.access.kube if r.names != Names.NAMESPACE]
        for app in config.apps:
            meta = {"name": name, "namespace": app.namespace, "labels": dict(_LABELS)}
            objects.append(
                {"apiVersion": RBAC_API, "kind": "Role", "metadata": meta, "rules": _rules(namespaced, config, app)}
            )
            objects.append(_binding("RoleBinding", meta, "Role", user))
        on_namespaces = [r for r in spec.access.kube if r.names == Names.NAMESPACE]
        if on_namespaces:
            meta = {"name": f"{name}-namespaces", "labels": dict(_LABELS)}
            rules = [_rule(r, [a.namespace for a in config.apps]) for r in on_namespaces]
            objects.append({"apiVersion": RBAC_API, "kind": "ClusterRole", "metadata": meta, "rules": rules})
            objects.append(_binding("ClusterRoleBinding", meta, "ClusterRole", user))
    return objects


def _rules(rules: list[KubeRule], config: Config, app: App) -> list[Object]:
    names = {
        Names.RECORD: [record_name(app.name)],
        Names.APP: [app.name],
        Names.RECONCILE_MARK: [reconcile_mark_name(config, app.name)],
        Names.ANY: [],
    }
    return [_rule(r, names[r.names]) for r in rules]


def _rule(rule: KubeRule, names: list[str]) -> Object:
    out: Object = {"apiGroups": [rule.api_group], "resources": [rule.resource], "verbs": list(rule.verbs)}
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
