"""Reading what `geodeploy status` and the status page show: each region's workloads and
release record (and, for the page, its last drift check), in parallel, and Cloudflare's
pools. A region that cannot be read is a snapshot with its error, never an exception, so
one region's trouble shows beside the others."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from shared.adapters.kube import KubeClient
from shared.adapters.release_store import ReleaseStore
from shared.config import App, Config, Region
from shared.edge_health import EdgeHealth
from shared.errors import ClusterUnreachable, GeodeployError, PermanentError, TransientError
from shared.flows.promotion import waiting_promotion
from shared.flows.regions import each_region
from shared.rendering import render_shape
from shared.status import (
    DriftMark,
    GateWait,
    PoolState,
    RegionSnapshot,
    drift_mark_name,
    gate_wait,
    parse_drift_mark,
    pool_states,
    pools_by_name,
)
from shared.status_page import AppStatus, PageStatus

__all__ = [
    "PoolReader",
    "PoolsRead",
    "read_page_status",
    "read_pools",
    "read_region",
    "read_regions",
    "waiting_at_gates",
]


def read_region(
    config: Config,
    app: App,
    region: Region,
    connect: Callable[[Region], KubeClient],
    *,
    on_unreachable: Callable[[Region, Exception], str] = lambda _, e: str(e),
    drift: bool = False,
) -> RegionSnapshot:
    """`on_unreachable` words the error (and may forget the cluster's endpoint);
    `drift`: also read the region's last drift check of the app."""
    shape = render_shape(config, app, region)
    try:
        kube = connect(region)
        workloads = [kube.get("apps/v1", t.kind, t.name, t.namespace) for t in shape.health_targets]
        record, _ = ReleaseStore(kube, app).read()
        mark = _read_drift_mark(config, app, kube) if drift else None
    except (ClusterUnreachable, PermanentError) as e:
        return RegionSnapshot(region, error=on_unreachable(region, e))
    except ValueError as e:  # a release record that is not valid JSON of a record
        return RegionSnapshot(region, error=f"unreadable release record: {str(e).splitlines()[0][:150]}")
    return RegionSnapshot(region, shape, workloads, record, drift=mark)


def read_regions(
    config: Config,
    app: App,
    regions: list[Region],
    connect: Callable[[Region], KubeClient],
    *,
    on_unreachable: Callable[[Region, Exception], str] = lambda _, e: str(e),
    drift: bool = False,
    deadline: float | None = None,
) -> list[RegionSnapshot]:
    """Every region at once (the functions' parallel read). `deadline`: a region that has
    not answered by then is shown as not answering (none: every region is waited for)."""

    def read(region: Region) -> RegionSnapshot:
        return read_region(config, app, region, connect, on_unreachable=on_unreachable, drift=drift)

    if len(regions) <= 1 and deadline is None:
        return [read(r) for r in regions]
    return each_region(
        regions,
        read,
        deadline=deadline,
        timed_out=lambda region, seconds: RegionSnapshot(region, error=f"no answer within {seconds:.0f} s"),
    )


def _read_drift_mark(config: Config, app: App, kube: KubeClient) -> DriftMark | None:
    return parse_drift_mark(kube.get("v1", "ConfigMap", drift_mark_name(config, app.name), app.namespace))


class PoolReader(Protocol):
    """What the status reads of Cloudflare (shared.adapters.cloudflare_lb.CloudflareLB)."""

    def list_pools(self) -> list[dict[str, Any]]: ...

    def edge_health(self, pool_id: str) -> EdgeHealth: ...


@dataclass(frozen=True)
class PoolsRead:
    listed: list[dict[str, Any]] = field(default_factory=list)
    verdicts: dict[str, EdgeHealth] = field(default_factory=dict)  # Cloudflare's, by pool id
    error: str | None = None  # why the pools could not be listed


def read_pools(cloudflare: Callable[[], PoolReader], names: Iterable[str]) -> PoolsRead:
    """Cloudflare's pools and its verdict on each named one (from its pool health report),
    or why they could not be read (Cloudflare or Secret Manager down: the regions are
    still shown). A verdict that cannot be read is left out: the pool shows, unjudged."""
    try:
        client = cloudflare()
        listed = client.list_pools()
    except GeodeployError as e:
        return PoolsRead(error=" ".join(str(e).split()))
    by_name = pools_by_name(listed)
    verdicts = {}
    for name in names:
        pool = by_name.get(name)
        if pool is None:
            continue
        try:
            verdicts[str(pool["id"])] = client.edge_health(str(pool["id"]))
        except GeodeployError:
            continue
    return PoolsRead(listed, verdicts)


def waiting_at_gates(
    config: Config,
    app: App,
    snapshots: list[RegionSnapshot],
    pools: list[PoolState] | None,
    pools_error: str | None = None,
) -> list[GateWait]:
    """The release of `app` held at a gate, as the regions' records say (only when every
    region was read: one not read may hold a newer release), with Cloudflare's verdict
    from `pools` when the gate asks for it (None: the app is not the one it steers).
    Cloudflare not read at all (`pools_error`) is worded as such, as `geodeploy status`
    words it, not as unhealthy pools; a pool without a verdict is not a healthy one."""
    if len(snapshots) != len(config.regions) or not all(s.reachable for s in snapshots):
        return []
    by_region = {p.region: p for p in pools or []}

    def edge(region: Region) -> bool:
        if pools_error is not None:
            raise TransientError(pools_error)
        pool = by_region.get(region.name)
        return pool is not None and pool.healthy is True  # no verdict is not a healthy one

    records = {s.region.name: s.record for s in snapshots}
    promotion = waiting_promotion(config, app, records, edge if pools is not None or pools_error else None)
    return [gate_wait(config, promotion)] if promotion is not None else []


def read_page_status(
    config: Config,
    *,
    connect: Callable[[Region], KubeClient],
    cloudflare: Callable[[], PoolReader],
    now: datetime,
    refresh_seconds: int,
) -> PageStatus:
    """What the status page shows: every app in every region (with its last drift check,
    under the config's region deadline), the steered app's pools, the waves at a gate."""
    apps = []
    for app in config.apps:
        snapshots = read_regions(
            config, app, list(config.regions), connect, drift=True, deadline=config.region_deadline_seconds
        )
        pools: list[PoolState] | None = None
        error = None
        if app.name == config.cloudflare.app:
            read = read_pools(cloudflare, [s.region.cloudflare.pool for s in snapshots])
            pools, error = pool_states(read.listed, snapshots, read.verdicts), read.error
        apps.append(AppStatus(app, snapshots, pools, error, waiting_at_gates(config, app, snapshots, pools, error)))
    return PageStatus(config.name, config.project, config.cloudflare.hostname, now, refresh_seconds, apps)
