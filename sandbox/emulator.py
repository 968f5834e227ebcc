"""The real Pub/Sub emulator, and the few admin/publish/pull verbs the sandbox needs.

The verbs use the real google-cloud-pubsub clients. They are pointed at the emulator by
handing each client a gRPC transport built on an insecure channel to `host`, instead of
setting PUBSUB_EMULATOR_HOST: that variable is process-global, so setting it (even briefly,
under a lock) would redirect every other client in the test process, including code under
test that must not know about the emulator. An explicit channel also needs no credentials:
a transport given a channel ignores them, so `google.auth.default()` is never consulted.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from google.protobuf import field_mask_pb2
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport
from google.pubsub_v1.types import (
    DeadLetterPolicy,
    PushConfig,
    RetryPolicy,
    Subscription,
)

from sandbox.processes import ManagedProcess, free_port

__all__ = [
    "PubSubEmulator",
    "ReceivedMessage",
    "delete_subscription",
    "ensure_pull_subscription",
    "ensure_push_subscription",
    "ensure_topic",
    "publish",
    "pull",
]

_READY_LINE = r"Server started, listening on (\d+)"
_CALL_TIMEOUT = 10.0  # seconds for one admin RPC against the local emulator


class PubSubEmulator:
    """`gcloud beta emulators pubsub start`, bound to 127.0.0.1 (its default is [::1])."""

    def __init__(self, project: str, *, state_dir: Path, port: int = 0) -> None:
        self.project = project
        self.state_dir = Path(state_dir)
        self._port = port
        self._host: str | None = None
        self._process: ManagedProcess | None = None

    @property
    def host(self) -> str:
        """ "127.0.0.1:PORT" of the running emulator."""
        if self._host is None:
            raise RuntimeError("the Pub/Sub emulator is not started")
        return self._host

    @property
    def log_path(self) -> Path:
        return self.state_dir / "logs" / "pubsub-emulator.log"

    @property
    def process(self) -> ManagedProcess | None:
        return self._process

    def env(self) -> dict[str, str]:
        """What a child process (e.g. a function) needs to reach this emulator."""
        return {"PUBSUB_EMULATOR_HOST": self.host}

    def start(self, timeout: float = 60) -> str:
        if self._process is not None and self._process.running:
            return self.host
        gcloud = shutil.which("gcloud")
        if gcloud is None:
            raise RuntimeError("gcloud is not on PATH; the Pub/Sub emulator needs the Cloud SDK")
        port = self._port or free_port()
        data_dir = self.state_dir / "pubsub-data"
        data_dir.mkdir(parents=True, exist_ok=True)  # gcloud fails if it does not exist
        argv = [
            gcloud, "beta", "emulators", "pubsub", "start",
            f"--project={self.project}",
            f"--host-port=127.0.0.1:{port}",
            f"--data-dir={data_dir}",
        ]  # fmt: skip
        env = {**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
        self._process = ManagedProcess("pubsub-emulator", argv, env=env, log_path=self.log_path)
        self._process.start()
        try:
            self._process.wait_for_line(_READY_LINE, timeout)
        except BaseException:
            self._process.stop()
            raise
        self._host = f"127.0.0.1:{port}"
        return self._host

    def stop(self) -> None:
        """Stop gcloud and its java child; idempotent."""
        if self._process is not None:
            self._process.stop()
        self._host = None


@dataclass(frozen=True)
class ReceivedMessage:
    message_id: str
    data: bytes
    attributes: dict[str, str]


@contextmanager
def _publisher(host: str) -> Iterator[pubsub_v1.PublisherClient]:
    channel = grpc.insecure_channel(host)
    client = pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=channel))
    try:
        yield client
    finally:
        client.stop()  # flush any batch and end the commit thread before the channel goes
        channel.close()


@contextmanager
def _subscriber(host: str) -> Iterator[pubsub_v1.SubscriberClient]:
    channel = grpc.insecure_channel(host)
    client = pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))
    try:
        yield client
    finally:
        channel.close()


def _topic_path(project: str, topic: str) -> str:
    return topic if topic.startswith("projects/") else f"projects/{project}/topics/{topic}"


def _subscription_path(project: str, subscription: str) -> str:
    return f"projects/{project}/subscriptions/{subscription}"


def ensure_topic(host: str, project: str, topic: str) -> str:
    """Create the topic unless it exists; return its path."""
    path = _topic_path(project, topic)
    with _publisher(host) as client, suppress(gexc.AlreadyExists):
        client.create_topic(name=path, timeout=_CALL_TIMEOUT)
    return path


def _create_or_update(host: str, wanted: Subscription, compared: list[str]) -> str:
    """Create `wanted`; if it exists, update the `compared` fields that differ."""
    with _subscriber(host) as client:
        try:
            client.create_subscription(request=wanted, timeout=_CALL_TIMEOUT)
            return wanted.name
        except gexc.AlreadyExists:
            current = client.get_subscription(subscription=wanted.name, timeout=_CALL_TIMEOUT)
        if current.topic != wanted.topic:
            raise ValueError(f"{wanted.name} exists on {current.topic}, not on {wanted.topic}")
        differing = [f for f in compared if getattr(current, f) != getattr(wanted, f)]
        if differing:
            client.update_subscription(
                subscription=wanted,
                update_mask=field_mask_pb2.FieldMask(paths=differing),
                timeout=_CALL_TIMEOUT,
            )
    return wanted.name


def ensure_push_subscription(
    host: str,
    project: str,
    subscription: str,
    topic: str,
    push_endpoint: str,
    *,
    ack_deadline_seconds: int = 60,
    min_backoff_seconds: float = 1,
    max_backoff_seconds: float = 10,
    dead_letter_topic: str | None = None,
    max_delivery_attempts: int = 5,
) -> str:
    """Create (or bring up to date) a push subscription with a retry policy; return its path.

    The endpoint should contain /projects/P/topics/T: functions-framework derives the
    CloudEvent source from the request path.
    """
    wanted = Subscription(
        name=_subscription_path(project, subscription),
        topic=_topic_path(project, topic),
        push_config=PushConfig(push_endpoint=push_endpoint),
        ack_deadline_seconds=ack_deadline_seconds,
        retry_policy=RetryPolicy(
            minimum_backoff=timedelta(seconds=min_backoff_seconds),
            maximum_backoff=timedelta(seconds=max_backoff_seconds),
        ),
    )
    if dead_letter_topic is not None:
        wanted.dead_letter_policy = DeadLetterPolicy(
            dead_letter_topic=ensure_topic(host, project, dead_letter_topic),
            max_delivery_attempts=max_delivery_attempts,
        )
    compared = [
        "push_config",
        "ack_deadline_seconds",
        "retry_policy",
        "dead_letter_policy",
    ]
    return _create_or_update(host, wanted, compared)


def ensure_pull_subscription(host: str, project: str, subscription: str, topic: str) -> str:
    """Create a pull subscription unless it exists (a push one is turned into pull)."""
    wanted = Subscription(
        name=_subscription_path(project, subscription),
        topic=_topic_path(project, topic),
    )
    return _create_or_update(host, wanted, ["push_config"])


def delete_subscription(host: str, project: str, subscription: str) -> None:
    """Delete the subscription if it exists (stops any push redelivery loop)."""
    with _subscriber(host) as client, suppress(gexc.NotFound):
        client.delete_subscription(
            subscription=_subscription_path(project, subscription),
            timeout=_CALL_TIMEOUT,
        )


def publish(host: str, project: str, topic: str, data: bytes, **attributes: str) -> str:
    """Publish one message and wait until the emulator accepted it; return its message id."""
    with _publisher(host) as client:
        future = client.publish(_topic_path(project, topic), data, **attributes)
        return str(future.result(timeout=_CALL_TIMEOUT))


def pull(
    host: str,
    project: str,
    subscription: str,
    max_messages: int = 10,
    timeout: float = 5.0,
) -> list[ReceivedMessage]:
    """Wait up to `timeout` for messages, ack and return them ([] if none arrived)."""
    path = _subscription_path(project, subscription)
    deadline = time.monotonic() + timeout
    with _subscriber(host) as client:
        while True:
            remaining = deadline - time.monotonic()
            try:
                response = client.pull(
                    subscription=path,
                    max_messages=max_messages,
                    timeout=max(remaining, 0.1),
                )
            except gexc.DeadlineExceeded:
                response = None
            received = list(response.received_messages) if response is not None else []
            if received:
                client.acknowledge(
                    subscription=path,
                    ack_ids=[r.ack_id for r in received],
                    timeout=_CALL_TIMEOUT,
                )
                return [
                    ReceivedMessage(
                        message_id=r.message.message_id,
                        data=bytes(r.message.data),
                        attributes=dict(r.message.attributes),
                    )
                    for r in received
                ]
            if time.monotonic() >= deadline:
                return []
            time.sleep(0.1)  # the emulator may answer an empty pull at once
