"""reconcile_traffic's job: make Cloudflare's geo load balancer match the regions' real
health.

    read every region's health → drain the pools that must stop serving → monitor →
    one pool per region (restore, other fields) → load balancer → remove duplicates →
    compare with Cloudflare's own health view

Drains are the first writes of a reconcile: a region that went bad stops taking traffic
before anything else is touched (or retried).

Objects are found by name (the monitor by its description), so a retried reconcile never
creates duplicates; each object that differs gets one PATCH of the changed fields; a
reconcile with nothing to change makes no writes. A reconcile that fails half-way is
safe to run again: every step starts from what Cloudflare holds now.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from shared.adapters.cloudflare_lb import CloudflareLB
from shared.adapters.kube import KubeClient
from shared.adapters.release_store import ReleaseStore
from shared.config import Config, Region
from shared.errors import (
    PERMISSION_DENIED,
    ClusterUnreachable,
    PermanentError,
    PermissionMissing,
    RecordUnreadable,
    TransientError,
)
from shared.flows.regions import NO_ANSWER, each_region
from shared.log_events import POOL_DRAINED
from shared.logs import BoundLogger
from shared.releases import ReleaseRecord
from shared.rendering import MANAGED_BY, render_shape
from shared.traffic import (
    COALESCE_MARGIN,
    RECONCILE_MARK_KEY,
    RegionHealth,
    assess_rollout,
    changed_fields,
    choose_enabled_pools,
    covering_reconcile,
    desired_load_balancer,
    desired_monitor,
    desired_pool,
    drained_since,
    monitor_description,
    reconcile_mark_name,
    reconcile_mark_started,
)

__all__ = [
    "TrafficReport",
    "covering_reconcile_anywhere",
    "find_oldest",
    "log_drained_pools",
    "read_region_health",
    "reconcile_traffic",
    "record_reconcile_start",
]

Object = dict[str, Any]


@dataclass
class TrafficReport:
    health: dict[str, RegionHealth]
    pools_enabled: dict[str, bool]
    writes: int = 0
    changes: list[str] = field(default_factory=list)
    # Regions where Cloudflare's probes and the cluster disagree about health.
    disagreements: list[dict[str, Any]] = field(default_factory=list)


def read_region_health(config: Config, region: Region, connect: Callable[[Region], KubeClient]) -> RegionHealth:
    """One region's health; never raises for that region's own faults, so one region's
    trouble cannot stop the others being reconciled."""
    app = config.app(config.cloudflare.app)
    unreadable: RecordUnreadable | None = None
    try:
        kube = connect(region)
        shape = render_shape(config, app, region)
        workloads = [kube.get("apps/v1", t.kind, t.name, t.namespace) for t in shape.health_targets]
        record: ReleaseRecord | None
        try:
            record, _ = ReleaseStore(kube, app).read()
        except RecordUnreadable as e:
            record, unreadable = None, e  # a hand-edited record: unhealthy, not unreachable
    except PermissionMissing as e:  # a missing grant: not healthy, and named as what it is
        return RegionHealth(region.name, "unreachable", PERMISSION_DENIED, detail=str(e)[:300])
    except (ClusterUnreachable, PermanentError) as e:
        return RegionHealth(region.name, "unreachable", str(e)[:200])
    health = assess_rollout(region.name, shape.rollout(workloads) if workloads[0] is not None else None, record)
    return replace(health, detail=unreadable.detail[:300]) if unreadable else health


def read_every_region_health(config: Config, connect: Callable[[Region], KubeClient]) -> dict[str, RegionHealth]:
    """Every region's health, read in parallel; a region that does not answer within the
    deadline is unreachable (reason `no_answer`)."""
    found = each_region(
        config.regions,
        lambda region: read_region_health(config, region, connect),
        timed_out=lambda region, deadline: RegionHealth(
            region.name, "unreachable", NO_ANSWER, detail=f"no answer within {deadline:.0f} s"
        ),
        deadline=config.region_deadline_seconds,
    )
    return {h.region: h for h in found}


def reconcile_traffic(
    config: Config,
    *,
    connect: Callable[[Region], KubeClient],
    cloudflare: CloudflareLB,
    log: BoundLogger,
    pools_only: bool = False,
) -> TrafficReport:
    """`pools_only`: only drain and restore pools (the scheduled run when drift healing is
    off), leaving any other hand edit in place for the drift check to report."""
    health = read_every_region_health(config, connect)
    writes_before = cloudflare.writes
    changes: list[str] = []
    if pools_only:
        by_name, enabled = _steer_pools(config, cloudflare, health, changes)
        lb: str | None = None
    else:
        by_name, enabled, lb = _converge(config, cloudflare, health, changes)
    report = TrafficReport(
        health=health,
        pools_enabled=enabled,
        writes=cloudflare.writes - writes_before,
        changes=changes,
        disagreements=_disagreements(config, health, by_name),
    )
    log.info(
        "traffic_reconciled",
        load_balancer=lb,
        pools_only=pools_only,
        writes=report.writes,
        changes=changes,
        pools_enabled=enabled,
        health={name: f"{h.state}:{h.reason}" for name, h in health.items()},
        disagreements=report.disagreements,
    )
    log_drained_pools(config, by_name, enabled, datetime.now(UTC), log)
    for region, h in health.items():
        if not enabled[region] and h.state != "healthy":
            detail = {"detail": h.detail} if h.detail else {}
            log.warning("region_drained", drained_region=region, reason=h.reason, **detail)
    if report.disagreements:
        log.warning("health_disagreement", disagreements=report.disagreements)
    return report


def log_drained_pools(
    config: Config, by_name: dict[str, list[Object]], enabled: dict[str, bool], now: datetime, log: BoundLogger
) -> None:
    """One line per region this reconcile leaves drained, every reconcile, with how long
    it has been: the alert on a region drained too long counts these (infra/monitoring.tf).
    `by_name`: the pools as read before this reconcile's writes."""
    for region in config.regions:
        if enabled[region.name]:
            continue
        since = drained_since(_first(by_name.get(region.cloudflare.pool, [])), now)
        log.info(
            POOL_DRAINED,
            drained_region=region.name,
            pool=region.cloudflare.pool,
            drained_since=since.isoformat(),
            drained_seconds=round((now - since).total_seconds()),
        )


