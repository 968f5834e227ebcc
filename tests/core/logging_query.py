"""The part of Cloud Logging's query language that shared/monitoring.py writes: `AND`,
`OR`, parentheses, and comparisons of a field path with a quoted string (`=`) or a
number (`=`, `>=`, `>`, `<=`, `<`), evaluated against a LogEntry as Cloud Logging builds
it from a line a function writes to stdout. Anything else is an error, so a filter that
strays from the subset fails the tests instead of matching by accident."""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["entry_of", "matches"]

_TOKEN = re.compile(
    r'\s*(?:(?P<paren>[()])|(?P<word>AND|OR)\b|(?P<op>>=|<=|=|>|<)|"(?P<string>(?:[^"\\]|\\.)*)"'
    r"|(?P<number>-?[0-9]+(?:\.[0-9]+)?)|(?P<field>[A-Za-z_][A-Za-z0-9_.]*))"
)
# What Cloud Logging takes out of a JSON line into the LogEntry itself.
_SPECIAL = ("severity", "time", "timestamp", "logging.googleapis.com/")


def entry_of(line: str, service: str) -> dict[str, Any]:
    """The LogEntry Cloud Logging makes of one stdout line of the 2nd-gen function `service`."""
    fields = json.loads(line)
    payload = {k: v for k, v in fields.items() if not k.startswith(_SPECIAL)}
    return {
        "resource": {"type": "cloud_run_revision", "labels": {"service_name": service}},
        "severity": fields.get("severity"),
        "jsonPayload": payload,
    }


def _tokens(query: str) -> list[tuple[str, Any]]:
    tokens, at = [], 0
    while at < len(query.rstrip()):
        m = _TOKEN.match(query, at)
        if m is None or m.end() == at:
            raise ValueError(f"outside the supported subset at {query[at:]!r}")
        kind = m.lastgroup
        assert kind is not None
        value: Any = m.group(kind)
        if kind == "string":
            value = json.loads(f'"{value}"')
        elif kind == "number":
            value = float(value)
        tokens.append((kind, value))
        at = m.end()
    return tokens


def _lookup(entry: dict[str, Any], path: str) -> Any:
    value: Any = entry
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


class _Parser:
    def __init__(self, query: str, entry: dict[str, Any]) -> None:
        self.tokens = _tokens(query)
        self.entry = entry

    def take(self, kind: str | None = None) -> tuple[str, Any]:
        if not self.tokens:
            raise ValueError("the query ends too early")
        token = self.tokens.pop(0)
        if kind is not None and token[0] != kind:
            raise ValueError(f"expected {kind}, found {token}")
        return token

    def either(self) -> bool:
        result = self.both()
        while self.tokens and self.tokens[0] == ("word", "OR"):
            self.take()
            result = self.both() or result
        return result

    def both(self) -> bool:
        result = self.term()
        while self.tokens and self.tokens[0] == ("word", "AND"):
            self.take()
            result = self.term() and result
        return result

    def term(self) -> bool:
        if self.tokens and self.tokens[0] == ("paren", "("):
            self.take()
            result = self.either()
            self.take("paren")
            return result
        _, path = self.take("field")
        _, op = self.take("op")
        kind, wanted = self.take()
        value = _lookup(self.entry, path)
        if kind == "string":
            if op != "=":
                raise ValueError(f"{path}{op}: only = compares strings here")
            return value == wanted
        if kind != "number":
            raise ValueError(f"{path}{op}: a string or a number must follow")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        return {"=": value == wanted, ">=": value >= wanted, ">": value > wanted, "<=": value <= wanted,
                "<": value < wanted}[op]  # fmt: skip


def matches(query: str, entry: dict[str, Any]) -> bool:
    parser = _Parser(query, entry)
    result = parser.either()
    if parser.tokens:
        raise ValueError(f"left over: {parser.tokens}")
    return result
