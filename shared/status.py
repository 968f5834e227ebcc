"""What an operator looks at: one read of each region (the app's workloads, its release
record, the last drift check there) and of Cloudflare's pools, as plain data. Pure.

`geodeploy status` and the status page show the same snapshot: shared.flows.status
reads it, the CLI prints it as a table and the page (shared.status_page) as HTML.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.config import Config, Region
from shared.edge_health import EdgeHealth
from shared.gates import Hold, Promotion
from shared.releases import ReleaseRecord
from shared.rendering import RenderedRelease
from shared.rollout import RolloutState
from shared.traffic import RegionHealth, assess_rollout

__all__ = [
    "DRIFT_MARK_KEY",
    "DriftMark",
    "GateWait",
    "PoolState",
    "RegionSnapshot",
    "drift_mark_data",
    "drift_mark_name",
    "gate_wait",
    "parse_drift_mark",
    "pool_states",
    "pools_by_name",
]

Object = dict[str, Any]

DRIFT_MARK_KEY = "last-check.json"


@dataclass(frozen=True)
class DriftMark:
    """The last drift check of one app in one region, as check_drift recorded it there."""

    checked_at: datetime
    status: str  # shared.flows.drift.RegionStatus
    differences: int = 0
    healed: bool = False
    reason: str = ""
    cloudflare_differences: int = 0  # for the steered app: what the same check found at Cloudflare


@dataclass(frozen=True)
class RegionSnapshot:
    region: Region
    shape: RenderedRelease | None = None  # what a release consists of: its health targets
    workloads: list[Object | None] = field(default_factory=list)  # as read, in the shape's order
    record: ReleaseRecord = field(default_factory=ReleaseRecord)
    error: str | None = None  # set when the region could not be read
    drift: DriftMark | None = None  # read only when asked (the status page)

    @property
    def reachable(self) -> bool:
        return self.error is None

    @property
    def deployed(self) -> bool:
        """Whether the app's first workload exists."""
        return bool(self.workloads) and self.workloads[0] is not None

    def rollout(self) -> RolloutState:
        assert self.shape is not None
        current = self.record.current
        # A deadline condition older than the current release belongs to the one before.
        applied_at = current.applied_at if current is not None else None
        return self.shape.rollout(self.workloads, applied_at)

    def health(self) -> RegionHealth:
        if self.error is not None:
            return RegionHealth(self.region.name, "unreachable", self.error)
        return assess_rollout(self.region.name, self.rollout() if self.deployed else None, self.record)


@dataclass(frozen=True)
class PoolState:
    """A region's pool as Cloudflare holds it, beside the region's health."""

    region: str
    pool: str
    exists: bool
    enabled: bool | None
    healthy: bool | None
    health: RegionHealth

    def as_json(self) -> Object:
        h = self.health
        return {
            "region": self.region,
            "pool": self.pool,
            "exists": self.exists,
            "enabled": self.enabled,
            "healthy": self.healthy,
            "health": {"state": h.state, "reason": h.reason, "available": h.available},
        }


def pools_by_name(listed: list[Object]) -> dict[str, Object]:
    """Each name's oldest pool in Cloudflare's list: the one reconcile_traffic keeps."""
    by_name: dict[str, Object] = {}
    for pool in sorted(listed, key=lambda p: str(p.get("created_on", ""))):
        by_name.setdefault(str(pool.get("name")), pool)
    return by_name


def pool_states(
    listed: list[Object],
    snapshots: list[RegionSnapshot],
    verdicts: Mapping[str, EdgeHealth] | None = None,
) -> list[PoolState]:
    """Each region's pool from Cloudflare's list, in the snapshots' order. `verdicts`:
    Cloudflare's health report per pool id; a pool without one is neither healthy nor
    unhealthy (None: Cloudflare did not say)."""
    by_name = pools_by_name(listed)
    verdicts = verdicts or {}
    states = []
    for s in snapshots:
        found = by_name.get(s.region.cloudflare.pool)
        pool = found or {}
        verdict = verdicts.get(str(pool.get("id")), EdgeHealth.UNKNOWN)
        states.append(
            PoolState(
                s.region.name,
                s.region.cloudflare.pool,
                found is not None,
                pool.get("enabled"),
                verdict is EdgeHealth.HEALTHY if verdict.known else None,
                s.health(),
            )
        )
    return states


@dataclass(frozen=True)
class GateWait:
    """A wave waiting at a promotion gate before it may start."""

    app: str
    release_id: str
    wave: int
    regions: tuple[str, ...]
    gate: str  # which gate holds it (soak, edge health, manual approval)
    detail: str = ""  # e.g. until when, or how to promote


_HOLDS = {Hold.SOAK: "soaking", Hold.EDGE: "Cloudflare's health check", Hold.APPROVAL: "manual approval"}


def gate_wait(config: Config, promotion: Promotion) -> GateWait:
    """The next wave of a release held at a gate, worded for a reader."""
    holds = ", ".join(_HOLDS[h] for h in promotion.holds) or "nothing (being promoted)"
    if promotion.edge_detail:
        detail = promotion.edge_detail
    elif promotion.soaking:
        detail = f"soaking: {', '.join(promotion.soaking)}"
    elif Hold.APPROVAL in promotion.holds:
        detail = "run geodeploy promote"
    elif promotion.promoted_to:
        detail = f"already sent to {', '.join(promotion.promoted_to)}; the next promotion check sends the rest"
    else:
        detail = ""
    regions = tuple(r.name for r in config.regions_in_wave(promotion.next_wave))
    return GateWait(promotion.app, promotion.release.release_id, promotion.next_wave, regions, holds, detail)


# --- the drift mark: check_drift's last result, kept in each region ---------------------


def drift_mark_name(config: Config, app_name: str) -> str:
    """The ConfigMap, in each region and the app's namespace, where check_drift records
    its last check of that app there (read by the status page)."""
    return f"{config.name}-drift-{app_name}"


def drift_mark_data(mark: DriftMark) -> dict[str, str]:
    return {
        DRIFT_MARK_KEY: json.dumps(
            {
                "checked_at": mark.checked_at.isoformat(),
                "status": mark.status,
                "differences": mark.differences,
                "healed": mark.healed,
                "reason": mark.reason,
                "cloudflare_differences": mark.cloudflare_differences,
            },
            sort_keys=True,
        )
    }


def parse_drift_mark(obj: Object | None) -> DriftMark | None:
    """The recorded check, or None when there is none or it cannot be read (a page that
    says "never checked" is better than one that fails)."""
    raw = ((obj or {}).get("data") or {}).get(DRIFT_MARK_KEY)
    if not isinstance(raw, str):
        return None
    try:
        data = json.loads(raw)
        checked_at = datetime.fromisoformat(str(data["checked_at"]))
        return DriftMark(
            checked_at=checked_at,
            status=str(data["status"]),
            differences=int(data.get("differences", 0)),
            healed=bool(data.get("healed", False)),
            reason=str(data.get("reason", "")),
            cloudflare_differences=int(data.get("cloudflare_differences", 0)),
        )
    except (ValueError, KeyError, TypeError):
        return None
