"""Formatting: tables, times, digests, triggers. Everything the CLI prints goes through
`say`/`error`, which redact any secret value the process has read (the Cloudflare token)
as a last line of defence: no code path is meant to print one in the first place."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from shared.display import NONE, short_image, when

__all__ = [
    "brief",
    "clock",
    "compact",
    "document",
    "error",
    "image_fields",
    "say",
    "short_image",
    "table",
    "text_to_stderr",
    "trigger_text",
    "when",
]

# With --output json, stdout is the document's alone: every text line goes to stderr.
_text_on_stderr = False


def text_to_stderr(on: bool) -> None:
    global _text_on_stderr  # one process, one output format
    _text_on_stderr = on


def _redact(text: str) -> str:
    logs = sys.modules.get("shared.logs")  # only loaded once something could have read a secret
    return logs.redact(text) if logs is not None else text


def say(text: str = "") -> None:
    stream = sys.stderr if _text_on_stderr else sys.stdout
    stream.write(_redact(text) + "\n")
    stream.flush()  # live views are read as they happen, often through a pipe


def document(value: dict[str, Any]) -> None:
    """The one JSON document of --output json, on stdout."""
    sys.stdout.write(_redact(json.dumps(value, indent=2, default=str)) + "\n")
    sys.stdout.flush()


def error(text: str) -> None:
    sys.stderr.write(_redact(f"geodeploy: error: {text}") + "\n")


def note(text: str) -> None:
    """A line for the operator that is not the command's output (e.g. the manifest hash)."""
    sys.stderr.write(_redact(text) + "\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "") -> str:
    cells = [[str(h) for h in headers], *[[NONE if c is None or c == "" else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def image_fields(image: str | None) -> dict[str, str | None]:
    """An image in a JSON document: the reference, its digest and the short digest (all
    null when there is none; digest null for an image that is not pinned)."""
    if not image:
        return {"image": None, "digest": None, "digest_short": None}
    from shared.contracts import ImageRef

    try:
        ref = ImageRef.parse(image)
    except ValueError:
        return {"image": image, "digest": None, "digest_short": None}
    return {"image": image, "digest": ref.digest, "digest_short": ref.short}


def clock() -> str:
    """The live views' timestamp: the operator's local wall clock."""
    return datetime.now().strftime("%H:%M:%S")


def trigger_text(trigger: Any) -> str:
    """push v1.2.0 · manual by ana · rollback by geodeploy:auto-rollback · wave"""
    detail = trigger.tag or (f"by {trigger.requested_by}" if trigger.requested_by else "")
    return f"{trigger.type} {detail}".strip()


def compact(value: Any) -> str:
    """A value of a report on one line: strings bare, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


# What urllib3 buries in a long "HTTPSConnectionPool(...): Max retries exceeded ..." text.
_CAUSES = (
    ("refused", "connection refused"),
    ("NewConnectionError", "cannot connect"),
    ("ConnectTimeout", "connection timed out"),
    ("ReadTimeout", "no answer (read timed out)"),
    ("timed out", "timed out"),
    ("Name or service not known", "unknown host"),
    ("SSLError", "TLS error"),
    ("RemoteDisconnected", "connection closed by the server"),
)


def brief(text: str) -> str:
    """An error on one short line: a connection failure as its cause, not urllib3's essay."""
    text = " ".join(text.split())
    for marker in ("HTTPSConnectionPool(", "HTTPConnectionPool("):
        if marker in text:
            head, rest = text.split(marker, 1)
            cause = next((label for needle, label in _CAUSES if needle in rest), "connection failed")
            return f"{head.rstrip(': ')}: {cause}"
    return text if len(text) <= 300 else text[:300] + "…"
