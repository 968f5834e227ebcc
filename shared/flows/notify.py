"""Tell people: turn a result, a drift report or a dead letter into notifications, and
post each to the webhooks whose filters take it.

Every webhook is posted at once, each with bounded attempts and timeouts
(shared/adapters/webhooks.py), so a slow or failing receiver costs at most one
webhook's worst case. A notification that cannot be delivered (a secret that cannot be
read, a receiver that keeps failing) is logged with its reason and given up: the
message is acked, never redelivered, since notify is a subscriber of its own and nothing
waits for it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime

from shared.adapters.webhooks import Delivery, Failure
from shared.config import Config, Webhook
from shared.errors import GeodeployError
from shared.logs import BoundLogger
from shared.notify import Notification, PubSubMessage, notifications_of, webhooks_for
from shared.webhook_requests import build_request, delivery_id

__all__ = ["send_notifications"]

SECRET_UNREADABLE = "secret_unreadable"  # a webhook's URL or key could not be read
UNEXPECTED_ERROR = "unexpected_error"
_MAX_PARALLEL_POSTS = 8
# Inside notify's 60 s timeout (shared.topology.NOTIFY_TIMEOUT_SECONDS), with room to log.
CALL_DEADLINE_SECONDS = 45.0

Post = Callable[[str, bytes, Mapping[str, str]], Delivery]


def send_notifications(
    config: Config,
    message: PubSubMessage,
    *,
    read_secret: Callable[[str], str],
    post: Post,
    now: Callable[[], datetime],
    log: BoundLogger,
    forget_secret: Callable[[str], None] = lambda _: None,
    deadline_seconds: float = CALL_DEADLINE_SECONDS,
) -> list[Delivery | None]:
    """Posts every notification the message makes to every webhook that takes it; returns
    each post's outcome (None: it was not attempted). An unreadable message raises
    InvalidMessage (logged and acked by the entry point). A receiver that refuses the
    post, or a URL that cannot be used, makes the webhook's secrets `forget`-ten: the
    next notification reads them again (they may have been rotated). What has not
    ended within `deadline_seconds` is logged as timed out and returned as None."""
    routed = [(n, w) for n in notifications_of(config, message) for w in webhooks_for(config, n)]
    if not routed:
        log.info("notification_unrouted", detail="no notification, or no webhook whose filters take it")
        return []

    def deliver(pair: tuple[Notification, Webhook]) -> Delivery | None:
        delivery = _deliver(config, *pair, read_secret=read_secret, post=post, now=now, log=log)
        if delivery is not None and delivery.failure in (Failure.REFUSED, Failure.INVALID_URL):
            for secret in pair[1].secrets:
                forget_secret(secret)
        return delivery

    # The call's own deadline: a receiver that trickles its answer a byte at a time
    # never trips a read timeout, and more pairs than workers queue behind the slow ones.
    # What has not ended by then is given up (logged) and left behind on daemon threads,
    # which neither the call nor the process's exit waits for.
    outcomes: list[Delivery | None] = [None] * len(routed)
    ended = [threading.Event() for _ in routed]
    queued: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(len(routed)):
        queued.put(i)
    end = time.monotonic() + deadline_seconds

    def work() -> None:
        while time.monotonic() < end:
            try:
                i = queued.get_nowait()
            except queue.Empty:
                return
            outcomes[i] = deliver(routed[i])
            ended[i].set()

    for _ in range(min(len(routed), _MAX_PARALLEL_POSTS)):
        threading.Thread(target=work, name="notify-post", daemon=True).start()
    for event in ended:
        event.wait(max(end - time.monotonic(), 0))
    late = {i for i, event in enumerate(ended) if not event.is_set()}
    for i in sorted(late):
        notification, webhook = routed[i]
        log.bind(**_fields_of(notification, webhook)).warning(
            "notification_failed",
            reason=Failure.TIMEOUT,
            detail=f"not delivered within the call's {deadline_seconds:.0f} s: given up",
        )
    return [None if i in late else outcome for i, outcome in enumerate(outcomes)]


def _fields_of(notification: Notification, webhook: Webhook) -> dict[str, str | None]:
    """What every log line about one notification to one webhook names."""
    return {
        "webhook": webhook.name,
        "kind": notification.kind.value,
        "status": notification.status.value,
        "app": notification.app,
        "region": notification.region,
        "delivery_id": delivery_id(webhook, notification),
    }


def _deliver(
    config: Config,
    notification: Notification,
    webhook: Webhook,
    *,
    read_secret: Callable[[str], str],
    post: Post,
    now: Callable[[], datetime],
    log: BoundLogger,
) -> Delivery | None:
    log = log.bind(**_fields_of(notification, webhook))
    # Secrets first, on their own: their errors name the secret, never its value.
    try:
        url = read_secret(webhook.url_secret)
        key = read_secret(webhook.signing_secret) if webhook.signing_secret else None
    except GeodeployError as e:
        log.warning("notification_failed", reason=SECRET_UNREADABLE, detail=str(e), attempts=0)
        return None
    try:
        request = build_request(config, webhook, notification, signing_key=key, now=now())
        delivery = post(url, request.body, {"Content-Type": "application/json", **request.headers})
    except Exception as e:
        # Whatever it was, retrying the message would only repeat it: give up, say why.
        # Named by type only: a library's message may quote the URL.
        log.error("notification_failed", reason=UNEXPECTED_ERROR, error=type(e).__name__, attempts=0)
        return None
    if delivery.delivered:
        log.info("notification_delivered", attempts=delivery.attempts, http_status=delivery.status)
    else:
        log.warning(
            "notification_failed",
            reason=delivery.failure,
            attempts=delivery.attempts,
            http_status=delivery.status,
            detail=f"gave up after {delivery.attempts} attempts",
        )
    return delivery
