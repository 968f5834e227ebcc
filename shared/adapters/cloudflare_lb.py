"""Cloudflare load-balancing adapter, on the official `cloudflare` SDK (4.x).

Guards against the SDK traps listed in docs/architecture.md ("Cloudflare"):
- only the API token authenticates: credentials the SDK would pick up from the
  environment (CLOUDFLARE_EMAIL / CLOUDFLARE_API_KEY, which take precedence over a token)
  are cleared on the client;
- every response's envelope is read raw, so a 200 with `success: false` is an error
  rather than a silent None or an empty list (an empty list would make us create
  duplicates);
- fields are sent as JSON exactly as the API names them (`timeout` of a monitor,
  `check_regions` on pool creation), not through SDK keywords that rename or lack them;
- the SDK's own retries are off: ours are bounded, honour Retry-After, and never repeat
  a create blindly (a create that may have landed is looked up before it is retried).
The token is never logged and never part of an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from shared.errors import CloudflareUnavailable, PermanentError

__all__ = ["CloudflareLB"]

Object = dict[str, Any]
DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
_MAX_ATTEMPTS = 5
_MAX_WAIT_SECONDS = 10.0  # longer Retry-After: give up and let Pub/Sub redeliver later


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
        self._client: Any = None
        self.writes = 0  # successful POST/PATCH/DELETE calls, for reports

    # --- monitors, pools, load balancers -------------------------------------------------

    def list_monitors(self) -> list[Object]:
        return self._list(lambda c: c.load_balancers.monitors.with_raw_response.list(account_id=self._account))

    def list_pools(self) -> list[Object]:
        return self._list(lambda c: c.load_balancers.pools.with_raw_response.list(account_id=self._account))

    def list_load_balancers(self) -> list[Object]:
        return self._list(lambda c: c.load_balancers.with_raw_response.list(zone_id=self._zone))

    def create_monitor(self, body: Object, find: Callable[[], Object | None]) -> Object:
        return self._create(
            lambda c: c.load_balancers.monitors.with_raw_response.create(account_id=self._account, extra_body=body),
            find,
        )

    def create_pool(self, body: Object, find: Callable[[], Object | None]) -> Object:
        rest = {k: v for k, v in body.items() if k not in ("name", "origins")}
        return self._create(
            lambda c: c.load_balancers.pools.with_raw_response.create(
                account_id=self._account, name=body["name"], origins=body["origins"], extra_body=rest
            ),
            find,
        )

    def create_load_balancer(self, body: Object, find: Callable[[], Object | None]) -> Object:
        rest = {k: v for k, v in body.items() if k not in ("name", "default_pools", "fallback_pool")}
        return self._create(
            lambda c: c.load_balancers.with_raw_response.create(
                zone_id=self._zone,
                name=body["name"],
                default_pools=body["default_pools"],
                fallback_pool=body["fallback_pool"],
                extra_body=rest,
            ),
            find,
        )

    def edit_monitor(self, monitor_id: str, fields: Object) -> Object:
        return self._write(
            lambda c: c.load_balancers.monitors.with_raw_response.edit(
                monitor_id, account_id=self._account, extra_body=fields
            )
        )

    def edit_pool(self, pool_id: str, fields: Object) -> Object:
        return self._write(
            lambda c: c.load_balancers.pools.with_raw_response.edit(
                pool_id, account_id=self._account, extra_body=fields
            )
        )

    def edit_load_balancer(self, lb_id: str, fields: Object) -> Object:
        return self._write(
            lambda c: c.load_balancers.with_raw_response.edit(lb_id, zone_id=self._zone, extra_body=fields)
        )

    def delete_pool(self, pool_id: str) -> None:
        self._write(lambda c: c.load_balancers.pools.with_raw_response.delete(pool_id, account_id=self._account))

    def delete_monitor(self, monitor_id: str) -> None:
        self._write(lambda c: c.load_balancers.monitors.with_raw_response.delete(monitor_id, account_id=self._account))

    # --- plumbing ---------------------------------------------------------------------

    def _sdk(self) -> Any:
        if self._client is None:
            from cloudflare import Cloudflare

            client = Cloudflare(api_token=self._token(), base_url=self._base_url, max_retries=0, timeout=15)
            # The SDK sends X-Auth-Email/X-Auth-Key instead of the token when those are set
            # in the environment; only the token from Secret Manager may authenticate.
            client.api_email = None
            client.api_key = None
            client.user_service_key = None
            self._client = client
        return self._client

    def _list(self, call: Callable[[Any], Any]) -> list[Object]:
        result = self._attempt(call)
        if not isinstance(result, list):
            raise CloudflareUnavailable("Cloudflare returned no list where one was expected")
        return result

    def _write(self, call: Callable[[Any], Any], recheck: Callable[[], Object | None] | None = None) -> Object:
        result = self._attempt(call, recheck=recheck)
        self.writes += 1
        return result if isinstance(result, dict) else {}

    def _create(self, call: Callable[[Any], Any], find: Callable[[], Object | None]) -> Object:
        # A create whose outcome is unknown (timeout, 5xx) may have landed: look first.
        return self._write(call, recheck=find)

    def _attempt(self, call: Callable[[Any], Any], recheck: Callable[[], Object | None] | None = None) -> Any:
        """Calls with bounded retries on 429, 5xx, connection errors and success:false."""
        import cloudflare

        delay = 0.5
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            wait = delay
            try:
                return _envelope_result(call(self._sdk()))
            except cloudflare.RateLimitError as e:
                wait = _retry_after(e) or delay
                problem = "rate limited (429)"
            except cloudflare.InternalServerError as e:
                problem = f"server error ({e.status_code})"
            except (cloudflare.APIConnectionError, _FailedEnvelope) as e:
                problem = type(e).__name__ if isinstance(e, cloudflare.APIConnectionError) else str(e)
            except (cloudflare.AuthenticationError, cloudflare.PermissionDeniedError):
                # Perhaps the token was rotated: the next call reads it again.
                self._client = None
                if self._on_auth_failure:
                    self._on_auth_failure()
                raise CloudflareUnavailable("Cloudflare refused the API token (401/403)") from None
            except cloudflare.NotFoundError as e:
                raise CloudflareUnavailable(f"Cloudflare object vanished: {_errors(e)}") from None
            except cloudflare.APIStatusError as e:
                raise PermanentError("cloudflare_rejected", f"HTTP {e.status_code}: {_errors(e)}") from None
            if attempt == _MAX_ATTEMPTS or wait > _MAX_WAIT_SECONDS:
                raise CloudflareUnavailable(f"Cloudflare: {problem} after {attempt} attempt(s)")
            self._sleep(wait)
            delay *= 2
            if recheck is not None and (existing := recheck()) is not None:
                return existing
        raise AssertionError("unreachable")


class _FailedEnvelope(Exception):
    """A 2xx answer whose envelope says success: false."""


def _envelope_result(raw: Any) -> Any:
    body = raw.http_response.json()
    if not isinstance(body, dict) or body.get("success") is not True:
        errors = body.get("errors") if isinstance(body, dict) else None
        raise _FailedEnvelope(f"Cloudflare answered success:false: {errors}")
    return body.get("result")


def _retry_after(e: Any) -> float | None:
    try:
        return float(e.response.headers.get("retry-after"))
    except (TypeError, ValueError):
        return None


def _errors(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict) and body.get("errors"):
        return "; ".join(f"{err.get('code')}: {err.get('message')}" for err in body["errors"])
    return str(getattr(e, "status_code", "error"))
