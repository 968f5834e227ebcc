"""GKE adapter: a region's cluster endpoint and CA from the GKE API, then a Kubernetes
client that authenticates with the function's own Google access token (no kubeconfig,
no keys)."""

from __future__ import annotations

import base64
import threading
from typing import Any

from shared.adapters.google_auth import access_token, default_credentials
from shared.adapters.kube import KubeClient
from shared.config import ClusterRef
from shared.errors import ClusterUnreachable, PermanentError, PermissionMissing

__all__ = ["ClusterConnector"]

# The Kubernetes and GKE client libraries load on first use (cold starts). Two threads
# importing them at once deadlocked Python's import machinery once and left
# kubernetes.client half-imported for the life of the process: first imports take turns.
_IMPORT_LOCK = threading.Lock()


class ClusterConnector:
    """Opens KubeClients for clusters, caching each for the life of the instance."""

    def __init__(self, project: str, *, field_manager: str, gke_endpoint: str | None = None) -> None:
        self._project = project
        self._field_manager = field_manager
        self._gke_endpoint = gke_endpoint
        self._clients: dict[str, KubeClient] = {}
        self._lock = threading.Lock()
        self._container: Any = None

    def connect(self, cluster: ClusterRef) -> KubeClient:
        name = cluster.resource_name(self._project)
        with self._lock:
            client = self._clients.get(name)
        if client is None:
            client = KubeClient(self._api_client(name), field_manager=self._field_manager, cluster=cluster.name)
            with self._lock:
                self._clients[name] = client
        return client

    def forget(self, cluster: ClusterRef) -> None:
        """Drops a cached client, e.g. after the cluster stopped answering (its
        endpoint may have moved)."""
        with self._lock:
            self._clients.pop(cluster.resource_name(self._project), None)

    def _container_client(self) -> Any:
        with _IMPORT_LOCK:  # regions connect from several threads: one client for all
            if self._container is None:
                from google.cloud import container_v1

                options = {"api_endpoint": self._gke_endpoint} if self._gke_endpoint else None
                # REST: one transport for production and the sandbox's stand-in alike.
                self._container = container_v1.ClusterManagerClient(
                    credentials=default_credentials(), transport="rest", client_options=options
                )
            return self._container

    def _api_client(self, name: str) -> Any:
        with _IMPORT_LOCK:
            from google.api_core import exceptions as gexc
            from kubernetes.client import ApiClient, Configuration

        try:
            cluster = self._container_client().get_cluster(name=name, timeout=20)
        except gexc.NotFound:
            raise PermanentError("cluster_not_found", name) from None
        except (gexc.Forbidden, gexc.PermissionDenied) as e:  # over REST a 403 is Forbidden
            raise PermissionMissing(f"GKE API: get_cluster {name}: {e.message}") from None
        except (gexc.GoogleAPICallError, gexc.RetryError, OSError) as e:
            raise ClusterUnreachable(f"GKE API: get_cluster {name}: {type(e).__name__}") from e
        config = Configuration()
        config.host = f"https://{cluster.endpoint}"
        config.ca_cert_data = base64.b64decode(cluster.master_auth.cluster_ca_certificate).decode()

        def refresh(conf: Any) -> None:
            conf.api_key["BearerToken"] = access_token()

        refresh(config)  # the hook only runs once a key is present
        config.api_key_prefix["BearerToken"] = "Bearer"
        config.refresh_api_key_hook = refresh  # type: ignore[assignment]  # typed None, documented as a hook
        return ApiClient(config)
