"""A webhook that fails is tried a bounded number of times, each try bounded in time, and
then given up with a logged reason: notify never raises for a receiver's fault (the
message is acked, so nothing loops), and never logs a webhook's URL or key.

The posts go to a real HTTP server on 127.0.0.1; only the backoff's sleep is injected."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.adapters.webhooks import ATTEMPTS, Delivery, Failure, post_webhook
from shared.errors import SecretUnavailable
from shared.flows.notify import send_notifications
from shared.logs import get_logger
from shared.notify import PubSubMessage
from tests.core.builders import T0, build_config, changed, config_data, ref


class Receiver:
    """Answers each POST with the next status of `answers` (the last one repeats)."""

    def __init__(self) -> None:
        self.answers: list[int] = [200]
        self.hang_seconds = 0.0
        self.trickle = False  # answer one header byte at a time, 0.1 s apart, until unset
        self.posts: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                if receiver.hang_seconds:
                    time.sleep(receiver.hang_seconds)
                if receiver.trickle:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    while receiver.trickle:  # each byte well inside any read timeout
                        try:
                            self.wfile.write(b"X")
                            self.wfile.flush()
                        except OSError:
                            return
                        time.sleep(0.1)
                status = receiver.answers[min(len(receiver.posts), len(receiver.answers)) - 1]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()
    found.server.server_close()


def _post(url: str, **options: Any) -> tuple[Delivery, list[float]]:
    slept: list[float] = []
    delivery = post_webhook(url, b"{}", {"Content-Type": "application/json"}, sleep=slept.append, **options)
    return delivery, slept


def test_a_receiver_that_keeps_failing_is_tried_three_times_then_given_up(receiver):
    receiver.answers = [500]
    delivery, slept = _post(receiver.url + "/hook")
    assert (delivery.delivered, delivery.failure, delivery.attempts, delivery.status) == (
        False,
        Failure.SERVER_ERROR,
        ATTEMPTS,
        500,
    )
    assert len(receiver.posts) == ATTEMPTS == 3 and slept == [0.5, 1.0]


def test_a_receiver_that_recovers_gets_the_notification(receiver):
    receiver.answers = [503, 429, 200]
    delivery, _ = _post(receiver.url + "/hook")
    assert (delivery.delivered, delivery.attempts, delivery.status) == (True, 3, 200)


def test_a_refusal_is_not_retried(receiver):
    receiver.answers = [404]
    delivery, slept = _post(receiver.url + "/hook")
    assert (delivery.failure, delivery.attempts, slept) == (Failure.REFUSED, 1, [])


def test_a_receiver_that_hangs_costs_at_most_the_read_timeout_per_attempt(receiver):
    receiver.hang_seconds = 1.0
    delivery, _ = _post(receiver.url + "/hook", attempts=2, timeout=(1.0, 0.2))
    assert (delivery.failure, delivery.attempts) == (Failure.TIMEOUT, 2)


def test_nobody_listening_and_a_bad_url_are_named_as_such(receiver):
    closed = receiver.url + "/hook"
    receiver.server.shutdown()
    receiver.server.server_close()
    assert _post(closed, attempts=2)[0].failure == Failure.UNREACHABLE
    delivery, slept = _post("not a url")
    assert (delivery.failure, delivery.attempts, slept) == (Failure.INVALID_URL, 1, [])


# --- the flow: every webhook told, every failure logged, nothing raised -------------------

SECRET_URL_TOKEN = "T000-secret-path-0123456789"


def _config() -> Any:
    webhooks = [
        {"name": "chat", "kind": "slack", "url_secret": "chat-url"},
        {"name": "audit", "kind": "json", "url_secret": "audit-url", "signing_secret": "audit-key"},
    ]
    return build_config(changed(config_data(), "notifications", {"webhooks": webhooks}))


def _result_message(config: Any) -> PubSubMessage:
    result = {
        "version": 1, "release_id": "6ec128e2-2f1c0a9b7d", "app": "shop", "region": "us-west1", "kind": "deploy",
        "status": "failed", "reason": "ProgressDeadlineExceeded", "image": ref("v2"),
        "trigger": {"type": "push", "event_id": "4711"},
        "issued_at": "2026-03-01T12:00:00Z", "finished_at": "2026-03-01T12:05:00Z",
    }  # fmt: skip
    return PubSubMessage(config.topics.results, "1001", T0, result, {})


def _logged(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if getattr(r, "fields", {}).get("event") == event]


def _notify_over_http(config: Any, urls: dict[str, str], **options: Any) -> list[Delivery | None]:
    """A failed deploy's result, posted for real to `urls` (by secret name), with no
    backoff sleeps and half-second timeouts."""

    def post(url: str, body: bytes, headers: Any) -> Delivery:
        return post_webhook(url, body, headers, sleep=lambda _: None, timeout=(0.5, 0.5))

    return send_notifications(
        config,
        _result_message(config),
        read_secret=lambda name: "k" * 64 if name == "audit-key" else urls[name],
        post=post,
        now=lambda: datetime.now(UTC),
        log=get_logger("notify"),
        **options,
    )


def test_one_failing_webhook_is_logged_and_the_other_still_told(receiver, caplog):
    config = _config()
    receiver.answers = [200]
    urls = {"chat-url": f"{receiver.url}/{SECRET_URL_TOKEN}", "audit-url": "http://127.0.0.1:9/closed"}

    with caplog.at_level(logging.INFO, logger="geodeploy"):
        outcomes = _notify_over_http(config, urls)
    assert sorted(o.delivered for o in outcomes if o is not None) == [False, True]
    [delivered] = _logged(caplog, "notification_delivered")
    [failed] = _logged(caplog, "notification_failed")
    assert (delivered["webhook"], delivered["attempts"], delivered["http_status"]) == ("chat", 1, 200)
    assert (failed["webhook"], failed["reason"], failed["attempts"]) == ("audit", Failure.UNREACHABLE, 3)
    assert receiver.posts[0]["path"] == f"/{SECRET_URL_TOKEN}"
    assert SECRET_URL_TOKEN not in caplog.text and "k" * 64 not in caplog.text


def test_an_unreadable_secret_skips_that_webhook_with_its_reason(caplog):
    config = _config()
    posted: list[str] = []

    def read_secret(name: str) -> str:
        if name == "audit-key":
            raise SecretUnavailable(f"projects/p/secrets/{name}", "NotFound")
        return f"https://hooks.example.test/{name}"

    def post(url: str, body: bytes, headers: Any) -> Delivery:
        posted.append(url)
        return Delivery(1, 200)

    with caplog.at_level(logging.INFO, logger="geodeploy"):
        send_notifications(
            config, _result_message(config), read_secret=read_secret, post=post, now=lambda: T0, log=get_logger("t")
        )
    assert posted == ["https://hooks.example.test/chat-url"]
    [failed] = _logged(caplog, "notification_failed")
    assert (failed["webhook"], failed["reason"], failed["attempts"]) == ("audit", "secret_unreadable", 0)
    assert "audit-key" in failed["detail"]


def test_an_unexpected_error_while_posting_is_logged_by_type_and_not_raised(caplog):
    config = _config()

    def post(url: str, body: bytes, headers: Any) -> Delivery:
        raise RuntimeError(f"something quoted {url}")

    with caplog.at_level(logging.INFO, logger="geodeploy"):
        outcomes = send_notifications(
            config,
            _result_message(config),
            read_secret=lambda name: f"https://hooks.example.test/{SECRET_URL_TOKEN}/{name}",
            post=post,
            now=lambda: T0,
            log=get_logger("t"),
        )
    assert outcomes == [None, None]
    failures = _logged(caplog, "notification_failed")
    assert {(f["reason"], f["error"]) for f in failures} == {("unexpected_error", "RuntimeError")}
    assert SECRET_URL_TOKEN not in caplog.text


def test_a_refused_post_makes_the_webhooks_secrets_read_again():
    config = _config()
    forgotten: list[str] = []
    send_notifications(
        config,
        _result_message(config),
        read_secret=lambda name: f"https://hooks.example.test/{name}",
        post=lambda url, body, headers: Delivery(1, 404, Failure.REFUSED) if "audit" in url else Delivery(1, 200),
        now=lambda: T0,
        log=get_logger("t"),
        forget_secret=forgotten.append,
    )
    assert sorted(forgotten) == ["audit-key", "audit-url"]


def test_a_receiver_that_trickles_its_answer_is_given_up_at_the_calls_deadline(receiver, caplog):
    """One byte every 0.1 s never trips a 0.5 s read timeout: only the call's own
    deadline ends the wait, logged as a timeout, and the other webhook is still told."""
    config = _config()
    receiver.trickle = True
    urls = {"chat-url": f"{receiver.url}/trickle", "audit-url": "http://127.0.0.1:9/closed"}

    try:
        with caplog.at_level(logging.INFO, logger="geodeploy"):
            outcomes = _notify_over_http(config, urls, deadline_seconds=2)
    finally:
        receiver.trickle = False  # the receiver's thread ends, and the post left behind with it
    chat, audit = outcomes
    assert chat is None and audit is not None and audit.failure == Failure.UNREACHABLE
    failed = {f["webhook"]: f for f in _logged(caplog, "notification_failed")}
    assert failed["chat"]["reason"] == Failure.TIMEOUT and "within the call's 2 s" in failed["chat"]["detail"]
    assert failed["audit"]["reason"] == Failure.UNREACHABLE
