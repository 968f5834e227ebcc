"""GKE adapter: a region's cluster endpoint and CA from the GKE API, then a Kubernetes
client that authenticates with the function's own Google access token (no kubeconfig,
no keys)."""

from __future__ import annotations

import base64
import threading

from shared.adapters.google_auth import access_token, call_google_api, google_error
from shared.adapters.kube import KubeClient
from shared.config import ClusterRef
from shared.errors import ClusterUnreachable, PermanentError, PermissionMissing

__all__ = ["ClusterConnector"]

GKE_API = "https://container.googleapis.com"


class ClusterConnector:
    """Opens KubeClients for clusters, caching each for the life of the instance."""

    def __init__(self, project: str, *, field_manager: str, gke_endpoint: str | None = None) -> None:
        self._project = project
        self._field_manager = field_manager
        self._gke_endpoint = gke_endpoint
        self._clients: dict[str, KubeClient] = {}
        self._lock = threading.Lock()

    def connect(self, cluster: ClusterRef) -> KubeClient:
        name = cluster.resource_name(self._project)
        with self._lock:
            client = self._clients.get(name)
        if client is None:
            client = self._open(name, cluster)
            with self._lock:
                self._clients[name] = client
        return client

    def forget(self, cluster: ClusterRef) -> None:
        """Drops a cached client, e.g. after the cluster stopped answering (its
        endpoint may have moved)."""
        with self._lock:
            self._clients.pop(cluster.resource_name(self._project), None)

    def _open(self, name: str, cluster: ClusterRef) -> KubeClient:
        """GET the cluster from the GKE API (REST, v1): its endpoint and CA."""
        from shared.adapters.http import is_connection_error

        url = f"{self._gke_endpoint or GKE_API}/v1/{name}"
        try:
            answer = call_google_api("GET", url)
        except Exception as e:
            if is_connection_error(e):
                raise ClusterUnreachable(f"GKE API: get_cluster {name}: {type(e).__name__}") from e
            raise
        if answer.status == 404:
            raise PermanentError("cluster_not_found", name)
        if answer.status == 403:
            raise PermissionMissing(f"GKE API: get_cluster {name}: {google_error(answer)}")
        if not answer.ok:
            raise ClusterUnreachable(f"GKE API: get_cluster {name}: {google_error(answer)}")
        found = answer.json()
        try:
            endpoint = str(found["endpoint"])
            ca_pem = base64.b64decode(found["masterAuth"]["clusterCaCertificate"]).decode()
        except (KeyError, TypeError, ValueError):
            raise ClusterUnreachable(f"GKE API: get_cluster {name}: no endpoint or CA in the answer") from None
        return KubeClient(
            f"https://{endpoint}",
            ca_pem=ca_pem,
            token=access_token,
            field_manager=self._field_manager,
            cluster=cluster.name,
        )
