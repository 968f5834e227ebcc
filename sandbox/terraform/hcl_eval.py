"""A small evaluator for the subset of HCL that infra/ is written in, so the tests can
compute what Terraform would (locals, for_each keys, attribute values) from the files
themselves, without Terraform or its providers.

python-hcl2 parses the files and hands back expressions as text ("${...}" or a quoted
template); this module parses that text and evaluates it. Values that exist only after
an apply (ids, URIs, a data source's attributes) evaluate to `Unknown`, which keeps the
reference it came from, so a test can still check *what* an attribute points at. A
construct or function outside the subset raises HclError naming it: a change to infra/
that goes beyond the subset fails loudly instead of being misread.
"""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sandbox.terraform.hcl_parse import HclError, Node, is_meta, parse_expression, parse_tf, unquote

__all__ = ["HclError", "Instance", "Module", "Resource", "Unknown", "parse_expression", "parse_tf"]


@dataclass(frozen=True)
class Unknown:
    """A value known only after apply, e.g. `google_pubsub_topic.deploy["x"].id`."""

    ref: str

    def hcl_get(self, name: str) -> Unknown:
        return Unknown(f"{self.ref}.{name}")

    def hcl_index(self, key: Any) -> Unknown:
        return Unknown(f"{self.ref}[{json.dumps(key)}]")

    def __str__(self) -> str:
        return f"<{self.ref}>"


# --- values -----------------------------------------------------------------------------


def _sorted_items(collection: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(collection, dict):
        yield from sorted(collection.items())
    elif isinstance(collection, (frozenset, set)):
        for item in sorted(collection):
            yield item, item
    elif isinstance(collection, list):
        yield from enumerate(collection)
    else:
        raise HclError(f"cannot iterate over {type(collection).__name__}")


def _to_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (str, int, float, Unknown)):
        return str(value)
    raise HclError(f"cannot interpolate a {type(value).__name__} into a string")


def _flatten(value: Any) -> list[Any]:
    out: list[Any] = []
    for item in value:
        out.extend(_flatten(item) if isinstance(item, list) else [item])
    return out


def _merge(*maps: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in maps:
        if m is None:
            continue
        if not isinstance(m, dict):
            raise HclError("merge: arguments must be maps or objects")
        out.update(m)
    return out


def _coalesce(*values: Any) -> Any:
    for v in values:
        if v is not None and v != "":
            return v
    raise HclError("coalesce: no non-null, non-empty argument")


def _substr(s: str, offset: int, length: int) -> str:
    return s[offset:] if length < 0 else s[offset : offset + length]


def _one(values: list[Any]) -> Any:
    if len(values) > 1:
        raise HclError("one: more than one element")
    return values[0] if values else None


def _replace(s: str, old: str, new: str) -> str:
    if old.startswith("/") and old.endswith("/"):
        raise HclError("replace with a regular expression is outside the supported subset")
    return s.replace(old, new)


def _format(spec: str, *args: Any) -> str:
    if spec != "%04d":  # the one verb infra/ uses (sortable numbers: sort() sorts strings)
        raise HclError(f"format {spec!r} is outside the supported subset")
    return f"{int(args[0]):04d}"


def _tonumber(value: Any) -> int | float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    try:
        number = float(str(value))
    except ValueError:
        raise HclError(f"tonumber: {value!r} is not a number") from None
    return int(number) if number.is_integer() else number


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "base64decode": lambda s: base64.b64decode(s).decode(),
    "base64encode": lambda s: base64.b64encode(s.encode()).decode(),
    "coalesce": _coalesce,
    "concat": lambda *lists: [x for lst in lists for x in lst],
    "contains": lambda coll, v: v in coll,
    "dirname": lambda path: posixpath.dirname(posixpath.normpath(path)) or ".",  # Go's filepath.Dir
    "distinct": lambda lst: list(dict.fromkeys(lst)),
    "endswith": lambda s, suffix: s.endswith(suffix),
    "flatten": _flatten,
    "format": _format,
    "join": lambda sep, lst: sep.join(_to_string(x) for x in lst),
    "jsonencode": lambda v: json.dumps(v, separators=(",", ":"), sort_keys=True),
    "keys": lambda m: sorted(m),
    "length": len,
    "lower": str.lower,
    "max": lambda *numbers: max(numbers),  # Terraform's: max(1) is 1, not Python's error
    "merge": _merge,
    "min": lambda *numbers: min(numbers),
    "one": _one,
    "range": lambda *bounds: list(range(*(int(b) for b in bounds))),
    "replace": _replace,
    "setproduct": lambda *sets: [list(p) for p in _product([[v for _, v in _sorted_items(s)] for s in sets])],
    "setunion": lambda *sets: frozenset().union(*(frozenset(s) for s in sets)),
    "sha1": lambda s: hashlib.sha1(s.encode()).hexdigest(),
    "slice": lambda lst, start, end: lst[start:end],
    "sort": lambda strings: sorted(strings),
    "split": lambda sep, s: s.split(sep),
    "startswith": lambda s, prefix: s.startswith(prefix),
    "substr": _substr,
    "tolist": lambda v: [x for _, x in _sorted_items(v)] if isinstance(v, (set, frozenset)) else list(v),
    "tonumber": _tonumber,
    "toset": frozenset,
    "trimspace": str.strip,
    "trimsuffix": lambda s, suffix: s.removesuffix(suffix),
    "upper": str.upper,
    "values": lambda m: [v for _, v in sorted(m.items())],
}


