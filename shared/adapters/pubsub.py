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

    def publish(self, topic: str, data: bytes, timeout: float = 30, **attributes: str) -> str:
        """Publishes and returns the message id once Pub/Sub has confirmed it."""
        return self.publish_all(topic, [data], timeout=timeout, **attributes)[0]

    def publish_all(self, topic: str, messages: list[bytes], timeout: float = 30, **attributes: str) -> list[str]:
        """Publishes several messages in one batch and waits for every confirmation."""
        from google.api_core import exceptions as gexc

        client = self._publisher()
        path = client.topic_path(self._project, topic)
        futures = [client.publish(path, data, **attributes) for data in messages]
        try:
            return [str(f.result(timeout=timeout)) for f in futures]
        except (gexc.GoogleAPICallError, gexc.RetryError, TimeoutError) as e:
            raise TransientError(f"publish to {topic} failed: {type(e).__name__}: {e}") from e
