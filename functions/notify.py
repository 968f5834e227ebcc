"""Results, drift-reports and dead-letter topics: post what happened to the configured
webhooks (Slack blocks, or signed JSON). A subscriber of its own: nothing waits for it,
and a notification it cannot deliver is logged with its reason and acked."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import functions_framework

from functions import _wiring
from functions._entry import EventInfo, run_handler
from shared.logs import BoundLogger


@functions_framework.cloud_event
def notify(cloud_event: Any) -> None:
    # The whole push message, attributes included: a dead letter's name the function
    # that gave up on it, and its data may be anything.
    run_handler("notify", cloud_event, _handle, decode=_push_message)


def _push_message(event_data: Any) -> dict[str, Any]:
    from shared.contracts import NOT_A_PUBSUB_EVENT
    from shared.errors import InvalidMessage

    message = event_data.get("message") if isinstance(event_data, dict) else None
    if not isinstance(message, dict):
        raise InvalidMessage(NOT_A_PUBSUB_EVENT, "no message in the event")
    return message


def _handle(message: dict[str, Any], event: EventInfo, log: BoundLogger) -> None:
    from shared.adapters.webhooks import post_webhook
    from shared.contracts import decode_pubsub_data
    from shared.errors import InvalidMessage
    from shared.flows.notify import send_notifications
    from shared.notify import PubSubMessage
    from shared.settings import load_instance_config

    try:
        data: dict[str, Any] | None = decode_pubsub_data({"message": message})
    except InvalidMessage:
        data = None  # only a dead letter is notified without readable data
    attributes = message.get("attributes") or {}
    send_notifications(
        load_instance_config(),
        PubSubMessage(
            topic=event.source.rsplit("/topics/", 1)[-1],
            message_id=event.id,
            published_at=event.published_at,
            data=data,
            attributes={str(k): str(v) for k, v in attributes.items()} if isinstance(attributes, dict) else {},
        ),
        read_secret=_wiring.secrets().read,
        forget_secret=_wiring.secrets().forget,
        post=post_webhook,
        now=lambda: datetime.now(UTC),
        log=log,
    )