def _product(lists: list[list[Any]]) -> Iterator[tuple[Any, ...]]:
    if not lists:
        yield ()
        return
    for head in lists[0]:
        for rest in _product(lists[1:]):
            yield (head, *rest)


def _get(obj: Any, name: str) -> Any:
    if hasattr(obj, "hcl_get"):
        return obj.hcl_get(name)
    if isinstance(obj, dict):
        if name not in obj:
            raise HclError(f"no attribute {name!r} (has: {sorted(obj)})")
        return obj[name]
    raise HclError(f"cannot read attribute {name!r} of {type(obj).__name__}")


def _index(obj: Any, key: Any) -> Any:
    if hasattr(obj, "hcl_index"):
        return obj.hcl_index(key)
    if isinstance(obj, dict):
        if key not in obj:
            raise HclError(f"no key {key!r} (has: {sorted(obj)})")
        return obj[key]
    if isinstance(obj, list):
        if not isinstance(key, int) or not 0 <= key < len(obj):
            raise HclError(f"index {key!r} out of range for a list of {len(obj)}")
        return obj[key]
    raise HclError(f"cannot index a {type(obj).__name__}")


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "||": lambda a, b: a or b,
    "&&": lambda a, b: a and b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "%": lambda a, b: a % b,
}


# --- the module -------------------------------------------------------------------------


