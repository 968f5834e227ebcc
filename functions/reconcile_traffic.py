"""Results topic and drift topic: make Cloudflare's load balancer match the regions' health.
Deployed with one instance and one request at a time, so reconciles never race: this is
the only function that writes Cloudflare.

On the drift topic, the scheduled check request only drains and restores pools (hand
edits are check_drift's to report first); check_drift's TrafficHealRequest, published
once its own heals are done, gets a full reconcile that rewrites them.

A full reconcile reads the current state, so one that started after a deploy result or
a heal request was published already covers it: such a message is acked without another
reconcile (logged `traffic_reconcile_coalesced`). A burst of N results then costs at most
two reconciles, not N (each reading every region). Each full reconcile's start is kept
in the instance and recorded in a ConfigMap in the fallback region, so a new instance
(or a second one, should Cloud Run briefly run two) coalesces against it too."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import functions_framework

from functions import _wiring
from functions._entry import EventInfo, run_handler
from shared.logs import BoundLogger

_last_full_reconcile_started: datetime | None = None
_fallback_answered = True  # as this instance's last reconcile found the mark's region


@functions_framework.cloud_event
def reconcile_traffic(cloud_event: Any) -> None:
    run_handler("reconcile_traffic", cloud_event, _handle)


def _handle(data: dict[str, Any], event: EventInfo, log: BoundLogger) -> None:
    from shared.contracts import TrafficHealRequest, parse_drift_topic_message
    from shared.flows.traffic import covering_reconcile_anywhere, record_reconcile_start
    from shared.flows.traffic import reconcile_traffic as reconcile
    from shared.settings import load_instance_config

    config = load_instance_config()
    pools_only = False
    if event.source.endswith(f"/topics/{config.topics.drift}"):
        request = parse_drift_topic_message(data)
        if isinstance(request, TrafficHealRequest):
            # Published after check_drift's heals: a full reconcile started since then
            # read the healed health too, so coalescing below cannot lose the heal.
            log = log.bind(trigger_event_id=request.trigger_event_id)
            log.info("traffic_heal_received", reasons=request.reasons)
        else:
            # The scheduled check: drain and restore only. Rewriting hand edits now could
            # beat check_drift to them; it reports them, then asks for the heal.
            pools_only = True
    global _last_full_reconcile_started, _fallback_answered
    if not pools_only:
        covered_by = covering_reconcile_anywhere(
            config,
            event.published_at,
            this_instance=_last_full_reconcile_started,
            connect=_wiring.connect,
            log=log,
            read_shared=_fallback_answered,
        )
        if covered_by is not None:
            _last_full_reconcile_started = max(covered_by, _last_full_reconcile_started or covered_by)
            log.info("traffic_reconcile_coalesced", covered_by_reconcile_started=covered_by.isoformat())
            return
    started = datetime.now(UTC)
    report = reconcile(
        config, connect=_wiring.connect, cloudflare=_wiring.cloudflare_client(), log=log, pools_only=pools_only
    )
    _fallback_answered = report.health[config.fallback_region.name].state != "unreachable"
    if not pools_only:
        _last_full_reconcile_started = started
        record_reconcile_start(config, started, report, connect=_wiring.connect, log=log)
