"""Checks HCL, as sandbox/terraform/hcl_parse.py parses it, against a provider schema built by
scripts/provider_schema.py: unknown resource and data source types, unknown arguments and
blocks, an argument written as a block (or the reverse), a repeated single block, and
missing required arguments and blocks. Each finding names the file, the resource and the
attribute path.

What Terraform itself owns is checked here too: the meta-arguments (count, for_each,
depends_on, provider, lifecycle and its keys, provisioner, connection), `dynamic` blocks
(their label is checked as the block they generate, their `content` as its body), and the
names in lifecycle.ignore_changes. Types of another provider (archive_file) are not in
this schema; they are returned as unchecked, and a type whose provider is not declared
in required_providers is a finding.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.terraform.hcl_parse import HclError, is_meta, parse_expression, unquote

__all__ = ["Finding", "Report", "check"]

_META = {
    "resource": {"count", "for_each", "depends_on", "provider"},
    "data": {"count", "for_each", "depends_on", "provider"},
}
_META_BLOCKS = {"resource": {"lifecycle", "provisioner", "connection"}, "data": {"lifecycle"}}
_LIFECYCLE = {
    "resource": {"create_before_destroy", "prevent_destroy", "ignore_changes", "replace_triggered_by"},
    "data": set(),
}
_CONDITIONS = {"precondition", "postcondition"}
_DYNAMIC = {"for_each", "iterator", "labels"}


@dataclass(frozen=True)
class Finding:
    file: str
    address: str  # resource google_pubsub_subscription.push
    path: str  # push_config.oidc_token.audience ("" for the resource itself)
    problem: str

    def __str__(self) -> str:
        where = f"{self.address}: {self.path}" if self.path else self.address
        return f"{self.file}: {where}: {self.problem}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    checked: set[str] = field(default_factory=set)  # "resource google_x.name", "data google_y.name"
    unchecked: set[str] = field(default_factory=set)  # of providers this schema does not describe


def _is_block(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(b, dict) and b.get("__is_block__") for b in value)


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Checker:
    def __init__(self, schema: Mapping[str, Any], report: Report) -> None:
        self.schema = schema
        self.report = report
        self.file = ""
        self.address = ""

    def find(self, path: str, problem: str) -> None:
        self.report.findings.append(Finding(self.file, self.address, path, problem))

    def body(self, body: Mapping[str, Any], schema: Mapping[str, Any], path: str, skip: set[str]) -> None:
        """One block body against its schema; `skip` are names Terraform owns (meta-arguments)."""
        arguments: Mapping[str, bool] = schema["arguments"]
        blocks: Mapping[str, Any] = schema["blocks"]
        seen: set[str] = set()
        for name, value in body.items():
            if is_meta(name) or name in skip:
                continue
            where = f"{path}.{name}" if path else name
            # python-hcl2: dynamic = [{'"label"': {for_each, content, __is_block__}}]
            if name == "dynamic" and isinstance(value, list) and all(isinstance(e, dict) for e in value):
                for entry in value:
                    for label, generator in entry.items():
                        if not is_meta(label):
                            seen.add(unquote(label))
                            self.dynamic(unquote(label), generator, blocks, path)
                continue
            seen.add(name)
            if name in arguments:
                if _is_block(value):
                    self.find(where, "is an argument, not a block: write `name = value`")
            elif name in blocks:
                if not _is_block(value):
                    self.find(where, f"is a block, not an argument: write `{name} {{ … }}`")
                    continue
                spec = blocks[name]
                if spec["nesting"] == "single" and len(value) > 1:
                    self.find(where, f"at most one `{name}` block is allowed, found {len(value)}")
                for block in value:
                    self.body(block, spec, where, set())
            else:
                self.find(where, f"unknown argument or block{_suggest(name, [*arguments, *blocks])}")
        for name, required in sorted(arguments.items()):
            if required and name not in seen:
                self.find(f"{path}.{name}" if path else name, "required argument is missing")
        for name, spec in sorted(blocks.items()):
            if spec["required"] and name not in seen:
                self.find(f"{path}.{name}" if path else name, "required block is missing")

    def dynamic(self, name: str, generator: Mapping[str, Any], blocks: Mapping[str, Any], path: str) -> None:
        where = f"{path}.dynamic.{name}" if path else f"dynamic.{name}"
        if name not in blocks:
            self.find(where, f"generates an unknown block{_suggest(name, blocks)}")
            return
        if "for_each" not in generator:
            self.find(where, "a dynamic block needs for_each")
        contents = [v for k, v in generator.items() if k == "content"]
        for key in generator:
            if not is_meta(key) and key not in _DYNAMIC | {"content"}:
                self.find(f"{where}.{key}", "unknown argument of a dynamic block")
        if not contents or not _is_block(contents[0]) or len(contents[0]) != 1:
            self.find(where, "a dynamic block needs exactly one content block")
            return
        self.body(contents[0][0], blocks[name], f"{path}.{name}" if path else name, set())

    def lifecycle(self, kind: str, value: Any, schema: Mapping[str, Any]) -> None:
        if not _is_block(value):
            self.find("lifecycle", "is a block: write `lifecycle { … }`")
            return
        for block in value:
            for key, setting in block.items():
                if is_meta(key) or key in _CONDITIONS:
                    continue
                if key not in _LIFECYCLE[kind]:
                    self.find(f"lifecycle.{key}", f"unknown lifecycle setting{_suggest(key, _LIFECYCLE[kind])}")
                elif key == "ignore_changes":
                    self.ignore_changes(setting, schema)

    def ignore_changes(self, setting: Any, schema: Mapping[str, Any]) -> None:
        if setting == "${all}" or setting == "all":
            return
        for item in setting if isinstance(setting, list) else [setting]:
            try:
                node = parse_expression(item if item.startswith(("${", '"')) else "${" + item + "}")
            except (HclError, AttributeError):
                self.find("lifecycle.ignore_changes", f"cannot read {item!r}")
                continue
            while node[0] in ("get", "index"):  # the first step names the argument or block
                node = node[1]
            name = node[1] if node[0] == "var" else None
            if name not in schema["arguments"] and name not in schema["blocks"]:
                known = [*schema["arguments"], *schema["blocks"]]
                self.find("lifecycle.ignore_changes", f"{item!r} is no argument{_suggest(str(name), known)}")

    def provider_reference(self, value: Any) -> None:
        """`provider = google.alias` is fine; google-beta or another provider has another schema."""
        text = value if isinstance(value, str) else json.dumps(value)
        if text.removeprefix("${").removesuffix("}").split(".")[0] != "google":
            self.find("provider", f"{text} is not the google provider, whose schema this is")


def check(files: Mapping[str, Mapping[str, Any]], schema: Mapping[str, Any]) -> Report:
    """`files`: file name → what hcl_parse.parse_tf returned for it."""
    report = Report()
    checker = _Checker(schema, report)
    providers = _declared_providers(files)
    for file, parsed in sorted(files.items()):
        checker.file = file
        for entry in parsed.get("provider", []):
            for label, body in entry.items():
                if unquote(label) == "google" and not is_meta(label):
                    checker.address = 'provider "google"'
                    checker.body(body, schema["provider"], "", {"alias"})
        for kind in ("resource", "data"):
            for entry in parsed.get(kind, []):
                for rtype_label, named in entry.items():
                    if is_meta(rtype_label):
                        continue
                    rtype = unquote(rtype_label)
                    for name_label, body in named.items():
                        if is_meta(name_label):
                            continue
                        address = f"{kind} {rtype}.{unquote(name_label)}"
                        checker.address = address
                        local_provider = rtype.split("_", 1)[0]
                        if local_provider != "google":
                            if local_provider in providers:
                                report.unchecked.add(address)
                            else:
                                checker.find("", f"no provider {local_provider!r} in required_providers")
                            continue
                        if rtype not in schema[kind]:
                            version = schema.get("provider_version", "?")
                            checker.find("", f"unknown {kind} type{_suggest(rtype, schema[kind])} in google {version}")
                            continue
                        report.checked.add(address)
                        type_schema = schema[kind][rtype]
                        checker.body(body, type_schema, "", _META[kind] | _META_BLOCKS[kind])
                        if "lifecycle" in body:
                            checker.lifecycle(kind, body["lifecycle"], type_schema)
                        if "provider" in body:
                            checker.provider_reference(body["provider"])
    return report


def _declared_providers(files: Mapping[str, Mapping[str, Any]]) -> set[str]:
    names: set[str] = set()
    for parsed in files.values():
        for terraform in parsed.get("terraform", []):
            for required in terraform.get("required_providers", []):
                names |= {k for k in required if not is_meta(k)}
    return names
