"""Sending deploy requests: each to its region's topic, all confirmed before returning."""

from __future__ import annotations

from shared.adapters.pubsub import Publisher
from shared.config import Config
from shared.contracts import DeployRequest

__all__ = ["send_deploy_requests"]


def send_deploy_requests(requests: list[DeployRequest], config: Config, publisher: Publisher) -> None:
    publisher.publish_each([(config.deploy_topic(r.region), r.to_bytes()) for r in requests])
