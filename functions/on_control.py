"""Control topic: a hand-published (or CLI-published) rollback, deploy or promote."""

from __future__ import annotations

from typing import Any

import functions_framework

from functions import _wiring
from functions._entry import EventInfo, run_handler
from shared.logs import BoundLogger


@functions_framework.cloud_event
def on_control(cloud_event: Any) -> None:
    run_handler("on_control", cloud_event, _handle)


def _handle(data: dict[str, Any], event: EventInfo, log: BoundLogger) -> None:
    from shared.contracts import ControlMessage, parse_message
    from shared.flows.control import handle_control
    from shared.settings import load_instance_config

    message = parse_message(ControlMessage, data)
    if message.action == "promote":
        from shared.flows.promotion import OperatorApproval, promote_waiting

        assert message.wave is not None  # the contract requires it of a promote
        config = load_instance_config()
        promote_waiting(
            config.known_app(message.app),
            config=config,
            connect=_wiring.connect,
            edge=_wiring.edge_verdict,
            publisher=_wiring.publisher(),
            log=log,
            approval=OperatorApproval(message.target, message.wave, message.requested_by or f"message {event.id}"),
        )
        return
    handle_control(
        message,
        event_id=event.id,
        published_at=event.published_at,
        config=load_instance_config(),
        connect=_wiring.connect,
        publisher=_wiring.publisher(),
        log=log,
    )
