"""The deployed code imports only what requirements.txt ships, and no service client
library: each cost a cold start 0.3-0.5 s (bench/results.md). google-auth's default
`requests` transport is named too: `requests` is not in the functions' requirements, so
using it fails only in production (the dev environment has it through the test clients)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOYED = [REPO / "main.py", *(REPO / "functions").rglob("*.py"), *(REPO / "shared").rglob("*.py")]
FORBIDDEN = (
    "requests",
    "kubernetes",
    "cloudflare",
    "google.cloud",
    "google.api_core",
    "google.auth.transport.requests",
)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.parametrize("path", DEPLOYED, ids=lambda p: str(p.relative_to(REPO)))
def test_deployed_code_imports_no_client_library(path: Path) -> None:
    bad = sorted(m for m in _imports(path) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert bad == [], f"{path.relative_to(REPO)} imports {bad}"


def test_every_third_party_import_is_in_requirements() -> None:
    shipped = {"functions_framework", "google", "urllib3", "certifi", "google_crc32c", "pydantic", "yaml", "re2",
               "cloudevents",
               "flask"}  # fmt: skip  # functions-framework's web framework: its request's headers
    local = {"shared", "functions", "main"}
    import sys

    stdlib = set(sys.stdlib_module_names)
    for path in DEPLOYED:
        tops = {m.split(".")[0] for m in _imports(path)} - {"__future__"}
        assert tops <= shipped | local | stdlib, f"{path.relative_to(REPO)}: {sorted(tops - shipped - local - stdlib)}"
