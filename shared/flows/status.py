"""Reading what `geodeploy status` and the status page show: each region's workloads and
release record (and, for the page, its last drift check), in parallel, and Cloudflare's
pools. A region that cannot be read is a snapshot with its error, never an exception, so
one region's trouble shows beside the others."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from shared.adapters.kube import KubeClient
from shared.adapters.release_store import ReleaseStore
from shared.config import App, Config, Region
from shared.errors import ClusterUnreachable, GeodeployError, PermanentError
from shared.flows.regions import each_region
from shared.rendering import render_shape
from shared.status import (
    DriftMark,
    RegionSnapshot,
    drift_mark_name,
    parse_drift_mark,
    pool_states,
    waiting_at_gates,
)
from shared.status_page import AppStatus, PageStatus

__all__ = ["read_page_status", "read_pools", "read_region", "read_regions"]


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


def read_pools(list_pools: Callable[[], list[dict[str, object]]]) -> tuple[list[dict[str, object]], str | None]:
    """Cloudflare's pools, or why they could not be read (Cloudflare or Secret Manager
    down: the regions are still shown)."""
    try:
        return list_pools(), None
    except GeodeployError as e:
        return [], " ".join(str(e).split())


def read_page_status(
    config: Config,
    *,
    connect: Callable[[Region], KubeClient],
    list_pools: Callable[[], list[dict[str, object]]],
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
        pools, error = read_pools(list_pools) if app.name == config.cloudflare.app else (None, None)
        apps.append(
            AppStatus(
                app,
                snapshots,
                pool_states(pools, snapshots) if pools is not None else None,
                error,
                waiting_at_gates(config, app, snapshots),
            )
        )
    return PageStatus(config.name, config.project, config.cloudflare.hostname, now, refresh_seconds, apps)
