"""Results topic and drift topic: make Cloudflare's load balancer match the regions' health.
Deployed with one instance and one request at a time, so reconciles never race.

A reconcile reads the current state, so one that started after a deploy result was
published already covers it: such a result is acked without another reconcile (logged
`traffic_reconcile_coalesced`). A burst of N results then costs a few reconciles, not N
(each reading every region). The start time is kept in the instance; a new instance
simply reconciles again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import functions_framework

from functions import _wiring
from functions._entry import EventInfo, run_handler
from shared.logs import BoundLogger

if TYPE_CHECKING:
    from shared.adapters.cloudflare_lb import CloudflareLB


# Clocks of the publisher and of this instance may differ a little: only a result
# published this long before the last full reconcile started counts as covered by it.
COALESCE_MARGIN = timedelta(milliseconds=250)
_last_full_reconcile_started: datetime | None = None


@functions_framework.cloud_event
def reconcile_traffic(cloud_event: Any) -> None:
    run_handler("reconcile_traffic", cloud_event, _handle)


@lru_cache(maxsize=1)
def cloudflare_client() -> CloudflareLB:
    from shared.adapters.cloudflare_lb import CloudflareLB
    from shared.settings import load_instance_config, load_settings

    cf = load_instance_config().cloudflare
    secrets = _wiring.secrets()
    return CloudflareLB(
        lambda: secrets.read(cf.api_token_secret),
        account_id=cf.account_id,
        zone_id=cf.zone_id,
        base_url=load_settings().cloudflare_base_url,
        on_auth_failure=lambda: secrets.forget(cf.api_token_secret),
    )


def _handle(data: dict[str, Any], event: EventInfo, log: BoundLogger) -> None:
    from shared.contracts import DriftCheckRequest, parse_message
    from shared.flows.traffic import reconcile_traffic as reconcile
    from shared.settings import load_instance_config

    config = load_instance_config()
    pools_only = False
    if event.source.endswith(f"/topics/{config.topics.drift}"):
        # The scheduled run always drains and restores; it rewrites hand-edited objects
        # only when drift healing is on, so the drift check gets to report them first.
        request = parse_message(DriftCheckRequest, data)
        pools_only = not (config.drift.heal if request.heal is None else request.heal)
    global _last_full_reconcile_started
    covered_since = _last_full_reconcile_started
    if not pools_only and covered_since is not None and event.published_at < covered_since - COALESCE_MARGIN:
        log.info("traffic_reconcile_coalesced", covered_by_reconcile_started=covered_since.isoformat())
        return
    started = datetime.now(UTC)
    reconcile(config, connect=_wiring.connect, cloudflare=cloudflare_client(), log=log, pools_only=pools_only)
    if not pools_only:
        _last_full_reconcile_started = started
