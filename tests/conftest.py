"""Shared fixtures. The sandbox (real control planes, Pub/Sub emulator, functions, stand-ins)
starts once per test session, only if a test asks for it, and is always torn down."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHOP_CONFIG = REPO / "config" / "sandbox.yaml"
WAVES_CONFIG = REPO / "config" / "sandbox-waves.yaml"


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from sandbox.driver import SandboxDriver
    from sandbox.stack import Sandbox

    stack = Sandbox([SHOP_CONFIG, WAVES_CONFIG], tmp_path_factory.mktemp("sandbox"),
                    progress=lambda line: print(line, file=sys.stderr, flush=True))
    stack.start()
    try:
        yield SandboxDriver(stack)
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def shop(sandbox: object) -> tuple[Path, object]:
    """The 3-region, one-wave sandbox config and its app `shop`."""
    return sandbox.config("sandbox")  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def catalog(sandbox: object) -> tuple[Path, object]:
    """The 2-wave sandbox config and its app `catalog`."""
    return sandbox.config("sandbox-waves")  # type: ignore[attr-defined]