class Module:
    """The .tf files of one directory, evaluated for one set of input variables."""

    def __init__(self, directory: Path, variables: dict[str, Any] | None = None) -> None:
        self.directory = directory.resolve()
        self.files = {p.name: parse_tf(p) for p in sorted(directory.glob("*.tf"))}
        self.variable_defaults: dict[str, Any] = {}
        self.locals_raw: dict[str, Any] = {}
        self.resources: dict[str, dict[str, dict[str, Any]]] = {}
        self.data: dict[str, dict[str, dict[str, Any]]] = {}
        for parsed in self.files.values():
            self._collect(parsed)
        self.vars = {**self.variable_defaults, **(variables or {})}
        self._locals: dict[str, Any] = {}
        self._evaluating: set[str] = set()

    def _collect(self, parsed: dict[str, Any]) -> None:
        for block in parsed.get("variable", []):
            for label, body in block.items():
                if not is_meta(label):
                    default = body.get("default")
                    self.variable_defaults[unquote(label)] = None if default is None else self.evaluate(default)
        for block in parsed.get("locals", []):
            for name, raw in block.items():
                if not is_meta(name):
                    if name in self.locals_raw:
                        raise HclError(f"local.{name} is defined twice")
                    self.locals_raw[name] = raw
        for kind, target in (("resource", self.resources), ("data", self.data)):
            for block in parsed.get(kind, []):
                for rtype, named in block.items():
                    if is_meta(rtype):
                        continue
                    for rname, body in named.items():
                        if not is_meta(rname):
                            target.setdefault(unquote(rtype), {})[unquote(rname)] = body

    # locals, variables, references

    def local(self, name: str) -> Any:
        if name not in self._locals:
            if name not in self.locals_raw:
                raise HclError(f"no local named {name!r}")
            if name in self._evaluating:
                raise HclError(f"local.{name} refers to itself")
            self._evaluating.add(name)
            try:
                self._locals[name] = self.evaluate(self.locals_raw[name])
            finally:
                self._evaluating.discard(name)
        return self._locals[name]

    def resource(self, rtype: str, name: str) -> Resource:
        if name not in self.resources.get(rtype, {}):
            raise HclError(f"no resource {rtype}.{name}")
        return Resource(self, f"{rtype}.{name}", self.resources[rtype][name])

    def data_source(self, rtype: str, name: str) -> Resource:
        if name not in self.data.get(rtype, {}):
            raise HclError(f"no data source {rtype}.{name}")
        return Resource(self, f"data.{rtype}.{name}", self.data[rtype][name])

    def _root(self, name: str, scope: dict[str, Any]) -> Any:
        if name in scope:
            return scope[name]
        if name == "local":
            return _Namespace(self.local)
        if name == "var":
            return _Namespace(lambda n: _index(self.vars, n))
        if name == "path":
            return {"module": str(self.directory), "root": str(self.directory), "cwd": str(self.directory)}
        if name == "data":
            return _Namespace(lambda t: _Namespace(lambda n: self.data_source(t, n).value()))
        if name in self.resources:
            return _Namespace(lambda n: self.resource(name, n).value())
        raise HclError(f"unknown name {name!r}")

    # evaluation

    def evaluate(self, raw: Any, scope: dict[str, Any] | None = None) -> Any:
        """Evaluates a value as python-hcl2 returns it: text, a list, a dict (object or block)."""
        scope = scope or {}
        if isinstance(raw, str):
            return self.eval_node(parse_expression(raw), scope)
        if isinstance(raw, list):
            return [self.evaluate(item, scope) for item in raw]
        if isinstance(raw, dict):
            out = {}
            for key, value in raw.items():
                if is_meta(key):
                    continue
                if key.startswith(('"', "${", "(")):
                    key = _to_string(self.evaluate(key, scope))
                out[key] = self.evaluate(value, scope)
            return out
        return raw  # numbers, booleans, null

    def eval_node(self, node: Node, scope: dict[str, Any]) -> Any:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "template":
            parts = node[1]
            if len(parts) == 1 and not isinstance(parts[0], str):
                return self.eval_node(parts[0], scope)
            return "".join(p if isinstance(p, str) else _to_string(self.eval_node(p, scope)) for p in parts)
        if kind == "var":
            return self._root(node[1], scope)
        if kind == "get":
            return _get(self.eval_node(node[1], scope), node[2])
        if kind == "index":
            return _index(self.eval_node(node[1], scope), self.eval_node(node[2], scope))
        if kind == "cond":
            return self.eval_node(node[2] if self.eval_node(node[1], scope) else node[3], scope)
        if kind == "binop":
            return _BINOPS[node[1]](self.eval_node(node[2], scope), self.eval_node(node[3], scope))
        if kind == "not":
            return not self.eval_node(node[1], scope)
        if kind == "neg":
            return -self.eval_node(node[1], scope)
        if kind == "tuple":
            return [self.eval_node(item, scope) for item in node[1]]
        if kind == "object":
            return {_to_string(self.eval_node(k, scope)): self.eval_node(v, scope) for k, v in node[1]}
        if kind == "call":
            return self._call(node[1], node[2], node[3], scope)
        if kind == "for":
            return self._for(node, scope)
        raise HclError(f"unknown node {kind}")

    def _call(self, name: str, arg_nodes: list[Node], expand: bool, scope: dict[str, Any]) -> Any:
        if name == "try":
            for arg in arg_nodes:
                try:
                    return self.eval_node(arg, scope)
                except HclError:
                    continue
            raise HclError("try: every argument failed")
        args = [self.eval_node(a, scope) for a in arg_nodes]
        if expand:
            args = args[:-1] + list(args[-1])
        if name == "file":
            path = Path(args[0])
            return (path if path.is_absolute() else self.directory / path).read_text()
        if name == "yamldecode":
            return yaml.safe_load(args[0])
        if name == "fileset":
            base = Path(args[0])
            base = base if base.is_absolute() else self.directory / base
            return frozenset(
                p.relative_to(base).as_posix()
                for p in base.glob(args[1])
                if p.is_file() and "__pycache__" not in p.parts
            )
        if name not in _FUNCTIONS:
            raise HclError(f"function {name}() is outside the supported subset (sandbox/terraform/hcl_eval.py)")
        if any(isinstance(a, Unknown) for a in args):
            return Unknown(f"{name}(...)")
        return _FUNCTIONS[name](*args)

    def _for(self, node: Node, scope: dict[str, Any]) -> Any:
        _, close, key_var, value_var, coll_node, key_node, value_node, group, cond = node
        results: list[tuple[Any, Any]] = []
        for k, v in _sorted_items(self.eval_node(coll_node, scope)):
            inner = {**scope, value_var: v}
            if key_var:
                inner[key_var] = k
            if cond is not None and not self.eval_node(cond, inner):
                continue
            key = self.eval_node(key_node, inner) if key_node is not None else None
            results.append((key, self.eval_node(value_node, inner)))
        if close == "]":
            return [v for _, v in results]
        out: dict[str, Any] = {}
        for key, value in results:
            key = _to_string(key)
            if group:
                out.setdefault(key, []).append(value)
            elif key in out:
                raise HclError(f"duplicate key {key!r} in a for expression")
            else:
                out[key] = value
        return out


