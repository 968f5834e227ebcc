"""Shared fixtures. The sandbox (real control planes, Pub/Sub emulator, functions, stand-ins)
starts once per test session, only if a test asks for it, and is always torn down."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHOP_CONFIG = REPO / "config" / "sandbox.yaml"
WAVES_CONFIG = REPO / "config" / "sandbox-waves.yaml"
BROUGHT_CONFIG = REPO / "config" / "sandbox-brought.yaml"
GATES_CONFIG = REPO / "config" / "sandbox-gates.yaml"


@pytest.fixture(scope="session")
def sandbox(request: pytest.FixtureRequest) -> Iterator[object]:
    from sandbox.driver import SandboxDriver
    from sandbox.stack import Sandbox

    # Not under pytest's basetemp: a concurrent pytest run rotates those away, and the
    # clusters' files must outlive the whole session. Kept (with every log) if a test failed.
    state_dir = Path(tempfile.mkdtemp(prefix="geodeploy-sandbox-"))
    stack = Sandbox(
        [SHOP_CONFIG, WAVES_CONFIG, BROUGHT_CONFIG, GATES_CONFIG],
        state_dir,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    stack.start()
    try:
        yield SandboxDriver(stack)
        _fail_on_contract_violations(stack.cloudflare)  # those no single test was blamed for
    finally:
        stack.stop()
        if request.session.testsfailed:
            print(f"\nsandbox logs kept in {state_dir}", file=sys.stderr)
        else:
            shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def faults(sandbox: object) -> Iterator[object]:
    """The fault proxy between the functions and the API servers (a FaultProxyControl).
    Every rule and cluster mode is cleared after the test, even when it failed."""
    control = sandbox.faults  # type: ignore[attr-defined]
    try:
        yield control
    finally:
        control.clear()


@pytest.fixture(scope="session")
def shop(sandbox: object) -> tuple[Path, object]:
    """The 3-region, one-wave sandbox config and its app `shop`."""
    return sandbox.config("sandbox")  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def catalog(sandbox: object) -> tuple[Path, object]:
    """The 2-wave sandbox config and its app `catalog`."""
    return sandbox.config("sandbox-waves")  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def brought(sandbox: object) -> tuple[Path, object]:
    """The 3-region config whose apps bring their own manifests: `my-app` (the seed
    article's k8s.yaml as a template), `kit` (a directory: web and worker Deployments)
    and `ledger` (a directory: a StatefulSet)."""
    return sandbox.config("sandbox-brought")  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def gated(sandbox: object) -> tuple[Path, object]:
    """The 3-wave config with a gate after each wave but the last: wave 1 soaks 20 s and
    waits for Cloudflare to call its pool healthy, wave 2 waits for `promote`."""
    return sandbox.config("sandbox-gates")  # type: ignore[attr-defined]


# --- Cloudflare's published contract ---------------------------------------------------------


def _fail_on_contract_violations(control: object) -> None:
    from tests.sandbox.cloudflare_contract import describe_violations

    if not control.contract_checked():  # type: ignore[attr-defined]
        pytest.fail("the sandbox's Cloudflare stand-in does not check Cloudflare's schema", pytrace=False)
    found = control.contract_violations()  # type: ignore[attr-defined]
    if found:
        control.clear_contract_violations()  # type: ignore[attr-defined]
        pytest.fail(describe_violations(found), pytrace=False)


@pytest.fixture(autouse=True)
def _cloudflare_contract(request: pytest.FixtureRequest) -> Iterator[None]:
    """A sandbox test fails if any Cloudflare request geodeploy sent during it, or any
    answer of the stand-in, broke Cloudflare's published schema (each one is named)."""
    yield
    if "sandbox" in request.fixturenames:
        _fail_on_contract_violations(request.getfixturevalue("sandbox").sandbox.cloudflare)
