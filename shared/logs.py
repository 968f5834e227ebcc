"""Structured logs: one JSON object per line on stdout, which Cloud Logging reads as
`severity`, `message` and a jsonPayload of the remaining fields.

Events are named in the past tense (`manifests_applied`, `rollout_failed`). Loggers
carry bound context (app, region, digest, release). Secret values registered with
`register_secret` are replaced by "[redacted]" in every line, as a last line of
defence: code should never log a secret in the first place.

Every line written during a function call (`call_context`, set by functions/_entry.py)
carries the fields Cloud Logging groups a call's entries by: the execution id as the
label `execution_id` (what functions-framework's LOG_EXECUTION_ID puts on its own
lines), and the request's trace and span (`logging.googleapis.com/trace`,
`logging.googleapis.com/spanId`, `logging.googleapis.com/trace_sampled`), so a call's
lines sit under its Cloud Run request log. Threads a call starts carry it too
(shared/flows/regions.py runs them in the call's context).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "CALL_HEADERS",
    "BoundLogger",
    "CallContext",
    "call_context",
    "call_context_of",
    "configure_logging",
    "get_logger",
    "register_secret",
]

_ROOT = "geodeploy"
_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_configured = False


def register_secret(value: str) -> None:
    if len(value) >= 6:  # shorter values would redact ordinary words
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    with _secrets_lock:
        secrets = list(_secrets)
    for secret in secrets:
        # Lines are JSON: also catch the secret as json.dumps escaped it.
        for form in {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}:
            text = text.replace(form, "[redacted]")
    return text


# --- the call a line belongs to ------------------------------------------------------------

LABELS = "logging.googleapis.com/labels"
TRACE = "logging.googleapis.com/trace"
SPAN_ID = "logging.googleapis.com/spanId"
TRACE_SAMPLED = "logging.googleapis.com/trace_sampled"

# W3C traceparent: version-traceid-spanid-flags, lower-case hex, neither id all zeros.
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-(?P<flags>[0-9a-f]{2})$")
# Google's X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS, the span id in decimal.
_CLOUD_TRACE = re.compile(r"^(?P<trace>[0-9a-fA-F]{32})(?:/(?P<span>[0-9]{1,20}))?(?:;o=(?P<options>[0-9]+))?$")
_PROJECT_IN_SOURCE = re.compile(r"/projects/(?P<project>[a-z][-a-z0-9.:]*[a-z0-9])/")


# The request headers call_context_of reads.
CALL_HEADERS = ("Function-Execution-Id", "traceparent", "X-Cloud-Trace-Context")


@dataclass(frozen=True)
class CallContext:
    """What Cloud Logging groups one call's lines by."""

    execution_id: str | None = None
    trace: str | None = None  # projects/<project>/traces/<trace id>
    span_id: str | None = None  # 16 hex digits, as LogEntry.spanId wants it
    sampled: bool | None = None

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self.execution_id:
            fields[LABELS] = {"execution_id": self.execution_id}
        if self.trace:
            fields[TRACE] = self.trace
            if self.span_id:
                fields[SPAN_ID] = self.span_id
            if self.sampled is not None:
                fields[TRACE_SAMPLED] = self.sampled
        return fields


def _trace_of(header: str | None) -> tuple[str, str, bool] | None:
    """(trace id, span id, sampled) of a traceparent or X-Cloud-Trace-Context value."""
    value = (header or "").strip()
    if m := _TRACEPARENT.match(value):
        if m["trace"] != "0" * 32 and m["span"] != "0" * 16:
            return m["trace"], m["span"], bool(int(m["flags"], 16) & 1)
        return None
    if m := _CLOUD_TRACE.match(value):
        span = int(m["span"]) if m["span"] else 0
        span_id = f"{span:016x}" if 0 < span < 2**64 else ""
        return m["trace"].lower(), span_id, m["options"] == "1"
    return None


def call_context_of(
    headers: Mapping[str, str], *, event_source: str, event_traceparent: str | None = None
) -> CallContext:
    """The context of a call from its request's headers (`Function-Execution-Id`, which
    functions-framework sets on every request that lacks one; `traceparent`, else
    `X-Cloud-Trace-Context`, the request's trace that Cloud Run's request log carries)
    or, failing those, the CloudEvent's `traceparent` extension. The trace is named in
    the project the event came from (its source: //pubsub.googleapis.com/projects/<p>/...)."""
    execution_id = headers.get("Function-Execution-Id") or None
    found = _trace_of(headers.get("traceparent")) or _trace_of(headers.get("X-Cloud-Trace-Context"))
    found = found or _trace_of(event_traceparent)
    project = _PROJECT_IN_SOURCE.search(event_source + "/")
    if found is None or project is None:
        return CallContext(execution_id=execution_id)
    trace_id, span_id, sampled = found
    return CallContext(execution_id, f"projects/{project['project']}/traces/{trace_id}", span_id or None, sampled)


_call: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar("geodeploy_call", default=None)


@contextmanager
def call_context(context: CallContext) -> Iterator[None]:
    """Every line logged inside (in this thread, or one started in its context) carries `context`."""
    token = _call.set(context)
    try:
        yield
    finally:
        _call.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = dict(getattr(record, "fields", {}))
        # The keys Cloud Logging interprets are ours; a field cannot overwrite them.
        entry.update(
            severity=_SEVERITY.get(record.levelno, "DEFAULT"),
            message=record.getMessage(),
            time=datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            logger=record.name,
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        call = _call.get()
        if call is not None:
            entry.update(call.fields())
        return redact(json.dumps(entry, default=str, sort_keys=False))


_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


def configure_logging(level: int = logging.INFO) -> None:
    """Sends geodeploy's logs to stdout as JSON. Idempotent; called by entry points."""
    global _configured
    if _configured:
        return
    # The process's own stdout, not whatever sys.stdout is during the first call:
    # functions-framework (LOG_EXECUTION_ID) swaps sys.stdout for a wrapper while it
    # serves a request, and a handler holding that wrapper would have our lines rewritten
    # by it (its decimal span id over ours; a blank line after each from another thread).
    handler = logging.StreamHandler(sys.__stdout__ or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger(_ROOT)
    root.addHandler(handler)
    root.setLevel(level)
    # Not to the root logger: functions-framework's LOG_EXECUTION_ID gives it a handler
    # of its own, which would print every warning a second time, as plain text.
    root.propagate = False
    _configured = True


class BoundLogger:
    """A logger with context fields that every line carries."""

    def __init__(self, logger: logging.Logger, fields: dict[str, Any]) -> None:
        self._logger = logger
        self.fields = fields

    def bind(self, **fields: Any) -> BoundLogger:
        return BoundLogger(self._logger, {**self.fields, **{k: v for k, v in fields.items() if v is not None}})

    def _log(self, level: int, event: str, fields: dict[str, Any], exc_info: bool = False) -> None:
        self._logger.log(level, event, extra={"fields": {**self.fields, "event": event, **fields}}, exc_info=exc_info)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, exc_info: bool = False, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields, exc_info=exc_info)


def get_logger(name: str = "", **fields: Any) -> BoundLogger:
    return BoundLogger(logging.getLogger(f"{_ROOT}.{name}" if name else _ROOT), fields)
