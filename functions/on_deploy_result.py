"""Results topic: advance the next wave once every region of a wave has succeeded (or
promote it through its gate). Drift topic, when a gate may hold a release: look again."""

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
    from shared.settings import load_instance_config

    config = load_instance_config()
    if event.source.endswith(f"/topics/{config.topics.drift}"):
        # The scheduled drift check's tick: look again at what waits at a gate (whatever
        # the drift topic carried), so a release Cloudflare held is promoted once healthy.
        from shared.flows.promotion import promote_each_app

        promote_each_app(
            config, connect=_wiring.connect, edge=_wiring.edge_verdict, publisher=_wiring.publisher(), log=log
        )
        return
    from shared.flows.waves import advance_waves

    result = parse_message(DeployResult, data)
    advance_waves(
        result,
        config=config,
        connect=_wiring.connect,
        publisher=_wiring.publisher(),
        log=log,
        edge=_wiring.edge_verdict,
    )
