"""Secret Manager adapter: reads a secret's latest version over REST, verifying its checksum.

The value is cached for the life of the function instance and never logged; it is
registered with the log redactor as a last line of defence.

A secret that is missing, has no enabled version, or may not be read (yet) is
SecretUnavailable, a transient fault: an operator fixes it, and meanwhile the event that
needed it is redelivered rather than acknowledged and lost.
"""

from __future__ import annotations

import threading

from shared.errors import SecretUnavailable, TransientError
from shared.logs import register_secret

__all__ = ["SecretReader"]


SECRET_MANAGER_API = "https://secretmanager.googleapis.com"


class SecretReader:
    def __init__(self, project: str, *, endpoint: str | None = None) -> None:
        self._project = project
        self._endpoint = endpoint
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
        import base64

        import google_crc32c

        from shared.adapters.google_auth import call_google_api, google_error
        from shared.adapters.http import is_connection_error

        name = f"projects/{self._project}/secrets/{secret}/versions/latest"
        try:
            answer = call_google_api("GET", f"{self._endpoint or SECRET_MANAGER_API}/v1/{name}:access")
        except Exception as e:
            if is_connection_error(e):
                raise TransientError(f"Secret Manager: {name}: {type(e).__name__}") from None
            raise
        if answer.status == 404:
            raise SecretUnavailable(name, "NotFound: create the secret, or add or enable a version")
        if answer.status == 403:
            raise SecretUnavailable(
                name, "PermissionDenied: grant the function's service account roles/secretmanager.secretAccessor"
            )
        if answer.status == 400:  # FAILED_PRECONDITION: the version is disabled or destroyed
            raise SecretUnavailable(name, "the version is disabled or destroyed: enable it or add one")
        if not answer.ok:
            raise TransientError(f"Secret Manager: {name}: {google_error(answer)}")
        payload = answer.json().get("payload") or {}
        data = base64.b64decode(payload.get("data", ""))
        # Checked as the client libraries do not: a corrupted payload must not be used.
        checksum = payload.get("dataCrc32c")
        if checksum and google_crc32c.value(data) != int(checksum):
            raise TransientError(f"Secret Manager: {name}: payload checksum mismatch")
        value = data.decode().strip()
        register_secret(value)
        return value
