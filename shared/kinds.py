"""The Kubernetes kinds geodeploy can apply, and where each lives in the API. Pure.

geodeploy speaks to fixed REST paths (no discovery round-trips), grants RBAC on fixed
resources, and refuses at config load a brought document it could not apply; all three
read this one table, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KINDS", "Kind", "kind_of", "supported"]

CORE_API_PREFIX = "/api/v1"  # the core group ("") is served under /api, every other under /apis


@dataclass(frozen=True)
class Kind:
    api_version: str  # e.g. apps/v1; v1 for the core group
    kind: str
    plural: str  # the REST path segment, which RBAC also names the resource by
    namespaced: bool

    @property
    def api_group(self) -> str:
        """The group RBAC's apiGroups names: "" for the core group."""
        return self.api_version.rpartition("/")[0]

    @property
    def rbac_resource(self) -> str:
        return self.plural

    @property
    def path_prefix(self) -> str:
        return f"/apis/{self.api_version}" if self.api_group else CORE_API_PREFIX


KINDS: tuple[Kind, ...] = (
    Kind("v1", "Namespace", "namespaces", namespaced=False),
    Kind("v1", "Service", "services", namespaced=True),
    Kind("v1", "ConfigMap", "configmaps", namespaced=True),
    Kind("v1", "Secret", "secrets", namespaced=True),
    Kind("v1", "ServiceAccount", "serviceaccounts", namespaced=True),
    Kind("v1", "PersistentVolumeClaim", "persistentvolumeclaims", namespaced=True),
    Kind("v1", "Pod", "pods", namespaced=True),
    Kind("apps/v1", "Deployment", "deployments", namespaced=True),
    Kind("apps/v1", "StatefulSet", "statefulsets", namespaced=True),
    Kind("apps/v1", "DaemonSet", "daemonsets", namespaced=True),
    Kind("batch/v1", "Job", "jobs", namespaced=True),
    Kind("batch/v1", "CronJob", "cronjobs", namespaced=True),
    Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", namespaced=True),
    Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", namespaced=True),
    Kind("networking.k8s.io/v1", "Ingress", "ingresses", namespaced=True),
    Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", namespaced=True),
)
_BY_KEY = {(k.api_version, k.kind): k for k in KINDS}


def kind_of(api_version: str, kind: str) -> Kind | None:
    """The table's entry for (apiVersion, kind); None when geodeploy cannot apply it."""
    return _BY_KEY.get((api_version, kind))


def supported() -> list[str]:
    """`apps/v1 Deployment`, …: what an error lists as accepted."""
    return [f"{k.api_version} {k.kind}" for k in KINDS]
