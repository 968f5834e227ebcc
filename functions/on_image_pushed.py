"""Topic `gcr`: an Artifact Registry push becomes one deploy request per first-wave region."""

from __future__ import annotations

from typing import Any

import functions_framework

from functions import _wiring
from functions._entry import EventInfo, run_handler
from shared.logs import BoundLogger


@functions_framework.cloud_event
def on_image_pushed(cloud_event: Any) -> None:
    run_handler("on_image_pushed", cloud_event, _handle)


def _handle(data: dict[str, Any], event: EventInfo, log: BoundLogger) -> None:
    from shared.contracts import ArtifactRegistryNotification, parse_message
    from shared.flows.image_pushed import handle_image_pushed
    from shared.settings import load_instance_config

    notification = parse_message(ArtifactRegistryNotification, data)
    handle_image_pushed(
        notification,
        event_id=event.id,
        published_at=event.published_at,
        config=load_instance_config(),
        publisher=_wiring.publisher(),
        log=log,
    )
