"""Results topic: advance the next wave once every region of a wave has succeeded."""

from __future__ import annotations

from typing import Any

import functions_framework

from functions import _wiring
from functions._entry import EventInfo, run_handler
from shared.logs import BoundLogger


@functions_framework.cloud_event
def on_deploy_result(cloud_event: Any) -> None:
    run_handler("on_deploy_result", cloud_event, _handle)


def _handle(data: dict[str, Any], event: EventInfo, log: BoundLogger) -> None:
    from shared.contracts import DeployResult, parse_message
    from shared.flows.waves import advance_waves
    from shared.settings import load_instance_config

    result = parse_message(DeployResult, data)
    advance_waves(
        result, config=load_instance_config(), connect=_wiring.connect, publisher=_wiring.publisher(), log=log
    )
