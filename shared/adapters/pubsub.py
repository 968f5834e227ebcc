"""Pub/Sub adapter: publish and wait for the server's confirmation.

A publish is only done once its future resolves; a function that returned earlier could
lose the message. PUBSUB_EMULATOR_HOST, when set, is honoured by the library itself.
"""

from __future__ import annotations

import threading
from typing import Any

from shared.errors import TransientError

__all__ = ["Publisher"]


class Publisher:
    def __init__(self, project: str) -> None:
        self._project = project
        self._client: Any = None
        self._lock = threading.Lock()

    def _publisher(self) -> Any:
        with self._lock:
            if self._client is None:
                from google.cloud.pubsub_v1 import PublisherClient

                self._client = PublisherClient()
            return self._client

    def publish(self, topic: str, data: bytes, timeout: float = 30) -> str:
        """Publishes and returns the message id once Pub/Sub has confirmed it."""
        return self.publish_each([(topic, data)], timeout=timeout)[0]

    def publish_each(self, messages: list[tuple[str, bytes]], timeout: float = 30) -> list[str]:
        """Publishes (topic, data) pairs, then waits for every confirmation: the waits
        overlap instead of adding up."""
        from google.api_core import exceptions as gexc

        client = self._publisher()
        futures = [(topic, client.publish(client.topic_path(self._project, topic), data)) for topic, data in messages]
        try:
            return [str(future.result(timeout=timeout)) for _, future in futures]
        except (gexc.GoogleAPICallError, gexc.RetryError, TimeoutError) as e:
            topics = sorted({topic for topic, _ in futures})
            raise TransientError(f"publish to {', '.join(topics)} failed: {type(e).__name__}: {e}") from e