class _Namespace:
    def __init__(self, lookup: Callable[[str], Any]) -> None:
        self._lookup = lookup

    def hcl_get(self, name: str) -> Any:
        return self._lookup(name)


class Resource:
    """A resource or data block; its instances follow for_each or count."""

    def __init__(self, module: Module, address: str, body: dict[str, Any]) -> None:
        self.module = module
        self.address = address
        self.body = body

    def instances(self) -> dict[Any, Instance]:
        """for_each: key → instance; count: index → instance; neither: {None: instance}."""
        if "for_each" in self.body:
            collection = self.module.evaluate(self.body["for_each"])
            return {k: Instance(self, k, {"each": {"key": k, "value": v}}) for k, v in _sorted_items(collection)}
        if "count" in self.body:
            n = self.module.evaluate(self.body["count"])
            return {i: Instance(self, i, {"count": {"index": i}}) for i in range(n)}
        return {None: Instance(self, None, {})}

    def value(self) -> Any:
        instances = self.instances()
        if "for_each" in self.body:
            return instances
        if "count" in self.body:
            return [instances[i] for i in range(len(instances))]
        return instances[None]


class _Block:
    """A nested block of an instance: attributes evaluate in the instance's scope (and, in a
    block a `dynamic` block generated, its iterator's)."""

    def __init__(self, instance: Instance, raw: dict[str, Any], ref: str, scope: dict[str, Any] | None = None) -> None:
        self.instance = instance
        self.raw = raw
        self.ref = ref
        self._own_scope = scope

    @property
    def _scope(self) -> dict[str, Any]:
        return self.instance.scope if self._own_scope is None else self._own_scope

    def hcl_get(self, name: str) -> Any:
        if name not in self.raw:
            generated = self._dynamic_blocks(name)
            return Unknown(f"{self.ref}.{name}") if generated is None else generated
        value = self.raw[name]
        if isinstance(value, list) and value and all(isinstance(b, dict) and b.get("__is_block__") for b in value):
            return [_Block(self.instance, b, f"{self.ref}.{name}[{i}]", self._own_scope) for i, b in enumerate(value)]
        return self.instance.resource.module.evaluate(value, self._scope)

    def _dynamic_blocks(self, name: str) -> list[_Block] | None:
        """The blocks a `dynamic "<name>"` generates: one per item of its for_each, whose
        `content` sees the item as `<name>.key` / `<name>.value`."""
        for entry in self.raw.get("dynamic", []):
            spec = entry.get(f'"{name}"') if isinstance(entry, dict) else None
            if spec is None:
                continue
            collection = self.instance.resource.module.evaluate(spec["for_each"], self._scope)
            return [
                _Block(
                    self.instance,
                    spec["content"][0],
                    f"{self.ref}.{name}[{i}]",
                    {**self._scope, name: {"key": key, "value": value}},
                )
                for i, (key, value) in enumerate(_sorted_items(collection))
            ]
        return None

    def get(self, *path: str | int) -> Any:
        """Navigates blocks and attributes: get("service_config", 0, "timeout_seconds")."""
        value: Any = self
        for step in path:
            value = _index(value, step) if isinstance(step, int) else _get(value, step)
        return value

    def blocks(self, name: str) -> list[_Block]:
        value = self.hcl_get(name)
        if not isinstance(value, list) or not all(isinstance(b, _Block) for b in value):
            raise HclError(f"{self.ref}.{name} is not a block")
        return value

    def __repr__(self) -> str:
        return f"<{self.ref}>"


class Instance(_Block):
    def __init__(self, resource: Resource, key: Any, scope: dict[str, Any]) -> None:
        self.resource = resource
        self.key = key
        self.scope = scope
        ref = resource.address if key is None else f"{resource.address}[{json.dumps(key)}]"
        super().__init__(self, resource.body, ref)