def _steer_pools(
    config: Config, cloudflare: CloudflareLB, health: dict[str, RegionHealth], changes: list[str]
) -> tuple[dict[str, list[Object]], dict[str, bool]]:
    by_name = _group_by(cloudflare.list_pools(), "name")
    enabled = _serving(config, health, by_name)
    drained = _drain_first(config, cloudflare, by_name, enabled, changes)
    for region in config.regions:
        pool = _first(by_name.get(region.cloudflare.pool, []))
        if pool and region.name not in drained and pool.get("enabled") != enabled[region.name]:
            cloudflare.edit_pool(str(pool["id"]), {"enabled": enabled[region.name]})
            changes.append(f"{'enabled' if enabled[region.name] else 'drained'} pool {region.cloudflare.pool}")
    return by_name, enabled


def _drain_first(
    config: Config,
    cloudflare: CloudflareLB,
    by_name: dict[str, list[Object]],
    enabled: dict[str, bool],
    changes: list[str],
) -> set[str]:
    """Disables the pools of regions that must stop serving, before any other write;
    returns those regions. Not when no pool that keeps serving is enabled yet: then the
    enables come first (in config order, as before), so there is never a moment with
    no pool serving, even if a later write fails."""
    drained: set[str] = set()
    keeps_serving = any(
        _first(by_name.get(r.cloudflare.pool, [])).get("enabled") and enabled[r.name] for r in config.regions
    )
    if not keeps_serving:
        return drained
    for region in config.regions:
        pool = _first(by_name.get(region.cloudflare.pool, []))
        if pool and pool.get("enabled") and not enabled[region.name]:
            cloudflare.edit_pool(str(pool["id"]), {"enabled": False})
            changes.append(f"drained pool {region.cloudflare.pool}")
            drained.add(region.name)
    return drained


def _serving(config: Config, health: dict[str, RegionHealth], by_name: dict[str, list[Object]]) -> dict[str, bool]:
    """Which regions' pools should take traffic, given which do now."""
    enabled_now = {r.name: bool(_first(by_name.get(r.cloudflare.pool, [])).get("enabled")) for r in config.regions}
    return choose_enabled_pools(config, health, enabled_now)


