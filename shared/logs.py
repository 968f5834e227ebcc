"""Structured logs: one JSON object per line on stdout, which Cloud Logging reads as
`severity`, `message` and a jsonPayload of the remaining fields.

Events are named in the past tense (`manifests_applied`, `rollout_failed`). Loggers
carry bound context (app, region, digest, release). Secret values registered with
`register_secret` are replaced by "[redacted]" in every line, as a last line of
defence: code should never log a secret in the first place.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any

__all__ = ["BoundLogger", "configure_logging", "get_logger", "register_secret"]

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
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger(_ROOT)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = True  # so pytest's caplog still sees records
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
