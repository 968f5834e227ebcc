"""Notifications, pure: what a message on the results, drift-reports or dead-letter topic
tells a person, and which webhooks get it (`shared.webhook_requests` builds what each
one is sent). No I/O, no clock, no environment. docs/messages.md, "Webhook
notifications", documents them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.config import Config, Webhook
from shared.contracts import (
    MAX_NAME_LENGTH,
    MAX_REASON_LENGTH,
    MAX_RESULT_MESSAGE_LENGTH,
    DeployResult,
    TrafficHealReason,
    in_utc,
    parse_message,
)
from shared.errors import InvalidMessage
from shared.notification_kinds import EventKind, NotificationStatus
from shared.topology import functions_of

__all__ = ["Notification", "PubSubMessage", "notifications_of", "webhooks_for"]

# A drift finding's reason: what became of the region's differences.
HEALED = "healed"
HEAL_FAILED = "heal_failed"  # healing was on, and an object could not be repaired
NOT_HEALED = "not_healed"  # healing was off: reported only
# A dead letter's reason.
DELIVERY_ATTEMPTS_EXHAUSTED = "delivery_attempts_exhausted"

# Why a message on the notify function's topics gives no notification (acked).
UNKNOWN_TOPIC = "unknown_topic"

# The attributes Pub/Sub adds to a message it moves to the dead-letter topic.
DEAD_LETTER_SUBSCRIPTION = "CloudPubSubDeadLetterSourceSubscription"
DEAD_LETTER_DELIVERY_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"
DEAD_LETTER_PUBLISH_TIME = "CloudPubSubDeadLetterSourceTopicPublishTime"

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_MAX_LISTED = 5  # differences or objects named in a message; the rest are counted


@dataclass(frozen=True)
class PubSubMessage:
    """What the notify function got: its topic, id, time, JSON data (None when the data
    is not a JSON object, which only a dead letter may be) and attributes."""

    topic: str
    message_id: str
    published_at: datetime
    data: dict[str, Any] | None
    attributes: dict[str, str]


@dataclass(frozen=True)
class Notification:
    """One thing to tell people about."""

    kind: EventKind
    status: NotificationStatus
    app: str | None
    region: str | None
    image: str | None
    reason: str
    release: str | None
    message_id: str  # the Pub/Sub message it comes from
    time: datetime  # when it happened
    message: str  # a human-readable detail
    function: str  # the function whose logs tell the story
    log_filter: str  # narrows that function's logs to this event

    @property
    def digest(self) -> str | None:
        found = _DIGEST.search(self.image or "")
        return found.group(0) if found else None


# --- from messages to notifications --------------------------------------------------------


def notifications_of(config: Config, message: PubSubMessage) -> list[Notification]:
    """The notifications a message makes; InvalidMessage when it cannot be read."""
    topics = config.topics
    if message.topic == topics.dead_letter:
        return [_from_dead_letter(config, message)]
    if message.data is None:
        raise InvalidMessage("not_json_object", "message data is not a JSON object")
    if message.topic == topics.results:
        return [_from_result(config, parse_message(DeployResult, message.data), message.message_id)]
    if message.topic == topics.drift_reports:
        return _from_drift_report(config, parse_message(_DriftReport, message.data), message.message_id)
    raise InvalidMessage(UNKNOWN_TOPIC, f"notify does not listen to topic {message.topic!r}")


def _function_name(config: Config, entry_point: str, region: str | None = None) -> str:
    found = (f.name for f in functions_of(config) if f.entry_point == entry_point and f.region == region)
    return next(found, config.name)  # a result from a region the config lacks: the installation's logs


def _from_result(config: Config, result: DeployResult, message_id: str) -> Notification:
    return Notification(
        kind=EventKind.DEPLOY_RESULT,
        status=NotificationStatus(result.status),
        app=result.app,
        region=result.region,
        image=result.image,
        reason=result.reason,
        release=result.release_id,
        message_id=message_id,
        time=result.finished_at,
        message=result.message,
        function=_function_name(config, "deploy_region", result.region),
        log_filter=f'jsonPayload.release="{result.release_id}"',
    )


class _Lenient(BaseModel):
    # check_drift publishes the report (docs/messages.md); read only what a person needs.
    model_config = ConfigDict(extra="ignore", frozen=True)


class _RegionDrift(_Lenient):
    app: str = Field(max_length=MAX_NAME_LENGTH)
    region: str = Field(max_length=MAX_NAME_LENGTH)
    status: str = Field(max_length=MAX_NAME_LENGTH)
    release: str | None = Field(default=None, max_length=MAX_REASON_LENGTH)
    image: str | None = Field(default=None, max_length=MAX_RESULT_MESSAGE_LENGTH)
    healed: bool = False
    differences: list[dict[str, Any]] = []
    heal_failures: list[dict[str, Any]] = []


class _CloudflareDrift(_Lenient):
    differences: list[dict[str, Any]] = []


class _DriftReport(_Lenient):
    checked_at: datetime
    heal: bool = False
    trigger_event_id: str | None = Field(default=None, max_length=MAX_REASON_LENGTH)
    regions: list[_RegionDrift] = []
    cloudflare: _CloudflareDrift = _CloudflareDrift()


def _from_drift_report(config: Config, report: _DriftReport, message_id: str) -> list[Notification]:
    """One notification per drifted region, and one for Cloudflare when it drifted."""
    try:
        checked_at = in_utc(report.checked_at, "checked_at")
    except ValueError as e:
        raise InvalidMessage("invalid_message", f"drift report: {e}") from None
    function = _function_name(config, "check_drift")
    log_filter = f'jsonPayload.event_id="{report.trigger_event_id}"' if report.trigger_event_id else ""

    def finding(
        app: str, region: str | None, image: str | None, reason: str, release: str | None, message: str
    ) -> Notification:
        return Notification(
            EventKind.DRIFT_FINDING, NotificationStatus.DRIFTED, app, region, image, reason, release,
            message_id, checked_at, message, function, log_filter,
        )  # fmt: skip

    found = [
        finding(
            r.app,
            r.region,
            r.image,
            HEALED if r.healed else HEAL_FAILED if report.heal else NOT_HEALED,
            r.release,
            _listed("differ", [f"{d.get('object')} {d.get('path')}" for d in r.differences]),
        )
        for r in report.regions
        if r.status == NotificationStatus.DRIFTED
    ]
    if report.cloudflare.differences:
        objects = [f"{d.get('object')} {d.get('path')}" for d in report.cloudflare.differences]
        reason = TrafficHealReason.CLOUDFLARE_DRIFTED.value
        found.append(finding(config.cloudflare.app, None, None, reason, None, _listed("differ at Cloudflare", objects)))
    return found


def _listed(what: str, items: list[str]) -> str:
    shown = "; ".join(items[:_MAX_LISTED])
    more = f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"{len(items)} {what}: {shown}{more}"[:MAX_RESULT_MESSAGE_LENGTH]


def _from_dead_letter(config: Config, message: PubSubMessage) -> Notification:
    """A dead letter is whatever message a function gave up on: its fields are read only
    if they are there and look right, so even an unreadable one is notified."""
    attributes = message.attributes
    subscription = attributes.get(DEAD_LETTER_SUBSCRIPTION, "").rsplit("/", 1)[-1]
    # Subscriptions are named <function>--<topic> (shared.topology.subscription_name).
    function, _, topic = subscription.partition("--")
    data = message.data or {}
    image = _text(data.get("image")) or _text(data.get("digest")) or _text(data.get("target"))
    app = _text(data.get("app"))
    if app is None and image and "@" in image:
        found = config.app_for_repository(image.split("@", 1)[0])
        app = found.name if found else None
    attempts = attributes.get(DEAD_LETTER_DELIVERY_COUNT, "?")
    return Notification(
        kind=EventKind.DEAD_LETTER,
        status=NotificationStatus.DEAD_LETTERED,
        app=app,
        region=_text(data.get("region")),
        image=image,
        reason=DELIVERY_ATTEMPTS_EXHAUSTED,
        release=_text(data.get("release_id")),
        message_id=message.message_id,
        time=_time(attributes.get(DEAD_LETTER_PUBLISH_TIME)) or message.published_at,
        message=(
            f"{function or 'a function'} could not handle a message of topic {topic or '?'} in {attempts} attempts"
            + ("" if message.data is not None else " (its data is not a JSON object)")
        ),
        function=function or config.name,
        log_filter="severity>=WARNING",
    )


def _text(value: Any) -> str | None:
    """A string field of a message that may be anything: kept only if it is a short string."""
    return value if isinstance(value, str) and 0 < len(value) <= MAX_RESULT_MESSAGE_LENGTH else None


def _time(value: str | None) -> datetime | None:
    try:
        parsed = datetime.fromisoformat((value or "").replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- who gets what ------------------------------------------------------------------------


def webhooks_for(config: Config, notification: Notification) -> list[Webhook]:
    """The webhooks whose filters let the notification through. An event of no app (a
    dead letter whose message names none) passes every apps filter: it may concern all."""
    return [
        w
        for w in config.notifications.webhooks
        if (not w.filters.statuses or notification.status in w.filters.statuses)
        and (not w.filters.apps or notification.app is None or notification.app in w.filters.apps)
    ]
