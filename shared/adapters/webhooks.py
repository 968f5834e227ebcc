"""Webhook adapter: POSTs one notification, a bounded number of times, each bounded in time.

It never raises for the receiver's faults: it returns what happened, so the notify flow
logs it and acks (a notification must never hold up, or loop on, anything). The URL is
a secret (a Slack webhook's URL is its credential): it is never put in a log or an
error; failures are named by kind only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["ATTEMPTS", "Delivery", "Failure", "post_webhook"]

# Worst case per webhook: 3 × (3 s to connect + 5 s to answer) + 0.5 s + 1 s of backoff,
# 25.5 s: well inside the notify function's 60 s, with every webhook posted at once.
ATTEMPTS = 3
BACKOFF_SECONDS = (0.5, 1.0)  # before the 2nd and the 3rd attempt
TIMEOUT = (3.0, 5.0)  # (connect, read) seconds


class Failure(StrEnum):
    """Why a webhook did not take a notification (logged as the reason)."""

    SERVER_ERROR = "server_error"  # 5xx, or 429, on every attempt
    REFUSED = "refused"  # another 4xx: the receiver will not take it, so it is not retried
    TIMEOUT = "timeout"  # no answer in time, on the last attempt
    UNREACHABLE = "unreachable"  # no connection, on the last attempt
    INVALID_URL = "invalid_url"  # the secret does not hold a usable URL: not retried


@dataclass(frozen=True)
class Delivery:
    attempts: int
    status: int | None  # the last answer's HTTP status, if there was one
    failure: Failure | None = None

    @property
    def delivered(self) -> bool:
        return self.failure is None


def post_webhook(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    attempts: int = ATTEMPTS,
    timeout: tuple[float, float] = TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POSTs `body` (JSON) until a 2xx, a refusal, or the last attempt."""
    import urllib3

    from shared.adapters.http import is_connection_error, request

    last = Delivery(0, None, Failure.UNREACHABLE)
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            sleep(BACKOFF_SECONDS[min(attempt - 2, len(BACKOFF_SECONDS) - 1)])
        try:
            answer = request("POST", url, body=body, headers=headers, timeout=timeout)
        except urllib3.exceptions.LocationValueError:
            return Delivery(attempt, None, Failure.INVALID_URL)
        except urllib3.exceptions.NewConnectionError:
            last = Delivery(attempt, None, Failure.UNREACHABLE)
            continue
        except urllib3.exceptions.TimeoutError:
            last = Delivery(attempt, None, Failure.TIMEOUT)
            continue
        except Exception as e:
            if not is_connection_error(e):
                raise
            last = Delivery(attempt, None, Failure.UNREACHABLE)
            continue
        if answer.ok:
            return Delivery(attempt, answer.status)
        if answer.status < 500 and answer.status != 429:
            return Delivery(attempt, answer.status, Failure.REFUSED)
        last = Delivery(attempt, answer.status, Failure.SERVER_ERROR)
    return last
