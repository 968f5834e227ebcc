"""Cloudflare load-balancing adapter: the documented REST API (client/v4), over
shared.adapters.http.

Plain REST, not the `cloudflare` SDK: the SDK (4.3.1 or 5.x) costs a cold start about
0.45 s and 20 MiB of imports for nine endpoints (figures in bench/results.md), and its
traps had to be guarded against anyway. What this adapter guarantees:
- only the API token from Secret Manager authenticates (nothing is read from the
  environment);
- every answer's envelope is read, so a 200 with `success: false` is an error rather
  than a silent None or an empty list (an empty list would make us create duplicates);
- fields are sent as JSON exactly as the API names them (`timeout` of a monitor,
  `check_regions` on pool creation);
- retries are bounded, honour Retry-After, and never repeat a create blindly (a create
  that may have landed is looked up before it is retried).
The token is never logged and never part of an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from shared.edge_health import EdgeHealth, assess_edge_health
from shared.errors import CloudflareUnavailable, PermanentError

__all__ = ["CloudflareLB"]

Object = dict[str, Any]
DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
_MAX_ATTEMPTS = 5
_TIMEOUT = (5.0, 15.0)  # (connect, read) seconds
_MAX_WAIT_SECONDS = 10.0  # longer Retry-After: give up and let Pub/Sub redeliver later
_REJECTED = "cloudflare_rejected"


class CloudflareLB:
    def __init__(
        self,
        token: Callable[[], str],
        *,
        account_id: str,
        zone_id: str,
        base_url: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_auth_failure: Callable[[], None] | None = None,
    ) -> None:
        self._token = token
        self._account = account_id
        self._zone = zone_id
        self._base_url = base_url or DEFAULT_BASE_URL
        self._sleep = sleep
        self._on_auth_failure = on_auth_failure
        self.writes = 0  # successful POST/PATCH/DELETE calls, for reports

    # --- monitors, pools, load balancers -------------------------------------------------

    def list_monitors(self) -> list[Object]:
        return self._list(f"/accounts/{self._account}/load_balancers/monitors")

    def list_pools(self) -> list[Object]:
        return self._list(f"/accounts/{self._account}/load_balancers/pools")

    def list_load_balancers(self) -> list[Object]:
        return self._list(f"/zones/{self._zone}/load_balancers")

    def create_monitor(self, body: Object, find: Callable[[], Object | None]) -> Object:
        return self._write("POST", f"/accounts/{self._account}/load_balancers/monitors", body, recheck=find)

    def create_pool(self, body: Object, find: Callable[[], Object | None]) -> Object:
        return self._write("POST", f"/accounts/{self._account}/load_balancers/pools", body, recheck=find)

    def create_load_balancer(self, body: Object, find: Callable[[], Object | None]) -> Object:
        return self._write("POST", f"/zones/{self._zone}/load_balancers", body, recheck=find)

    def edit_monitor(self, monitor_id: str, fields: Object) -> Object:
        return self._write("PATCH", f"/accounts/{self._account}/load_balancers/monitors/{monitor_id}", fields)

    def edit_pool(self, pool_id: str, fields: Object) -> Object:
        return self._write("PATCH", f"/accounts/{self._account}/load_balancers/pools/{pool_id}", fields)

    def edit_load_balancer(self, lb_id: str, fields: Object) -> Object:
        return self._write("PATCH", f"/zones/{self._zone}/load_balancers/{lb_id}", fields)

    def delete_pool(self, pool_id: str) -> None:
        self._write("DELETE", f"/accounts/{self._account}/load_balancers/pools/{pool_id}")

    def delete_monitor(self, monitor_id: str) -> None:
        self._write("DELETE", f"/accounts/{self._account}/load_balancers/monitors/{monitor_id}")

    # --- Cloudflare's own view of a pool ---------------------------------------------------

    def read_pool_health(self, pool_id: str) -> Object | None:
        """The documented pool health report's `result` (``pool_id``, ``pop_health``);
        None when Cloudflare has none to give (it answers 400 for a pool it does not
        probe, e.g. one without a monitor). Needs only the account's pools Read."""
        try:
            result = self._attempt("GET", f"/accounts/{self._account}/load_balancers/pools/{pool_id}/health")
        except PermanentError as e:
            if e.reason != _REJECTED:
                raise
            return None
        return result if isinstance(result, dict) else None

    def edge_health(self, pool_id: str) -> EdgeHealth:
        """Cloudflare's verdict on the pool, from its health report."""
        return assess_edge_health(self.read_pool_health(pool_id))

    # --- plumbing ---------------------------------------------------------------------

    def _list(self, path: str) -> list[Object]:
        result = self._attempt("GET", path)
        if not isinstance(result, list):
            raise CloudflareUnavailable("Cloudflare returned no list where one was expected")
        return result

    def _write(
        self, method: str, path: str, body: Object | None = None, recheck: Callable[[], Object | None] | None = None
    ) -> Object:
        # `recheck` (creates): an outcome left unknown by a timeout or 5xx may have
        # landed, so it is looked up before another attempt.
        result = self._attempt(method, path, body, recheck=recheck)
        self.writes += 1
        return result if isinstance(result, dict) else {}

    def _attempt(
        self, method: str, path: str, body: Object | None = None, recheck: Callable[[], Object | None] | None = None
    ) -> Any:
        """Calls with bounded retries on 429, 5xx, connection errors and success:false."""
        from shared.adapters import http

        token = self._token()
        if not token or not token.isprintable() or any(c.isspace() for c in token):
            # http.client would refuse the header and quote the token in its error.
            if self._on_auth_failure:
                self._on_auth_failure()
            raise CloudflareUnavailable(
                "the Cloudflare API token from Secret Manager is malformed (spaces or control characters)"
            )
        delay = 0.5
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            wait = delay
            try:
                answer = http.request(
                    method,
                    self._base_url + path,
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                    body=body,
                    timeout=_TIMEOUT,
                )
            except Exception as e:
                if not http.is_connection_error(e):
                    raise
                answer, problem = None, type(e).__name__
            if answer is not None:
                if answer.status == 429:
                    wait = _retry_after(answer) or delay
                    problem = "rate limited (429)"
                elif answer.status >= 500 or 300 <= answer.status < 400:
                    problem = f"HTTP {answer.status}"  # a server error, or a redirect we do not follow
                elif answer.status in (401, 403):
                    # Perhaps the token was rotated: the next call reads it again.
                    if self._on_auth_failure:
                        self._on_auth_failure()
                    raise CloudflareUnavailable(f"Cloudflare refused the API token ({answer.status})")
                elif answer.status == 404:
                    raise CloudflareUnavailable(f"Cloudflare object vanished: {_errors(answer)}")
                elif not answer.ok:
                    raise PermanentError(_REJECTED, f"HTTP {answer.status}: {_errors(answer)}")
                else:
                    envelope = _envelope(answer)
                    if envelope.get("success") is True:
                        return envelope.get("result")
                    problem = f"Cloudflare answered success:false: {envelope.get('errors')}"
            if attempt == _MAX_ATTEMPTS or wait > _MAX_WAIT_SECONDS:
                raise CloudflareUnavailable(f"Cloudflare: {problem} after {attempt} attempt(s)")
            self._sleep(wait)
            delay *= 2
            if recheck is not None and (existing := recheck()) is not None:
                return existing
        raise AssertionError("unreachable")


def _envelope(answer: Any) -> Object:
    try:
        body = answer.json()
    except ValueError:
        return {"errors": "an answer that is not JSON"}
    return body if isinstance(body, dict) else {"errors": "an answer that is not a JSON object"}


def _retry_after(answer: Any) -> float | None:
    try:
        return float(answer.headers.get("retry-after"))
    except (TypeError, ValueError):
        return None


def _errors(answer: Any) -> str:
    errors = _envelope(answer).get("errors")
    if isinstance(errors, list) and errors:
        return "; ".join(f"{err.get('code')}: {err.get('message')}" for err in errors if isinstance(err, dict))
    return f"HTTP {answer.status}"
