"""Cloudflare's published contract for the load-balancing API, as a check on requests and
answers: each request body and each response body of (method, path) is validated against
the load-balancing part of Cloudflare's OpenAPI 3.0 schema (cloudflare/api-schemas,
extracted by scripts/extract_cloudflare_lb_schema.py into contracts/, with its
provenance beside it).

Validation is JSON Schema as OpenAPI 3.0 defines it (openapi-schema-validator: $ref,
allOf/anyOf/oneOf, `nullable`; `readOnly` fields may not be sent), plus one rule of our
own for answers: an object may carry only the properties its schema declares. The schema
never says `additionalProperties: false`, so plain validation would let the stand-in
answer fields Cloudflare does not document (as its pools once carried `healthy`), and
geodeploy could come to depend on them. Requests may carry undeclared fields (JSON Schema
allows them): geodeploy sends `check_regions` on pool creation, which the published
create body omits and which non-Enterprise accounts need.

Where the published schema cannot be met by any answer, the check follows what the schema
evidently means, and says so (ERRATA): every failure answer (HTTP >= 400, or a fault that
answers 200 with `success: false`) is checked against the failure envelope
(`load-balancing_api-response-common-failure`), as the documented 4XX schemas require
`success` to be both true and false; and the quoted empty string `'""'` in enums stands
for the empty string; a request body documented as required but without a schema (the
DELETEs) may be left out, as the SDK and geodeploy do.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_PATH", "Contract", "Violation", "ViolationLog"]

SCHEMA_PATH = Path(__file__).parent / "contracts" / "cloudflare-load-balancing.openapi.json"
FAILURE_SCHEMA = "#/components/schemas/load-balancing_api-response-common-failure"
ERRATA = (
    "failure answers are checked against the failure envelope (the documented 4XX schemas are unsatisfiable)",
    "the quoted empty string '\"\"' in enums stands for the empty string",
    "a required request body with no schema (the DELETEs) may be left out",
)
_QUOTED_EMPTY = '""'
Json = Any


@dataclass(frozen=True)
class Violation:
    method: str
    path: str
    status: int
    part: str  # "request" or "response"
    where: str  # a JSON path in the body, "$" for the body itself
    message: str

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}: {self.part} {self.where}: {self.message}"

    def as_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("method", "path", "status", "part", "where", "message")}


@dataclass(frozen=True)
class _Operation:
    template: str
    spec: Mapping[str, Any]


class Contract:
    """The operations of one OpenAPI document; `check` validates one exchange."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self._components = _apply_errata(spec["components"])
        self._operations: list[tuple[str, re.Pattern[str], _Operation]] = []
        for template, item in spec["paths"].items():
            pattern = re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$")
            for method, op in item.items():
                if isinstance(op, dict) and "responses" in op:
                    self._operations.append((method.upper(), pattern, _Operation(template, op)))

    @classmethod
    def load(cls, path: Path = SCHEMA_PATH) -> Contract:
        return _load(path)

    def operation(self, method: str, path: str) -> _Operation | None:
        return next((op for m, pattern, op in self._operations if m == method and pattern.match(path)), None)

    def check(
        self,
        method: str,
        path: str,
        query: Mapping[str, Sequence[str]],
        request: Json,
        status: int,
        response: Json,
        *,
        injected: bool = False,
    ) -> list[Violation]:
        """`path` is the API path (below /client/v4); `injected`: a stand-in fault answered."""

        def found(part: str, problems: Iterator[tuple[str, str]]) -> list[Violation]:
            return [Violation(method, path, status, part, where, message) for where, message in problems]

        op = self.operation(method, path)
        failure = injected or status >= 400 or (isinstance(response, dict) and response.get("success") is False)
        if op is None:
            if not failure:
                return found("response", iter([("$", "the schema documents no such operation")]))
            return found("response", self._validate({"$ref": FAILURE_SCHEMA}, response, write=False))
        violations = found("request", self._request_problems(op, query, request))
        schema = {"$ref": FAILURE_SCHEMA} if failure else _success_schema(op, status)
        if schema is None:
            return [*violations, *found("response", iter([("$", f"the schema documents no {status} answer")]))]
        return [*violations, *found("response", self._validate(schema, response, write=False))]

    def _request_problems(
        self, op: _Operation, query: Mapping[str, Sequence[str]], body: Json
    ) -> Iterator[tuple[str, str]]:
        documented = {p["name"] for p in op.spec.get("parameters", []) if p.get("in") == "query"}
        for name in sorted(set(query) - documented):
            yield f"?{name}", "query parameter the schema does not document"
        content = op.spec.get("requestBody", {}).get("content", {}).get("application/json")
        if content is None:
            if body is not None:
                yield "$", "a body where the schema documents none"
            return
        if "schema" not in content:
            return  # ERRATA: a required body of no schema (the DELETEs), which no client sends
        if body is None:
            if op.spec["requestBody"].get("required"):
                yield "$", "no body where the schema requires one"
            return
        yield from self._validate(content["schema"], body, write=True)

    def _validate(self, schema: Mapping[str, Any], instance: Json, *, write: bool) -> Iterator[tuple[str, str]]:
        from openapi_schema_validator import OAS30ReadValidator, OAS30WriteValidator

        root = {"components": self._components, "allOf": [schema]}
        cls = OAS30WriteValidator if write else OAS30ReadValidator
        validator = cls(root, format_checker=cls.FORMAT_CHECKER)  # formats too: date-time stamps
        for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
            yield _json_path(error.absolute_path), _short(error)
        if not write:
            yield from _undeclared(self._components, [schema], instance, "$")


