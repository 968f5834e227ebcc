"""A private view of the results topic while the CLI waits: a temporary pull subscription,
created before the control message is published (so no result can be missed) and
deleted at the end. It expires by itself after a day should the CLI be killed."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from types import TracebackType
from typing import Any

__all__ = ["ResultFeed"]

_CALL_TIMEOUT = 30.0


class ResultFeed:
    def __init__(self, project: str, topic: str, prefix: str) -> None:
        self._topic = f"projects/{project}/topics/{topic}"
        self._path = f"projects/{project}/subscriptions/{prefix}-cli-wait-{secrets.token_hex(5)}"
        self._client: Any = None

    def __enter__(self) -> ResultFeed:
        from google.cloud import pubsub_v1
        from google.pubsub_v1.types import ExpirationPolicy, Subscription

        # PUBSUB_EMULATOR_HOST, when set (the sandbox), is honoured by the client itself.
        self._client = pubsub_v1.SubscriberClient()
        subscription = Subscription(
            name=self._path,
            topic=self._topic,
            ack_deadline_seconds=60,
            message_retention_duration=timedelta(minutes=30),
            expiration_policy=ExpirationPolicy(ttl=timedelta(days=1)),
        )
        try:
            self._client.create_subscription(request=subscription, timeout=_CALL_TIMEOUT)
        except BaseException:
            self._client.close()
            raise
        return self

    def pull(self, timeout: float) -> list[dict[str, Any]]:
        """The results published since the last pull (waits up to `timeout` for the first)."""
        from google.api_core import exceptions as gexc

        try:
            response = self._client.pull(
                subscription=self._path, max_messages=100, timeout=max(timeout, 0.2), retry=None
            )
        except (gexc.DeadlineExceeded, gexc.ServiceUnavailable):
            return []  # nothing arrived in time (or a blip): the next poll asks again
        received = list(response.received_messages)
        if not received:
            return []
        self._client.acknowledge(subscription=self._path, ack_ids=[m.ack_id for m in received], timeout=_CALL_TIMEOUT)
        results = []
        for m in received:
            try:
                value = json.loads(bytes(m.message.data))
            except ValueError:
                continue  # not ours to judge; results are JSON
            if isinstance(value, dict):
                results.append(value)
        return results

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        from google.api_core import exceptions as gexc

        try:
            self._client.delete_subscription(subscription=self._path, timeout=_CALL_TIMEOUT)
        except (gexc.GoogleAPICallError, gexc.RetryError):
            pass  # it expires by itself
        finally:
            self._client.close()
