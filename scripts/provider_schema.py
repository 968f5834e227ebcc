"""Builds, once, the compact schema of the Google provider that tests/infra checks infra/ against.

The schema comes from the prebuilt CDKTF bindings on PyPI (cdktf-cdktf-provider-google),
whose jsii assembly describes every resource, data source and nested block of one
provider release, with each property's Terraform name in its registry docs link and
`optional` set unless Terraform requires it. No terraform binary or provider download is
needed. The wheel (about 50 MB) is downloaded to a temporary directory and dropped; only
the compact JSON (a few MB) is kept, outside the repository:

    python scripts/provider_schema.py     # prints the path of the schema JSON
    $GEODEPLOY_CACHE/provider-schema/google-<package version>.json   (default ~/.cache/geodeploy)

Standard library only, so it runs before (or without) the project's virtualenv; `pip
download` runs with the interpreter that runs this script. Idempotent and quiet on reuse;
concurrent callers wait on a lock instead of downloading twice.
"""

from __future__ import annotations

import fcntl
import gzip
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

PACKAGE = "cdktf-cdktf-provider-google"
PACKAGE_VERSION = "16.12.1"  # ships the google provider 6.50.0 schema
FORMAT = 1  # bump when the JSON layout changes, so stale caches are rebuilt

__all__ = ["PACKAGE", "PACKAGE_VERSION", "build_schema", "cache_file", "ensure", "is_current", "read_assembly"]

# {@link https://registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/pubsub_subscription#name …}
_LINK = re.compile(
    r"registry\.terraform\.io/providers/(?P<source>[\w-]+/[\w-]+)/(?P<version>[0-9][\w.-]*)/docs"
    r"(?:/(?P<kind>resources|data-sources)/(?P<page>\w+))?(?:#(?P<anchor>\w+))?"
)
# The class summary names the type in the link text: "Represents a {@link …/docs/resources/x google_x}."
_CLASS_LINK = re.compile(r"\{@link (https://registry\.terraform\.io/\S+) (\w+)\}")

_KINDS = {"cdktf.TerraformResource": "resource", "cdktf.TerraformDataSource": "data", "cdktf.TerraformProvider": None}


def cache_file() -> Path:
    cache = Path(os.environ.get("GEODEPLOY_CACHE", Path.home() / ".cache" / "geodeploy"))
    return cache / "provider-schema" / f"google-{PACKAGE_VERSION}.json"


# --- the jsii assembly ---------------------------------------------------------------------


def read_assembly(wheel: Path) -> dict[str, Any]:
    """The jsii assembly inside the wheel: _jsii/<name>@<version>.jsii.tgz → package/.jsii
    (which may itself redirect to a gzipped file next to it)."""
    with zipfile.ZipFile(wheel) as whl:
        tgz = [n for n in whl.namelist() if "/_jsii/" in n and n.endswith(".jsii.tgz")]
        if len(tgz) != 1:
            raise SystemExit(f"{wheel.name}: expected one _jsii/*.jsii.tgz, found {tgz}")
        with tarfile.open(fileobj=io.BytesIO(whl.read(tgz[0])), mode="r:gz") as tar:

            def member(name: str) -> bytes:
                f = tar.extractfile(f"package/{name}")
                if f is None:
                    raise SystemExit(f"{wheel.name}: package/{name} is not a file")
                return f.read()

            assembly = json.loads(member(".jsii"))
            if assembly.get("schema") == "jsii/file-redirect":
                data = member(assembly["filename"])
                if assembly.get("compression") == "gzip":
                    data = gzip.decompress(data)
                assembly = json.loads(data)
    if not isinstance(assembly, dict) or "types" not in assembly:
        raise SystemExit(f"{wheel.name}: not a jsii assembly")
    return assembly


def _doc_strings(docs: Any) -> list[str]:
    """Every string in a docs object (summary, remarks, see, custom tags): the registry link
    sits in whichever one the generator put it in."""
    if isinstance(docs, str):
        return [docs]
    if isinstance(docs, dict):
        return [s for v in docs.values() for s in _doc_strings(v)]
    return []


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


