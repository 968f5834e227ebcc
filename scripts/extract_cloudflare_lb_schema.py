"""Extracts the load-balancing part of Cloudflare's published OpenAPI schema, the contract
the Cloudflare stand-in is checked against (sandbox/standins/openapi_contract.py).

Source: the `cloudflare/api-schemas` repository's openapi.json. Kept: the paths geodeploy
and the stand-in use (PATHS below, every method of each) and every component they
reference, transitively; nothing else. The output is sorted and indented the same way
on every run, so re-extracting the same openapi.json gives the same bytes:

    git --git-dir=<api-schemas clone>/.git show <commit>:openapi.json > /tmp/openapi.json
    python scripts/extract_cloudflare_lb_schema.py /tmp/openapi.json --commit <commit> --date <commit date>

writes sandbox/standins/contracts/cloudflare-load-balancing.openapi.json and, beside it,
its provenance (.provenance.json: repository, file, commit, date, sha256 of the input).
Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "sandbox" / "standins" / "contracts" / "cloudflare-load-balancing.openapi.json"
SOURCE_REPOSITORY = "cloudflare/api-schemas"
SOURCE_FILE = "openapi.json"
# The routes of sandbox/standins/cloudflare.py, which cover every call of
# shared/adapters/cloudflare_lb.py.
PATHS = (
    "/accounts/{account_id}/load_balancers/monitors",
    "/accounts/{account_id}/load_balancers/monitors/{monitor_id}",
    "/accounts/{account_id}/load_balancers/pools",
    "/accounts/{account_id}/load_balancers/pools/{pool_id}",
    "/accounts/{account_id}/load_balancers/pools/{pool_id}/health",
    "/zones/{zone_id}/load_balancers",
    "/zones/{zone_id}/load_balancers/{load_balancer_id}",
)
_LOCAL_REF = "#/components/"


def _refs(node: Any) -> list[str]:
    """Every local component $ref under `node`."""
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def _security_schemes(node: Any) -> set[str]:
    """The security scheme names the operations under `node` list."""
    names: set[str] = set()
    for item in node.values():
        for op in item.values() if isinstance(item, dict) else ():
            for requirement in op.get("security", []) if isinstance(op, dict) else ():
                names.update(requirement)
    return names


def extract(spec: dict[str, Any]) -> dict[str, Any]:
    missing = [p for p in PATHS if p not in spec["paths"]]
    if missing:
        raise SystemExit(f"the schema has no path(s) {missing}: has Cloudflare moved them?")
    paths = {p: spec["paths"][p] for p in PATHS}
    components: dict[str, dict[str, Any]] = {}
    pending = _refs(paths)
    while pending:
        ref = pending.pop()
        if not ref.startswith(_LOCAL_REF):
            raise SystemExit(f"unsupported $ref {ref!r}: only local component references are followed")
        kind, name = ref[len(_LOCAL_REF) :].split("/", 1)
        if name in components.get(kind, {}):
            continue
        target = spec["components"][kind][name]
        components.setdefault(kind, {})[name] = target
        pending.extend(_refs(target))
    schemes = spec["components"].get("securitySchemes", {})
    components["securitySchemes"] = {n: schemes[n] for n in sorted(_security_schemes(paths)) if n in schemes}
    return {
        "openapi": spec["openapi"],
        "info": {
            "title": f"{spec['info']['title']}: load balancing (extract)",
            "version": spec["info"]["version"],
            "license": spec["info"].get("license", {}),
        },
        "servers": spec.get("servers", []),
        "paths": paths,
        "components": components,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("openapi_json", type=Path, help=f"{SOURCE_REPOSITORY}'s {SOURCE_FILE}")
    parser.add_argument("--commit", required=True, help=f"the {SOURCE_REPOSITORY} commit it was read from")
    parser.add_argument("--date", required=True, help="that commit's date (ISO 8601)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    raw = args.openapi_json.read_bytes()
    extracted = extract(json.loads(raw))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(extracted, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    provenance = {
        "repository": SOURCE_REPOSITORY,
        "file": SOURCE_FILE,
        "commit": args.commit,
        "commit_date": args.date,
        "source_sha256": hashlib.sha256(raw).hexdigest(),
        "paths": list(PATHS),
        "extracted_by": "scripts/extract_cloudflare_lb_schema.py",
    }
    provenance_path = args.out.with_name(args.out.name.removesuffix(".json") + ".provenance.json")
    provenance_path.write_text(json.dumps(provenance, indent=1) + "\n")
    print(args.out, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
