"""Per-instance clients, created on first use and kept for the life of the instance."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import TYPE_CHECKING

from shared.settings import load_instance_config, load_settings

if TYPE_CHECKING:
    from shared.adapters.cloudflare_lb import CloudflareLB
    from shared.adapters.gke import ClusterConnector
    from shared.adapters.kube import KubeClient
    from shared.adapters.pubsub import Publisher
    from shared.adapters.secrets import SecretReader
    from shared.config import Region


@lru_cache(maxsize=1)
def _identified() -> None:
    from shared.adapters.http import identify

    identify(load_settings().service)


@lru_cache(maxsize=1)
def publisher() -> Publisher:
    from shared.adapters.pubsub import Publisher

    _identified()
    return Publisher(load_instance_config().project)


_clusters: ClusterConnector | None = None
_clusters_lock = threading.Lock()


def clusters() -> ClusterConnector:
    # Not lru_cache: the central functions connect from one thread per region, and
    # lru_cache would let each first caller build a connector (and its clients) of its own.
    global _clusters
    with _clusters_lock:
        if _clusters is None:
            from shared.adapters.gke import ClusterConnector

            _identified()
            config = load_instance_config()
            _clusters = ClusterConnector(
                config.project, field_manager=config.field_manager, gke_endpoint=load_settings().gke_endpoint
            )
        return _clusters


def connect(region: Region) -> KubeClient:
    return clusters().connect(region.cluster)


@lru_cache(maxsize=1)
def secrets() -> SecretReader:
    from shared.adapters.secrets import SecretReader

    _identified()
    return SecretReader(load_instance_config().project, endpoint=load_settings().secret_manager_endpoint)


@lru_cache(maxsize=1)
def cloudflare_client() -> CloudflareLB:
    from shared.adapters.cloudflare_lb import CloudflareLB

    cf = load_instance_config().cloudflare
    reader = secrets()
    return CloudflareLB(
        lambda: reader.read(cf.api_token_secret),
        account_id=cf.account_id,
        zone_id=cf.zone_id,
        base_url=load_settings().cloudflare_base_url,
        on_auth_failure=lambda: reader.forget(cf.api_token_secret),
    )


def edge_verdict(region: Region) -> bool:
    """Whether Cloudflare's monitor calls the region's pool healthy (a promotion gate's
    `require_edge_healthy`); raises TransientError when Cloudflare cannot be read."""
    from shared.edge_health import EdgeHealth
    from shared.status import pools_by_name

    client = cloudflare_client()
    pool = pools_by_name(client.list_pools()).get(region.cloudflare.pool)
    if pool is None:
        return False  # no pool yet: nothing can call it healthy
    return client.edge_health(str(pool["id"])) is EdgeHealth.HEALTHY
