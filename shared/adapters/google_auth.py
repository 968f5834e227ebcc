"""Google credentials for this function instance: the function's own identity, no keys."""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["access_token", "default_credentials"]

_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
_lock = threading.Lock()
_credentials: Any = None


def default_credentials() -> Any:
    """Application Default Credentials, resolved once per instance."""
    global _credentials
    with _lock:
        if _credentials is None:
            import google.auth

            _credentials, _ = google.auth.default(scopes=_SCOPES)
        return _credentials


def access_token() -> str:
    """A fresh OAuth access token (refreshed when stale) for the Kubernetes API."""
    credentials = default_credentials()
    with _lock:  # regions are read from several threads: one refresh, one first import
        from google.auth.credentials import TokenState
        from google.auth.transport.requests import Request

        if credentials.token_state is not TokenState.FRESH:
            credentials.refresh(Request())
        return str(credentials.token)
