"""The one HTTP layer under every adapter: urllib3, already loaded by google-auth.

The service client libraries (kubernetes, google-cloud-*, cloudflare) cost a cold start
0.3–0.5 s of imports each; geodeploy calls a handful of documented REST endpoints, so it
speaks them directly. urllib3 never retries here: each adapter decides what is worth
another attempt, and a call abandoned at a deadline must not live on in hidden retries.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import urllib3

__all__ = ["Answer", "identify", "is_connection_error", "pool", "request", "stream"]

Timeout = tuple[float, float]  # (connect, read) seconds

_pools: dict[str | None, urllib3.PoolManager] = {}
_lock = threading.Lock()
_user_agent = "geodeploy"


def identify(service: str | None) -> None:
    """Names the caller in every request's User-Agent (`geodeploy (<function>)`), so API
    servers' audit logs tell the functions apart."""
    global _user_agent
    _user_agent = f"geodeploy ({service})" if service else "geodeploy"


class Answer:
    """A finished response: status, headers and the whole body."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body) if self.body else {}


def pool(ca_pem: str | None = None) -> urllib3.PoolManager:
    """One pool per trust root, kept for the life of the instance (keep-alive)."""
    with _lock:
        found = _pools.get(ca_pem)
        if found is None:
            if ca_pem is None:
                import certifi

                found = urllib3.PoolManager(maxsize=8, retries=False, ca_certs=certifi.where())
            else:
                found = urllib3.PoolManager(maxsize=8, retries=False, ca_cert_data=ca_pem)
            _pools[ca_pem] = found
        return found


def _send(
    method: str,
    url: str,
    *,
    query: Sequence[tuple[str, str]] | None,
    headers: Mapping[str, str] | None,
    body: Any,
    content_type: str,
    timeout: Timeout,
    ca_pem: str | None,
    preload: bool,
) -> urllib3.BaseHTTPResponse:
    sent = {"User-Agent": _user_agent, **(headers or {})}
    payload: bytes | None = None
    if body is not None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent["Content-Type"] = content_type
    if query:
        url = f"{url}?{urlencode(list(query))}"
    return pool(ca_pem).request(
        method,
        url,
        body=payload,
        headers=sent,
        timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
        retries=False,
        redirect=False,
        preload_content=preload,
    )


def request(
    method: str,
    url: str,
    *,
    query: Sequence[tuple[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
    content_type: str = "application/json",
    timeout: Timeout = (5, 30),
    ca_pem: str | None = None,
) -> Answer:
    """One call; `body` is bytes as given, anything else is sent as JSON. Connection
    faults raise (see is_connection_error); any HTTP status is returned."""
    response = _send(
        method,
        url,
        query=query,
        headers=headers,
        body=body,
        content_type=content_type,
        timeout=timeout,
        ca_pem=ca_pem,
        preload=True,
    )
    return Answer(response.status, response.headers, response.data or b"")


def stream(
    method: str,
    url: str,
    *,
    query: Sequence[tuple[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: Timeout = (5, 30),
    ca_pem: str | None = None,
) -> urllib3.BaseHTTPResponse:
    """A response whose body is read as it arrives (a watch); the caller releases it."""
    return _send(
        method,
        url,
        query=query,
        headers=headers,
        body=None,
        content_type="",
        timeout=timeout,
        ca_pem=ca_pem,
        preload=False,
    )


def is_connection_error(e: BaseException) -> bool:
    """The peer could not be reached or stopped answering: worth another attempt later."""
    return isinstance(e, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError | OSError)
