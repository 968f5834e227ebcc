"""Drift topic (Cloud Scheduler): compare the live clusters and Cloudflare with the
releases, publish the report, and heal when the config or the request says so."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import functions_framework

from functions import _wiring
from functions._entry import EventInfo, run_handler
from functions.reconcile_traffic import cloudflare_client
from shared.logs import BoundLogger


@functions_framework.cloud_event
def check_drift(cloud_event: Any) -> None:
    run_handler("check_drift", cloud_event, _handle)


def _handle(data: dict[str, Any], event: EventInfo, log: BoundLogger) -> None:
    from shared.contracts import DriftCheckRequest, parse_message
    from shared.flows.drift import check_drift as check
    from shared.settings import load_instance_config

    config = load_instance_config()
    request = parse_message(DriftCheckRequest, data)
    heal = config.drift.heal if request.heal is None else request.heal
    report = check(
        config,
        connect=_wiring.connect,
        cloudflare=cloudflare_client(),
        heal=heal,
        now=datetime.now(UTC),
        log=log,
        apps=request.apps,
        regions=request.regions,
    )
    message = {**report.as_message(), "trigger_event_id": event.id}
    _wiring.publisher().publish(config.topics.drift_reports, json.dumps(message, default=str).encode())
