"""Cloudflare's own verdict on a pool, from its documented pool health report
(`GET /accounts/{account_id}/load_balancers/pools/{pool_id}/health`). Pure: no I/O.

The report's `result` is ``{"pool_id": ..., "pop_health": {"<data centre>": {"healthy":
bool, "origins": [...]}, ...}}``: one entry per data centre that probes the pool. Pool
objects carry no health of their own in Cloudflare's published schema; this report is
the one place Cloudflare states it.

Cloudflare counts an origin healthy when the majority of the probing data centres say so
(developers.cloudflare.com/load-balancing/monitors/); the verdict follows that rule over
the data centres in the report. A report that names none, or cannot be read, is no
verdict at all: `UNKNOWN`, never healthy.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

__all__ = ["EdgeHealth", "assess_edge_health"]


class EdgeHealth(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"  # no report (no monitor, a disabled pool, not probed yet) or unreadable

    @property
    def known(self) -> bool:
        return self is not EdgeHealth.UNKNOWN


def assess_edge_health(result: Mapping[str, Any] | None) -> EdgeHealth:
    """The verdict of the pool health report's `result` (None: Cloudflare gave none).

    Healthy when more than half of the data centres that report a verdict say healthy;
    unhealthy otherwise (a tie is not a majority); unknown when none reports one."""
    pops = result.get("pop_health") if isinstance(result, Mapping) else None
    if not isinstance(pops, Mapping):
        return EdgeHealth.UNKNOWN
    verdicts = [
        pop["healthy"] for pop in pops.values() if isinstance(pop, Mapping) and isinstance(pop.get("healthy"), bool)
    ]
    if not verdicts:
        return EdgeHealth.UNKNOWN
    return EdgeHealth.HEALTHY if 2 * sum(verdicts) > len(verdicts) else EdgeHealth.UNHEALTHY