def _converge(
    config: Config, cloudflare: CloudflareLB, health: dict[str, RegionHealth], changes: list[str]
) -> tuple[dict[str, list[Object]], dict[str, bool], str]:
    """Everything as the config says: drains first, then monitor, pools, load balancer."""
    by_name = _group_by(cloudflare.list_pools(), "name")
    enabled = _serving(config, health, by_name)
    drained = _drain_first(config, cloudflare, by_name, enabled, changes)
    monitor_id, monitors = _ensure_monitor(config, cloudflare, changes)
    pool_ids: dict[str, str] = {}

    def pool_creator(name: str) -> Callable[[Object], Object]:
        return lambda body: cloudflare.create_pool(body, lambda: find_oldest(cloudflare.list_pools(), "name", name))

    for region in config.regions:
        desired = desired_pool(region, monitor_id, enabled[region.name])
        live = _first(by_name.get(region.cloudflare.pool, []))
        pool_ids[region.name] = _ensure(
            f"pool {region.cloudflare.pool}",
            desired,
            {**live, "enabled": False} if region.name in drained else live,
            create=pool_creator(region.cloudflare.pool),
            edit=cloudflare.edit_pool,
            changes=changes,
        )
    lb = _ensure(
        f"load balancer {config.cloudflare.hostname}",
        desired_load_balancer(config, pool_ids),
        find_oldest(cloudflare.list_load_balancers(), "name", config.cloudflare.hostname) or {},
        create=lambda body: cloudflare.create_load_balancer(
            body, lambda: find_oldest(cloudflare.list_load_balancers(), "name", config.cloudflare.hostname)
        ),
        edit=cloudflare.edit_load_balancer,
        changes=changes,
    )
    for region in config.regions:
        _remove_duplicates(
            f"pool {region.cloudflare.pool}",
            by_name.get(region.cloudflare.pool, []),
            pool_ids[region.name],
            cloudflare.delete_pool,
            changes,
        )
    _remove_duplicates("monitor", monitors, monitor_id, cloudflare.delete_monitor, changes)
    return by_name, enabled, lb


def _ensure_monitor(config: Config, cloudflare: CloudflareLB, changes: list[str]) -> tuple[str, list[Object]]:
    description = monitor_description(config)
    monitors = _group_by(cloudflare.list_monitors(), "description").get(description, [])
    monitor_id = _ensure(
        "monitor",
        desired_monitor(config),
        _first(monitors),
        create=lambda body: cloudflare.create_monitor(
            body, lambda: find_oldest(cloudflare.list_monitors(), "description", description)
        ),
        edit=cloudflare.edit_monitor,
        changes=changes,
    )
    return monitor_id, monitors


def _ensure(
    what: str,
    desired: Object,
    live: Object,
    *,
    create: Callable[[Object], Object],
    edit: Callable[[str, Object], Object],
    changes: list[str],
) -> str:
    """Creates the object if missing, or PATCHes exactly its changed fields; returns its id."""
    if not live:
        created = create(desired)
        changes.append(f"created {what}")
        return str(created["id"])
    delta = changed_fields(desired, live)
    if delta:
        edit(str(live["id"]), delta)
        changes.append(f"updated {what}: {', '.join(sorted(delta))}")
    return str(live["id"])


def _remove_duplicates(
    what: str, objects: list[Object], keep: str, delete: Callable[[str], None], changes: list[str]
) -> None:
    """Objects sharing a managed name with the one in use (left by an earlier create whose
    answer was lost) are deleted, once nothing we manage points at them any more."""
    for obj in objects:
        if obj["id"] != keep:
            delete(obj["id"])
            changes.append(f"deleted duplicate {what} ({obj['id']})")


def _disagreements(config: Config, health: dict[str, RegionHealth], by_name: dict[str, list[Object]]) -> list[Object]:
    found = []
    for region in config.regions:
        pool = _first(by_name.get(region.cloudflare.pool, []))
        cloudflare_says = pool.get("healthy")
        cluster = health[region.name]
        if not pool.get("enabled") or cloudflare_says is None or cluster.state == "unreachable":
            continue  # disabled pools are not probed; unknown is not a disagreement
        if bool(cloudflare_says) != cluster.healthy:
            found.append(
                {
                    "region": region.name,
                    "cluster": f"{cluster.state}:{cluster.reason}",
                    "cloudflare_healthy": bool(cloudflare_says),
                }
            )
    return found


