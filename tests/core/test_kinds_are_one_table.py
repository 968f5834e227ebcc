"""The kinds geodeploy can apply are one table (shared/kinds.py): the Kubernetes adapter's
REST paths and scale subresource come from it, and so cannot disagree with the RBAC and
the config's refusals that read the same table."""

from __future__ import annotations

from typing import Any

import pytest

from shared.adapters import http
from shared.adapters.kube import KubeClient, KubeRejected, resource_path
from shared.kinds import KINDS, kind_of

EXPECTED_PATHS = {
    ("v1", "Namespace"): "/api/v1/namespaces/n",
    ("v1", "Service"): "/api/v1/namespaces/ns/services/n",
    ("v1", "ConfigMap"): "/api/v1/namespaces/ns/configmaps/n",
    ("v1", "Secret"): "/api/v1/namespaces/ns/secrets/n",
    ("v1", "ServiceAccount"): "/api/v1/namespaces/ns/serviceaccounts/n",
    ("v1", "PersistentVolumeClaim"): "/api/v1/namespaces/ns/persistentvolumeclaims/n",
    ("v1", "Pod"): "/api/v1/namespaces/ns/pods/n",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/ns/deployments/n",
    ("apps/v1", "StatefulSet"): "/apis/apps/v1/namespaces/ns/statefulsets/n",
    ("apps/v1", "DaemonSet"): "/apis/apps/v1/namespaces/ns/daemonsets/n",
    ("batch/v1", "Job"): "/apis/batch/v1/namespaces/ns/jobs/n",
    ("batch/v1", "CronJob"): "/apis/batch/v1/namespaces/ns/cronjobs/n",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "/apis/autoscaling/v2/namespaces/ns/horizontalpodautoscalers/n",
    ("policy/v1", "PodDisruptionBudget"): "/apis/policy/v1/namespaces/ns/poddisruptionbudgets/n",
    ("networking.k8s.io/v1", "Ingress"): "/apis/networking.k8s.io/v1/namespaces/ns/ingresses/n",
    ("networking.k8s.io/v1", "NetworkPolicy"): "/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies/n",
}


@pytest.mark.parametrize(("api_version", "kind"), sorted(EXPECTED_PATHS))
def test_the_adapter_speaks_to_each_kinds_rest_path(api_version: str, kind: str) -> None:
    assert resource_path(api_version, kind, "n", "ns") == EXPECTED_PATHS[(api_version, kind)]


def test_the_adapter_knows_exactly_the_tables_kinds() -> None:
    assert {(k.api_version, k.kind) for k in KINDS} == set(EXPECTED_PATHS)
    with pytest.raises(KubeRejected):
        resource_path("apps/v1", "ReplicaSet", "n", "ns")


def test_rbac_names_each_kind_by_its_group_and_plural() -> None:
    deployment = kind_of("apps/v1", "Deployment")
    service = kind_of("v1", "Service")
    assert deployment is not None and (deployment.api_group, deployment.rbac_resource) == ("apps", "deployments")
    assert service is not None and (service.api_group, service.rbac_resource) == ("", "services")
    assert kind_of("apps/v1beta1", "Deployment") is None


def _client(calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> KubeClient:
    def request(method: str, url: str, **kwargs: Any) -> http.Answer:
        calls.append({"method": method, "url": url, **kwargs})
        return http.Answer(200, {}, b"{}")

    monkeypatch.setattr(http, "request", request)
    return KubeClient("https://k", ca_pem=None, token=lambda: "t", field_manager="geodeploy", cluster="c")


def test_scale_patches_any_kinds_scale_subresource(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    kube = _client(calls, monkeypatch)
    kube.scale("apps/v1", "StatefulSet", "db", "shop", 2, manager="geodeploy-initial-scale")
    [call] = calls
    assert (call["method"], call["url"]) == ("PATCH", "https://k/apis/apps/v1/namespaces/shop/statefulsets/db/scale")
    assert call["body"] == {"spec": {"replicas": 2}}
    assert call["content_type"] == "application/merge-patch+json"
    assert call["query"] == [("fieldManager", "geodeploy-initial-scale")]


def test_scale_deployment_is_scale_of_a_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    kube = _client(calls, monkeypatch)
    kube.scale_deployment("shop", "shop", 3, manager="m")
    kube.scale("apps/v1", "Deployment", "shop", "shop", 3, manager="m")
    assert calls[0] == calls[1]
