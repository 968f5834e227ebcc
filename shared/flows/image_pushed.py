"""on_image_pushed's job: turn an Artifact Registry notification into one deploy request
per region of the first wave, or explain in the log why it does not deploy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.adapters.pubsub import Publisher
from shared.config import Config
from shared.contracts import ArtifactRegistryNotification, DeployRequest, Trigger, release_id_for
from shared.flows.requests import send_deploy_requests
from shared.logs import BoundLogger
from shared.planning import plan_region_requests

__all__ = ["IgnoredPush", "handle_image_pushed"]

# Why a push deploys nothing (IgnoredPush.reason, logged as `push_ignored`).
NOT_AN_INSERT = "not_an_insert"
UNPARSEABLE_REFERENCE = "unparseable_reference"
NO_DIGEST = "no_digest"
TAG_OF_ANOTHER_REPOSITORY = "tag_of_another_repository"
UNKNOWN_REPOSITORY = "unknown_repository"
TAG_FILTERED = "tag_filtered"


@dataclass(frozen=True)
class IgnoredPush:
    reason: str
    detail: str


def handle_image_pushed(
    notification: ArtifactRegistryNotification,
    *,
    event_id: str,
    published_at: datetime,
    config: Config,
    publisher: Publisher,
    log: BoundLogger,
) -> list[DeployRequest] | IgnoredPush:
    outcome = plan_push(notification, event_id=event_id, published_at=published_at, config=config)
    if isinstance(outcome, IgnoredPush):
        log.info(
            "push_ignored",
            reason=outcome.reason,
            detail=outcome.detail,
            digest=notification.digest,
            tag=notification.tag,
        )
        return outcome
    first = outcome[0]
    log = log.bind(app=first.app, release=first.release_id, image=first.image)
    send_deploy_requests(outcome, config, publisher)
    log.info("deploy_requested", regions=[r.region for r in outcome], wave=first.wave)
    return outcome


def plan_push(
    notification: ArtifactRegistryNotification, *, event_id: str, published_at: datetime, config: Config
) -> list[DeployRequest] | IgnoredPush:
    """Pure: the requests a notification leads to, or why it leads to none."""
    if notification.action != "INSERT":
        return IgnoredPush(NOT_AN_INSERT, f"action {notification.action}")
    try:
        image = notification.pinned_image()
        tag = notification.tag_name()
        tag_repository = notification.tag_repository()
    except ValueError as e:
        return IgnoredPush(UNPARSEABLE_REFERENCE, str(e))
    if image is None:
        return IgnoredPush(NO_DIGEST, "a tag-only notification cannot be pinned to a digest")
    if tag_repository is not None and tag_repository != image.repository:
        # The tag is what the filter gates on: a tag of another repository must not let
        # this repository's digest through.
        return IgnoredPush(
            TAG_OF_ANOTHER_REPOSITORY, f"tag {notification.tag} is not in the digest's repository {image.repository}"
        )
    app = config.app_for_repository(image.repository)
    if app is None:
        return IgnoredPush(UNKNOWN_REPOSITORY, f"no app deploys {image.repository}")
    if not app.accepts_tag(tag):
        why = f"tag {tag!r} does not match the filter {app.tag_filter}" if tag else "untagged pushes are not deployed"
        return IgnoredPush(TAG_FILTERED, why)
    trigger = Trigger(type="push", event_id=event_id, tag=tag)
    return plan_region_requests(
        config,
        app,
        release_id=release_id_for(app.name, image, event_id),
        image=image,
        trigger=trigger,
        issued_at=published_at,
    )
