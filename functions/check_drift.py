"""Drift topic (Cloud Scheduler): compare the live clusters and Cloudflare with the
releases, publish the report, and heal when the config or the request says so.

Cloudflare is only read here; its heal is asked of reconcile_traffic, Cloudflare's one
writer, with a TrafficHealRequest on this same topic: this function acks that message
without acting on it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import functions_framework

from functions import _wiring
from functions._entry import EventInfo, run_handler
from shared.logs import BoundLogger

if TYPE_CHECKING:
    from shared.contracts import TrafficHealReason


@functions_framework.cloud_event
def check_drift(cloud_event: Any) -> None:
    run_handler("check_drift", cloud_event, _handle)


def _handle(data: dict[str, Any], event: EventInfo, log: BoundLogger) -> None:
    from shared.contracts import TrafficHealRequest, parse_drift_topic_message
    from shared.flows.drift import check_drift as check
    from shared.flows.drift_mark import record_drift_checks
    from shared.settings import load_instance_config

    request = parse_drift_topic_message(data)
    if isinstance(request, TrafficHealRequest):
        # Our own request, back on our topic: acting on it would loop.
        log.info(
            "traffic_heal_request_ignored", trigger_event_id=request.trigger_event_id, handled_by="reconcile_traffic"
        )
        return
    config = load_instance_config()
    heal = config.drift.heal if request.heal is None else request.heal

    def request_traffic_heal(reasons: list[TrafficHealReason]) -> None:
        heal_request = TrafficHealRequest(trigger_event_id=event.id, reasons=reasons)
        _wiring.publisher().publish(config.topics.drift, heal_request.to_bytes())

    report = check(
        config,
        connect=_wiring.connect,
        cloudflare=_wiring.cloudflare_client(),
        heal=heal,
        now=datetime.now(UTC),
        log=log,
        apps=request.apps,
        regions=request.regions,
        request_traffic_heal=request_traffic_heal,
    )
    message = {**report.as_message(), "trigger_event_id": event.id}
    _wiring.publisher().publish(config.topics.drift_reports, json.dumps(message, default=str).encode())
    # After the report: the page shows the check once it is published.
    record_drift_checks(config, report, connect=_wiring.connect, log=log)