def _group_by(objects: list[Object], key: str) -> dict[str, list[Object]]:
    grouped: dict[str, list[Object]] = {}
    for obj in sorted(objects, key=lambda o: str(o.get("created_on", ""))):  # oldest first
        grouped.setdefault(str(obj.get(key)), []).append(obj)
    return grouped


def _first(objects: list[Object]) -> Object:
    return objects[0] if objects else {}


def find_oldest(objects: list[Object], key: str, value: str) -> Object | None:
    """The object geodeploy manages under that name: the oldest, if a lost create left twins."""
    return next(iter(_group_by(objects, key).get(value, [])), None)


# --- coalescing: one full reconcile covers every event published before it started ---------

# The mark only saves work: when the fallback region is slow, the event is reconciled
# rather than made to wait for it (a black-holed region must cost one deadline in total).
_MARK_DEADLINE_SECONDS = 1.0


def covering_reconcile_anywhere(
    config: Config,
    published_at: datetime,
    *,
    this_instance: datetime | None,
    connect: Callable[[Region], KubeClient],
    log: BoundLogger,
    read_shared: bool = True,
) -> datetime | None:
    """The start of a full reconcile, by this instance or any other, that began after
    `published_at`; None if the event still needs one. The other instances' latest start
    is read from the mark in the fallback region (only when this instance's own does not
    cover the event, and not when `read_shared` is off: the caller's last reconcile found
    that region unreachable, so a silent region costs no extra wait); a mark that cannot
    be read within a second, or lies in the future, counts as none: the event is
    reconciled."""
    covered = covering_reconcile(published_at, this_instance)
    if covered is not None or not read_shared:
        return covered
    return covering_reconcile(published_at, _read_mark(config, connect, log))


def record_reconcile_start(
    config: Config,
    started: datetime,
    report: TrafficReport,
    *,
    connect: Callable[[Region], KubeClient],
    log: BoundLogger,
) -> None:
    """Records when a full reconcile started, for every instance to coalesce against.
    Best effort: the reconcile is done; a mark not written costs a later event one more
    reconcile, never a missed one, so a failure is logged, not raised (raising would
    redeliver an event that was handled). A newer mark (another instance's) is left in
    place. Not tried when the reconcile found the fallback region unreachable."""
    fallback = config.fallback_region
    if report.health[fallback.name].state == "unreachable":
        log.warning("reconcile_mark_not_written", mark_region=fallback.name, detail="the region is unreachable")
        return
    app = config.app(config.cloudflare.app)
    mark = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": reconcile_mark_name(config, app.name),
            "namespace": app.namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
        },
        "data": {RECONCILE_MARK_KEY: started.isoformat()},
    }

    def write(region: Region) -> str:
        try:
            kube = connect(region)
            recorded = reconcile_mark_started(
                kube.get("v1", "ConfigMap", reconcile_mark_name(config, app.name), app.namespace)
            )
            # Never over a newer instance's mark; always over one from the future (a fast
            # clock or a hand edit would otherwise coalesce every event until then).
            future = recorded is not None and recorded > datetime.now(UTC) + COALESCE_MARGIN
            if recorded is None or recorded < started or future:
                kube.apply(mark)
        except (TransientError, PermanentError) as e:
            return str(e)[:300]
        return ""

    [problem] = each_region(
        [fallback],
        write,
        timed_out=lambda _region, deadline: f"no answer within {deadline:.0f} s",
        deadline=_MARK_DEADLINE_SECONDS,
    )
    if problem:
        log.warning("reconcile_mark_not_written", mark_region=fallback.name, detail=problem)


def _read_mark(config: Config, connect: Callable[[Region], KubeClient], log: BoundLogger) -> datetime | None:
    app = config.app(config.cloudflare.app)

    def read(region: Region) -> datetime | None:
        try:
            obj = connect(region).get("v1", "ConfigMap", reconcile_mark_name(config, app.name), app.namespace)
        except (TransientError, PermanentError) as e:
            log.warning("reconcile_mark_unread", mark_region=region.name, detail=str(e)[:300])
            return None
        recorded = reconcile_mark_started(obj)
        if recorded is not None and recorded > datetime.now(UTC) + COALESCE_MARGIN:
            log.warning("reconcile_mark_ignored", mark_region=region.name, detail=f"in the future: {recorded}")
            return None
        return recorded

    [started] = each_region(
        [config.fallback_region], read, timed_out=lambda _r, _d: None, deadline=_MARK_DEADLINE_SECONDS
    )
    return started
