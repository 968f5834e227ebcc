"""What a webhook is sent, pure: the Slack blocks or the signed JSON body, the headers,
the delivery id receivers dedupe on, and the link to the logs. The time a request is
signed at and the signing key are parameters. docs/messages.md, "Webhook notifications",
documents the payloads and the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from shared.config import Config, Webhook
from shared.notification_kinds import EventKind, WebhookKind
from shared.notify import Notification

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookRequest",
    "build_request",
    "delivery_id",
    "logs_url",
    "sign",
]

PAYLOAD_VERSION = 1
SIGNATURE_HEADER = "X-Geodeploy-Signature"  # sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">
TIMESTAMP_HEADER = "X-Geodeploy-Timestamp"  # Unix seconds the signature was made at
DELIVERY_HEADER = "X-Geodeploy-Delivery"  # the same on every retry and redelivery: dedupe on it
EVENT_HEADER = "X-Geodeploy-Event"  # the event kind


def delivery_id(webhook: Webhook, notification: Notification) -> str:
    """The same for every retry and every redelivery of the message, and different for
    each webhook and each notification a message makes (a drift report makes several)."""
    key = "\n".join(
        [webhook.name, notification.message_id, notification.kind, notification.app or "", notification.region or ""]
    )
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def logs_url(config: Config, notification: Notification) -> str:
    """The function's log lines about this event in Cloud Logging's Logs Explorer, in the
    two hours around it (a Cloud Function of the 2nd gen logs as its Cloud Run service)."""
    query = "\n".join(
        line
        for line in (
            'resource.type="cloud_run_revision"',
            f'resource.labels.service_name="{notification.function}"',
            notification.log_filter,
        )
        if line
    )
    start, end = (notification.time + timedelta(hours=h) for h in (-1, 1))
    span = f"{_rfc3339(start)}/{_rfc3339(end)}"
    return (
        f"https://console.cloud.google.com/logs/query;query={quote(query, safe='')};"
        f"timeRange={quote(span, safe='')}?project={config.project}"
    )


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the requests -------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookRequest:
    body: bytes
    headers: dict[str, str]
    delivery_id: str


def sign(key: str, timestamp: int, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 with `key` of `<timestamp>.<body>`. The timestamp is
    signed too, so a receiver that rejects old timestamps rejects replays."""
    mac = hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def build_request(
    config: Config, webhook: Webhook, notification: Notification, *, signing_key: str | None, now: datetime
) -> WebhookRequest:
    """The body and headers to POST; a json webhook's are signed with `signing_key`."""
    delivery = delivery_id(webhook, notification)
    link = logs_url(config, notification)
    headers = {DELIVERY_HEADER: delivery, EVENT_HEADER: notification.kind.value}
    if webhook.kind == WebhookKind.SLACK:
        body = _encode(slack_payload(notification, link))
        return WebhookRequest(body, headers, delivery)
    if signing_key is None:
        raise ValueError(f"webhook {webhook.name}: a json webhook is signed, and no key was given")
    body = _encode(json_payload(notification, delivery, link))
    timestamp = int(now.timestamp())
    headers |= {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(signing_key, timestamp, body)}
    return WebhookRequest(body, headers, delivery)


def _encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def json_payload(notification: Notification, delivery: str, link: str) -> dict[str, Any]:
    """The generic webhook's body (docs/messages.md): every field always present."""
    n = notification
    return {
        "version": PAYLOAD_VERSION,
        "delivery_id": delivery,
        "kind": n.kind.value,
        "status": n.status.value,
        "reason": n.reason,
        "app": n.app,
        "region": n.region,
        "digest": n.digest,
        "image": n.image,
        "release": n.release,
        "message_id": n.message_id,
        "time": _rfc3339(n.time),
        "message": n.message,
        "logs_url": link,
    }


_HEADLINES = {
    EventKind.DEPLOY_RESULT: "deploy {status}",
    EventKind.DRIFT_FINDING: "drift found",
    EventKind.DEAD_LETTER: "message dead-lettered",
}
_SLACK_HEADER_LIMIT = 150
_SLACK_TEXT_LIMIT = 2000


def slack_payload(notification: Notification, link: str) -> dict[str, Any]:
    """Block Kit blocks, with `text` as the fallback for notifications that show no blocks."""
    n = notification
    where = " · ".join(part for part in (n.app, n.region) if part)
    headline = f"geodeploy: {_HEADLINES[n.kind].format(status=n.status.value)}" + (f" · {where}" if where else "")
    fields = [
        ("App", n.app or "—"),
        ("Region", n.region or "—"),
        ("Status", f"`{n.status.value}`"),
        ("Reason", f"`{n.reason}`" if n.reason else "—"),
        ("Digest", f"`{n.digest}`" if n.digest else "—"),
        ("Release", n.release or "—"),
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline[:_SLACK_HEADER_LIMIT]}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{_escape(value)}"} for name, value in fields],
        },
    ]
    if n.message:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _escape(n.message)[:_SLACK_TEXT_LIMIT]}})
    blocks.append(
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": f"<{link}|Logs in Cloud Logging> · {n.kind.value} · {_rfc3339(n.time)}"}
            ],
        }
    )
    fallback = f"{headline}: {n.status.value}" + (f" ({n.reason})" if n.reason else "")
    return {"text": _escape(fallback)[:_SLACK_TEXT_LIMIT], "blocks": blocks}


def _escape(text: str) -> str:
    """Slack's mrkdwn reads &, < and > as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