@cache
def _load(path: Path) -> Contract:
    return Contract(json.loads(path.read_text()))


class ViolationLog:
    """Thread-safe record of the violations a stand-in met."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Violation] = []

    def add(self, violations: Sequence[Violation]) -> None:
        if violations:
            with self._lock:
                self._items.extend(violations)

    def snapshot(self) -> list[Violation]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _success_schema(op: _Operation, status: int) -> Mapping[str, Any] | None:
    responses = op.spec["responses"]
    for key in (str(status), f"{str(status)[0]}XX", "default"):
        content = responses.get(key, {}).get("content", {}).get("application/json")
        if content is not None:
            return content["schema"]  # type: ignore[no-any-return]
    return None


def _apply_errata(components: Mapping[str, Any]) -> dict[str, Any]:
    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            fixed = {k: fix(v) for k, v in node.items()}
            if isinstance(fixed.get("enum"), list):
                fixed["enum"] = ["" if v == _QUOTED_EMPTY else v for v in fixed["enum"]]
            return fixed
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return fix(copy.deepcopy(dict(components)))  # type: ignore[no-any-return]


def _resolve(components: Mapping[str, Any], schema: Any) -> Any:
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        kind, name = schema["$ref"].removeprefix("#/components/").split("/", 1)
        schema = components[kind][name]
    return schema


def _declared(components: Mapping[str, Any], schemas: Sequence[Any]) -> tuple[dict[str, list[Any]], bool]:
    """The properties the schemas declare (across allOf/anyOf/oneOf), and whether they
    leave the object open (an `additionalProperties` that allows more)."""
    names: dict[str, list[Any]] = {}
    open_ = False
    pending = list(schemas)
    while pending:
        schema = _resolve(components, pending.pop())
        if not isinstance(schema, dict):
            continue
        for name, sub in schema.get("properties", {}).items():
            names.setdefault(name, []).append(sub)
        if schema.get("additionalProperties") not in (None, False):
            open_ = True
        for key in ("allOf", "anyOf", "oneOf"):
            pending.extend(schema.get(key, []))
    return names, open_


def _items(components: Mapping[str, Any], schemas: Sequence[Any]) -> list[Any]:
    found, pending = [], list(schemas)
    while pending:
        schema = _resolve(components, pending.pop())
        if isinstance(schema, dict):
            if isinstance(schema.get("items"), dict):
                found.append(schema["items"])
            for key in ("allOf", "anyOf", "oneOf"):
                pending.extend(schema.get(key, []))
    return found


def _undeclared(
    components: Mapping[str, Any], schemas: Sequence[Any], instance: Json, where: str
) -> Iterator[tuple[str, str]]:
    """Properties of an answer that its schema does not declare (objects whose schema
    declares none, such as free maps, are not judged)."""
    if isinstance(instance, dict):
        names, open_ = _declared(components, schemas)
        for key, value in instance.items():
            if key in names:
                yield from _undeclared(components, names[key], value, f"{where}.{key}")
            elif names and not open_:
                yield f"{where}.{key}", "a property the schema does not declare"
    elif isinstance(instance, list):
        items = _items(components, schemas)
        for i, value in enumerate(instance):
            yield from _undeclared(components, items, value, f"{where}[{i}]")


def _json_path(parts: Sequence[Any]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def _short(error: Any) -> str:
    message = str(error.message)
    return message if len(message) <= 300 else message[:297] + "..."
