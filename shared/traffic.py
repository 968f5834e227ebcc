"""Traffic decisions: how healthy each region is, which pools should take traffic, and
what the Cloudflare objects should look like. Pure: no I/O, no clock.

Safety rules (docs/architecture.md):
- a region whose state cannot be read (its API, or its release record) is not counted as
  healthy;
- never disable the last enabled pool: with every region down, one pool keeps serving
  (the fallback region's, or the one that was serving);
- the load balancer always has a fallback pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from shared.config import Config, Region
from shared.errors import RECORD_UNREADABLE
from shared.releases import ReleaseRecord
from shared.rollout import RolloutPhase, RolloutState, evaluate_rollout

__all__ = [
    "RECONCILE_MARK_KEY",
    "RegionHealth",
    "assess_region",
    "assess_rollout",
    "changed_fields",
    "choose_enabled_pools",
    "covering_reconcile",
    "desired_load_balancer",
    "desired_monitor",
    "desired_pool",
    "drained_since",
    "monitor_description",
    "reconcile_mark_name",
    "reconcile_mark_started",
]

Object = dict[str, Any]
HealthState = Literal["healthy", "unhealthy", "unreachable"]

# Clocks of a publisher and of a reconciling instance may differ a little: only an event
# published this long before a full reconcile started counts as covered by it.
COALESCE_MARGIN = timedelta(milliseconds=250)
RECONCILE_MARK_KEY = "full-reconcile-started"


@dataclass(frozen=True)
class RegionHealth:
    region: str
    state: HealthState
    reason: str
    available: int = 0
    detail: str = ""  # what went wrong, when the reason alone does not say

    @property
    def healthy(self) -> bool:
        return self.state == "healthy"


def assess_region(
    region: str, deployment: Object | None, record: ReleaseRecord | None, min_available: int
) -> RegionHealth:
    """assess_rollout for an app whose one workload is `deployment`."""
    return assess_rollout(region, evaluate_rollout(deployment, min_available) if deployment else None, record)


def assess_rollout(region: str, rollout: RolloutState | None, record: ReleaseRecord | None) -> RegionHealth:
    """A region is healthy when its app serves, every workload with at least its PDB's
    minimum of pods, and no failed release or automatic rollback is in progress there.
    `rollout`: its workloads' rollout, None when its first workload does not exist.

    `record` None: the region's release record exists but cannot be read (edited by hand).
    Without it a failed release or a running rollback cannot be ruled out, so the region is
    unhealthy, whatever its pods say, until the record is repaired."""
    if record is None:
        return RegionHealth(region, "unhealthy", RECORD_UNREADABLE, rollout.available if rollout else 0)
    if rollout is None:
        return RegionHealth(region, "unhealthy", "not_deployed")
    current = record.current
    if current is not None and current.rollback_of and current.status == "failed":
        return RegionHealth(region, "unhealthy", "rollback_failed", rollout.available)
    if current is not None and current.rollback_of and current.status != "succeeded":
        return RegionHealth(region, "unhealthy", "rolling_back", rollout.available)
    if current is not None and current.status == "failed":
        return RegionHealth(region, "unhealthy", "release_failed", rollout.available)
    if rollout.phase is RolloutPhase.FAILED:
        return RegionHealth(region, "unhealthy", "rollout_failed", rollout.available)
    if not rollout.serving:
        return RegionHealth(region, "unhealthy", "below_min_available", rollout.available)
    return RegionHealth(region, "healthy", "serving", rollout.available)


def choose_enabled_pools(
    config: Config, health: dict[str, RegionHealth], enabled_now: dict[str, bool]
) -> dict[str, bool]:
    """Which regions' pools take traffic: the healthy ones, and never none at all."""
    wanted = {r.name: health[r.name].healthy for r in config.regions}
    if any(wanted.values()):
        return wanted
    # Every region is down: keep one pool serving rather than none. Prefer one that
    # already serves (no flapping), the fallback region's first.
    order = [config.fallback_region, *(r for r in config.regions if r.name != config.fallback_region.name)]
    keep = next((r for r in order if enabled_now.get(r.name)), config.fallback_region)
    return {**wanted, keep.name: True}


def monitor_description(config: Config) -> str:
    """How geodeploy finds its monitor again (monitors have no name)."""
    return f"geodeploy {config.cloudflare.app} {config.cloudflare.hostname}"


