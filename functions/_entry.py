"""The one place where outcomes become Pub/Sub acknowledgements.

return → HTTP 200 → acked.  raise → HTTP 500 → redelivered (retries are on).
- bad input (PermanentError): logged with its reason, acked, so no retry storm;
- transient faults and work still in progress: raised, so Pub/Sub redelivers;
- events older than rollout.max_event_age_seconds: logged and acked, so a poisoned
  event cannot retry for the whole 24 h retry window.
Every event ends with one `event_handled` line: its outcome and how long it took.
Every line of the call carries its execution id and trace (shared/logs.py `call_context`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.errors import ConfigError, NotYet, PermanentError, TransientError
from shared.logs import (
    CALL_HEADERS,
    BoundLogger,
    CallContext,
    call_context,
    call_context_of,
    configure_logging,
    get_logger,
)

__all__ = ["EventInfo", "run_handler"]


@dataclass(frozen=True)
class EventInfo:
    id: str
    published_at: datetime
    source: str


Handler = Callable[[dict[str, Any], EventInfo, BoundLogger], None]

ACKED, REDELIVER = "acked", "redeliver"  # what Pub/Sub is told, as the logs name it


def run_handler(
    function: str, cloud_event: Any, handler: Handler, decode: Callable[[Any], dict[str, Any]] | None = None
) -> None:
    """`decode` turns the event's data into the handler's dict (default: the message's
    JSON object, decode_pubsub_data)."""
    configure_logging()
    info = EventInfo(
        id=str(cloud_event["id"]),
        published_at=_parse_time(cloud_event["time"]),
        source=str(cloud_event["source"]),
    )
    with call_context(_call_of(cloud_event, info)):
        _handle_event(function, cloud_event, handler, info, decode)


def _handle_event(
    function: str,
    cloud_event: Any,
    handler: Handler,
    info: EventInfo,
    decode: Callable[[Any], dict[str, Any]] | None,
) -> None:
    from shared.contracts import decode_pubsub_data
    from shared.settings import load_instance_config, load_settings

    log = get_logger(function, function=function, event_id=info.id, region=load_settings().region)
    started, outcome = time.monotonic(), REDELIVER
    try:
        config = load_instance_config()
        age = (datetime.now(UTC) - info.published_at).total_seconds()
        if age > config.rollout.max_event_age_seconds:
            log.warning("event_dropped", reason="too_old", age_seconds=round(age))
        else:
            handler((decode or decode_pubsub_data)(cloud_event.data), info, log)
        outcome = ACKED
    except PermanentError as e:
        log.warning("event_rejected", reason=e.reason, detail=e.detail)
        outcome = ACKED
    except NotYet as e:
        log.info("work_in_progress", detail=str(e), outcome=REDELIVER)
        raise
    except TransientError as e:
        log.error("transient_failure", error=type(e).__name__, reason=e.reason, detail=str(e), outcome=REDELIVER)
        raise
    except ConfigError as e:
        # Not the event's fault: keep it (redelivered) until the config is fixed.
        log.error("config_invalid", detail=str(e), outcome=REDELIVER)
        raise
    except Exception:
        log.error("unexpected_error", exc_info=True, outcome=REDELIVER)
        raise
    finally:
        log.info("event_handled", outcome=outcome, seconds=round(time.monotonic() - started, 3))


def _call_of(cloud_event: Any, info: EventInfo) -> CallContext:
    """The call's execution id and trace, from the request functions-framework is serving."""
    import flask  # functions-framework's own web framework, loaded with it: no import cost

    found = flask.request.headers if flask.has_request_context() else None
    # Looked up by name: the request's headers are case-insensitive, the Mapping we pass is not.
    headers = {name: value for name in CALL_HEADERS if found is not None and (value := found.get(name))}
    get = getattr(cloud_event, "get", None)  # a CloudEvent's extension attributes
    traceparent = get("traceparent") if callable(get) else None
    return call_context_of(headers, event_source=info.source, event_traceparent=traceparent)


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return datetime.now(UTC)  # no usable time: treat as fresh rather than drop it
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
