"""Secret Manager adapter: reads a secret's latest version, verifying its checksum.

The value is cached for the life of the function instance and never logged; it is
registered with the log redactor as a last line of defence.

A secret that is missing, has no enabled version, or may not be read (yet) is
SecretUnavailable, a transient fault: an operator fixes it, and meanwhile the event that
needed it is redelivered rather than acknowledged and lost.
"""

from __future__ import annotations

import threading
from typing import Any

from shared.errors import SecretUnavailable, TransientError
from shared.logs import register_secret

__all__ = ["SecretReader"]


class SecretReader:
    def __init__(self, project: str, *, endpoint: str | None = None) -> None:
        self._project = project
        self._endpoint = endpoint
        self._client: Any = None
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()

    def read(self, secret: str) -> str:
        with self._lock:
            if secret not in self._cache:
                self._cache[secret] = self._access(secret)
            return self._cache[secret]

    def forget(self, secret: str) -> None:
        """Drops a cached value, e.g. after the API rejected it (it may have been rotated)."""
        with self._lock:
            self._cache.pop(secret, None)

    def _access(self, secret: str) -> str:
        import google_crc32c
        from google.api_core import exceptions as gexc

        from shared.adapters.google_auth import default_credentials

        if self._client is None:
            from google.cloud import secretmanager

            options = {"api_endpoint": self._endpoint} if self._endpoint else None
            self._client = secretmanager.SecretManagerServiceClient(
                credentials=default_credentials(), transport="rest", client_options=options
            )
        name = f"projects/{self._project}/secrets/{secret}/versions/latest"
        try:
            response = self._client.access_secret_version(name=name, timeout=20)
        except gexc.NotFound:
            raise SecretUnavailable(name, "NotFound: create the secret, or add or enable a version") from None
        except (gexc.Forbidden, gexc.PermissionDenied):  # over REST a 403 is Forbidden
            raise SecretUnavailable(
                name, "PermissionDenied: grant the function's service account roles/secretmanager.secretAccessor"
            ) from None
        except (gexc.FailedPrecondition, gexc.BadRequest):
            # Over REST a disabled or destroyed version is a 400 (FAILED_PRECONDITION).
            raise SecretUnavailable(name, "the version is disabled or destroyed: enable it or add one") from None
        except (gexc.GoogleAPICallError, gexc.RetryError, OSError) as e:
            raise TransientError(f"Secret Manager: {name}: {type(e).__name__}") from None
        data = response.payload.data
        # The client does not check dataCrc32c; a corrupted payload must not be used.
        if response.payload.data_crc32c and google_crc32c.value(data) != response.payload.data_crc32c:
            raise TransientError(f"Secret Manager: {name}: payload checksum mismatch")
        value = data.decode().strip()
        register_secret(value)
        return value
