"""Google credentials for this function instance: the function's own identity, no keys."""

from __future__ import annotations

import threading
from typing import Any

from shared.errors import TransientError

__all__ = ["access_token", "call_google_api", "default_credentials", "google_error"]

_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
_lock = threading.Lock()
_credentials: Any = None


def default_credentials() -> Any:
    """Application Default Credentials, resolved once per instance."""
    global _credentials
    with _lock:
        if _credentials is None:
            import google.auth
            from google.auth.transport.urllib3 import Request

            from shared.adapters.http import pool

            # The urllib3 transport, as every adapter: google-auth's default `requests`
            # transport needs a package the functions do not ship.
            _credentials, _ = google.auth.default(scopes=_SCOPES, request=Request(pool()))
        return _credentials


def access_token() -> str:
    """A fresh OAuth access token (refreshed when stale). A refresh that fails (the token
    endpoint or the metadata server unreachable, a credential refused) is transient: the
    event is redelivered; the error names no token."""
    from google.auth.exceptions import GoogleAuthError

    try:
        credentials = default_credentials()
        with _lock:  # regions are read from several threads: one refresh, one first import
            from google.auth.credentials import TokenState
            from google.auth.transport.urllib3 import Request

            from shared.adapters.http import pool

            if credentials.token_state is not TokenState.FRESH:
                credentials.refresh(Request(pool()))
            return str(credentials.token)
    except GoogleAuthError as e:
        raise TransientError(f"Google credentials: {type(e).__name__}") from None


def call_google_api(method: str, url: str, *, body: Any = None, timeout: float = 20, anonymous: bool = False) -> Any:
    """One Google REST call as this instance's identity; returns the http.Answer.
    `anonymous`: no token (the Pub/Sub emulator takes none). Connection faults raise."""
    from shared.adapters import http

    headers = {} if anonymous else {"Authorization": f"Bearer {access_token()}"}
    return http.request(method, url, headers=headers, body=body, timeout=(5, timeout))


def google_error(answer: Any) -> str:
    """`STATUS: message` from Google's JSON error envelope (or the bare HTTP status)."""
    try:
        error = answer.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    status = error.get("status") or f"HTTP {answer.status}"
    return f"{status}: {str(error.get('message', ''))[:300]}"