def desired_monitor(config: Config) -> Object:
    m = config.cloudflare.monitor
    return {
        "type": m.type,
        "method": m.method,
        "path": m.path,
        "port": m.port,
        "expected_codes": m.expected_codes,
        "expected_body": m.expected_body,
        "interval": m.interval,
        "timeout": m.timeout,
        "retries": m.retries,
        "follow_redirects": m.follow_redirects,
        "allow_insecure": m.allow_insecure,
        # Probes hit the origin IP directly; the app still needs its own host name.
        "header": {"Host": [config.cloudflare.hostname]},
        "description": monitor_description(config),
    }


def desired_pool(region: Region, monitor_id: str, enabled: bool) -> Object:
    return {
        "name": region.cloudflare.pool,
        "description": f"geodeploy {region.name}",
        "enabled": enabled,
        "minimum_origins": 1,
        "monitor": monitor_id,
        # Probe from where this region's users are (non-Enterprise plans must list regions).
        "check_regions": sorted(region.cloudflare.geo_regions),
        "origins": [{"name": region.name, "address": region.static_ip.address, "enabled": True, "weight": 1}],
    }


def desired_load_balancer(config: Config, pool_ids: dict[str, str]) -> Object:
    """Geo steering: each Cloudflare region goes to its own region's pool first, then
    the others in config order; the fallback region's pool catches the rest."""
    ordered = [pool_ids[r.name] for r in config.regions]
    region_pools: dict[str, list[str]] = {}
    for region in config.regions:
        own = pool_ids[region.name]
        for code in region.cloudflare.geo_regions:
            region_pools.setdefault(code, [own, *(p for p in ordered if p != own)])
    return {
        "name": config.cloudflare.hostname,
        "description": f"geodeploy {config.cloudflare.app}",
        "enabled": True,
        "proxied": config.cloudflare.proxied,
        "steering_policy": "geo",
        "default_pools": ordered,
        "fallback_pool": pool_ids[config.fallback_region.name],
        "region_pools": region_pools,
        "country_pools": {},
        "pop_pools": {},
    }


def changed_fields(desired: Object, live: Object) -> Object:
    """The desired fields whose live value differs: exactly what one PATCH must send."""
    return {key: value for key, value in desired.items() if _normalize(key, live.get(key)) != _normalize(key, value)}


def _normalize(key: str, value: Any) -> Any:
    if key == "origins" and isinstance(value, list):
        # The API adds read-only and defaulted fields to origins; compare what we set.
        return [
            {
                "name": o.get("name"),
                "address": o.get("address"),
                "enabled": o.get("enabled", True),
                "weight": float(o.get("weight", 1)),
            }
            for o in value
        ]
    if key == "check_regions" and isinstance(value, list):
        return sorted(value)
    if key in ("region_pools", "country_pools", "pop_pools") and value is None:
        return {}
    if key == "header" and value is None:
        return {}
    return value


def covering_reconcile(published_at: datetime, *started: datetime | None) -> datetime | None:
    """The start of a full reconcile that began after the event was published, so read
    the state the event reports (level-triggered: nothing is left to do for it)."""
    covering = [t for t in started if t is not None and published_at < t - COALESCE_MARGIN]
    return max(covering, default=None)


def reconcile_mark_name(config: Config, app_name: str) -> str:
    """The ConfigMap, in the fallback region, where every reconcile-traffic instance of
    this installation (config `name`) records when its last full reconcile started."""
    return f"{config.name}-traffic-{app_name}"


def reconcile_mark_started(obj: Object | None) -> datetime | None:
    """The recorded start, or None when there is none or it cannot be read (then the
    event is simply reconciled: a lost mark costs one reconcile, never a missed one)."""
    value = ((obj or {}).get("data") or {}).get(RECONCILE_MARK_KEY)
    try:
        started = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return started if started.tzinfo is not None else None


def drained_since(pool: Object, now: datetime) -> datetime:
    """Since when a pool that this reconcile leaves disabled has been drained, as far as
    Cloudflare tells: its last change (`modified_on`) if it was disabled before this
    reconcile, else now. Any later edit of a drained pool moves `modified_on`, so this
    is never earlier than the drain: an alert on it may be late, never early."""
    if pool.get("enabled", True):
        return now
    try:
        modified = datetime.fromisoformat(str(pool.get("modified_on")).replace("Z", "+00:00"))
    except ValueError:
        return now
    return min(modified, now) if modified.tzinfo is not None else now