class _Extractor:
    def __init__(self, assembly: dict[str, Any]) -> None:
        self.types: dict[str, Any] = assembly["types"]
        self.versions: set[str] = set()
        self.sources: set[str] = set()
        self.derived: list[str] = []  # properties whose docs carry no link: name derived from camelCase

    def _struct(self, type_ref: dict[str, Any]) -> tuple[str, str] | None:
        """(struct fqn, nesting) when a property is a nested block: `Foo` is a block of at
        most one (nesting "single"); `IResolvable | Foo[]` a repeatable one ("list")."""

        def is_struct(ref: dict[str, Any]) -> bool:
            return bool(self.types.get(ref.get("fqn", ""), {}).get("datatype"))

        if is_struct(type_ref):
            return type_ref["fqn"], "single"
        options = type_ref.get("union", {}).get("types", [type_ref])
        for option in options:
            collection = option.get("collection")
            if collection and is_struct(collection["elementtype"]):
                return collection["elementtype"]["fqn"], "list"
        return None

    def _name(self, owner: str, prop: dict[str, Any]) -> str:
        names = set()
        for text in _doc_strings(prop.get("docs")):
            for m in _LINK.finditer(text):
                self.versions.add(m["version"])
                self.sources.add(m["source"])
                if m["anchor"]:
                    names.add(m["anchor"])
        if len(names) > 1:
            raise SystemExit(f"{owner}.{prop['name']}: its docs link to several names {sorted(names)}")
        if names:
            return names.pop()
        self.derived.append(f"{owner}.{prop['name']}")
        return _snake(prop["name"])

    def block(self, fqn: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
        """{"arguments": {name: required}, "blocks": {name: {"required", "nesting", + block}}}."""
        if fqn in seen:
            raise SystemExit(f"{fqn} contains itself: {' → '.join(seen)}")
        struct = self.types[fqn]
        arguments: dict[str, bool] = {}
        blocks: dict[str, Any] = {}
        props = list(struct.get("properties", []))
        # Properties inherited from another of the provider's structs (cdktf.* are meta-arguments).
        for parent in struct.get("interfaces", []):
            if not parent.startswith("cdktf."):
                props += self.types[parent].get("properties", [])
        for prop in props:
            name = self._name(fqn, prop)
            if name in arguments or name in blocks:
                raise SystemExit(f"{fqn}: two properties are named {name!r}")
            required = not prop.get("optional", False)
            nested = self._struct(prop["type"])
            if nested is None:
                arguments[name] = required
            else:
                nested_fqn, nesting = nested
                blocks[name] = {"required": required, "nesting": nesting, **self.block(nested_fqn, (*seen, fqn))}
        return {"arguments": dict(sorted(arguments.items())), "blocks": dict(sorted(blocks.items()))}


def build_schema(assembly: dict[str, Any]) -> dict[str, Any]:
    """resource/data type → its block; "provider" → the provider block's arguments."""
    extractor = _Extractor(assembly)
    out: dict[str, Any] = {"resource": {}, "data": {}, "provider": None}
    for fqn, cls in sorted(assembly["types"].items()):
        if cls.get("kind") != "class" or cls.get("base") not in _KINDS:
            continue
        kind = _KINDS[cls["base"]]
        link = _CLASS_LINK.search(cls.get("docs", {}).get("summary", ""))
        params = cls.get("initializer", {}).get("parameters", [])
        config = next((p["type"]["fqn"] for p in params if p["name"] == "config"), None)
        if link is None or config is None:
            raise SystemExit(f"{fqn}: no Terraform name in its docs, or no config parameter")
        block = extractor.block(config)
        if kind is None:
            out["provider"] = block
        else:
            if link.group(2) in out[kind]:
                raise SystemExit(f"{kind} {link.group(2)} is defined twice")
            out[kind][link.group(2)] = block
    if len(extractor.versions) != 1 or len(extractor.sources) != 1 or out["provider"] is None:
        raise SystemExit(
            f"expected one provider and version in the docs links, found {extractor.sources} {extractor.versions}"
        )
    return {
        "format": FORMAT,
        "package": f"{assembly['name']}@{assembly['version']}",
        "provider_source": extractor.sources.pop(),
        "provider_version": extractor.versions.pop(),
        # Names taken from camelCase because the generator left the link out of the docs.
        "derived_names": sorted(extractor.derived),
        **out,
    }


# --- the cache -------------------------------------------------------------------------------


def is_current(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(data, dict)
        and data.get("format") == FORMAT
        and data.get("package", "").endswith(f"@{PACKAGE_VERSION}")
    )


def ensure() -> Path:
    target = cache_file()
    if is_current(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f"{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_current(target):  # another caller built it while we waited
            return target
        started = time.monotonic()
        print(f"building the google provider schema from {PACKAGE}=={PACKAGE_VERSION} (once)", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="geodeploy-schema-") as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                 "--no-deps", "--only-binary=:all:", "--dest", tmp, f"{PACKAGE}=={PACKAGE_VERSION}"],
                check=True,
                stdout=sys.stderr,
            )  # fmt: skip
            (wheel,) = Path(tmp).glob("*.whl")
            wheel_mb = wheel.stat().st_size / 1e6
            schema = build_schema(read_assembly(wheel))
        # Written whole, then renamed: a reader never sees half a file.
        partial = target.with_suffix(".partial")
        partial.write_text(json.dumps(schema, separators=(",", ":"), sort_keys=True))
        partial.replace(target)
        print(
            f"  {len(schema['resource'])} resources, {len(schema['data'])} data sources of provider "
            f"{schema['provider_version']}: {target} ({target.stat().st_size / 1e6:.1f} MB, from a "
            f"{wheel_mb:.0f} MB wheel, in {time.monotonic() - started:.0f} s)",
            file=sys.stderr,
        )
    return target


if __name__ == "__main__":
    print(ensure())
