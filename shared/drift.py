"""Drift: where a live object no longer matches what geodeploy released. Pure.

Only fields geodeploy renders are compared, so fields the API server defaults (and
`replicas`, which the HPA owns and geodeploy never renders) are never drift. Expected
values come from a server-side-apply dry run of the rendered object when one is given,
so they are in the server's own normal form. Lists are matched item by item on their
`name` (or port), so an item changed, added or removed by hand is reported at its own
path, e.g. `spec.template.spec.containers[name=app].image`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

__all__ = ["Difference", "compare_object", "list_repairs"]

Object = dict[str, Any]
ABSENT = "<absent>"
_MERGE_KEYS = frozenset({"port", "containerPort", "protocol", "mountPath"})
_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?")
_SUFFIXES = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
}


@dataclass(frozen=True)
class Difference:
    object: str
    path: str
    expected: Any
    live: Any
    # JSON pointer of a list whose items were added or removed by hand: healing replaces
    # the whole list, since a merge would keep the foreign item.
    list_pointer: str | None = None

    def as_dict(self) -> Object:
        return {"object": self.object, "path": self.path, "expected": self.expected, "live": self.live}


def compare_object(name: str, desired: Object, live: Object | None, dry_run: Object | None = None) -> list[Difference]:
    if live is None:
        return [Difference(name, "", "present", ABSENT)]
    found: list[Difference] = []
    for key in ("metadata", "spec", "data"):
        if key in desired:
            part = (
                {k: v for k, v in desired[key].items() if k not in ("name", "namespace")}
                if key == "metadata"
                else desired[key]
            )
            _walk(name, part, live.get(key), (dry_run or {}).get(key), key, f"/{key}", found)
    return found


def list_repairs(differences: list[Difference], desired: Object) -> list[Object]:
    """JSON-patch operations that set each hand-altered list back to the rendered one."""
    ops: list[Object] = []
    seen: set[str] = set()
    for d in differences:
        if d.list_pointer and d.list_pointer not in seen:
            seen.add(d.list_pointer)
            ops.append({"op": "replace", "path": d.list_pointer, "value": _at_pointer(desired, d.list_pointer)})
    return ops


def _walk(name: str, want: Any, live: Any, normal: Any, path: str, pointer: str, out: list[Difference]) -> None:
    if isinstance(want, dict):
        if not isinstance(live, dict):
            out.append(Difference(name, path, want, live if live is not None else ABSENT))
            return
        normal = normal if isinstance(normal, dict) else {}
        for key, value in want.items():
            _walk(name, value, live.get(key), normal.get(key), f"{path}.{key}", f"{pointer}/{_escape(key)}", out)
    elif isinstance(want, list) and want and all(isinstance(i, dict) for i in want):
        _walk_list(name, want, live, normal, path, pointer, out)
    else:
        expected = normal if normal is not None else want
        if live != expected and not _same_quantity(expected, live):
            out.append(Difference(name, path, expected, live if live is not None else ABSENT))


def _walk_list(
    name: str, want: list[Object], live: Any, normal: Any, path: str, pointer: str, out: list[Difference]
) -> None:
    if not isinstance(live, list):
        out.append(Difference(name, path, want, live if live is not None else ABSENT, list_pointer=pointer))
        return
    key = _list_key(want)
    if key is None:  # no identity to match on: the list is one value
        if [_project(w, i) for w, i in zip(want, live, strict=False)] != want or len(want) != len(live):
            out.append(Difference(name, path, want, live, list_pointer=pointer))
        return
    live_by_key = {item.get(key): (index, item) for index, item in enumerate(live) if isinstance(item, dict)}
    normal_by_key = {i.get(key): i for i in normal if isinstance(i, dict)} if isinstance(normal, list) else {}
    for item in want:
        label = f"{path}[{key}={item[key]}]"
        if item[key] not in live_by_key:
            out.append(Difference(name, label, item, ABSENT, list_pointer=pointer))
            continue
        index, live_item = live_by_key[item[key]]
        inside: list[Difference] = []
        _walk(name, item, live_item, normal_by_key.get(item[key]), label, f"{pointer}/{index}", inside)
        # A changed merge key (a port renumbered in place) cannot be merged back: the
        # server keys these lists by it, so an apply would add an item beside the old one.
        out += [replace(d, list_pointer=pointer) if d.path.rsplit(".", 1)[-1] in _MERGE_KEYS else d for d in inside]
    wanted_keys = {item[key] for item in want}
    for live_key, (_, live_item) in live_by_key.items():
        if live_key not in wanted_keys:
            out.append(Difference(name, f"{path}[{key}={live_key}]", ABSENT, live_item, list_pointer=pointer))


def _list_key(items: list[Object]) -> str | None:
    for key in ("name", "port", "containerPort"):
        values = [i.get(key) for i in items]
        if all(v is not None for v in values) and len(set(map(str, values))) == len(values):
            return key
    return None


def _project(want: Any, live: Any) -> Any:
    """`live` restricted to the fields `want` has (defaults the server added dropped)."""
    if isinstance(want, dict) and isinstance(live, dict):
        return {k: _project(v, live.get(k)) for k, v in want.items()}
    return live


def _same_quantity(expected: Any, live: Any) -> bool:
    """The server may print a quantity in another form ("500m" for "0.5"); compare values."""
    a, b = _quantity(expected), _quantity(live)
    return a is not None and a == b


def _quantity(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    match = _QUANTITY.fullmatch(str(value))
    if not match:
        return None
    return Decimal(match.group(1)) * _SUFFIXES[match.group(2) or ""]


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _at_pointer(obj: Any, pointer: str) -> Any:
    for part in pointer.strip("/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj
