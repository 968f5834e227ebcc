"""Holding the Cloudflare stand-in to Cloudflare's published schema in tests.

The sandbox's stand-in runs with `--check-contract` (tests/conftest.py fails a test after
which it recorded a violation); the stand-ins the stand-in tests start in-process are
given the contract and checked with `assert_within_contract` when they stop.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sandbox.standins.cloudflare import CloudflareStandin
from sandbox.standins.openapi_contract import Contract

__all__ = ["assert_within_contract", "checked_standin", "describe_violations"]


def describe_violations(violations: Iterable[Mapping[str, Any]]) -> str:
    lines = [
        f"  {v['method']} {v['path']} -> {v['status']}: {v['part']} {v['where']}: {v['message']}" for v in violations
    ]
    return "exchanges with the Cloudflare stand-in that break Cloudflare's published schema:\n" + "\n".join(lines)


def assert_within_contract(standin: CloudflareStandin, *, refused_requests_allowed: bool = False) -> None:
    """Every answer, and every request, kept the schema. `refused_requests_allowed`: a
    request the stand-in refused (HTTP >= 400) may break it, for tests that send bad
    requests on purpose to see them refused; its answer is still checked."""
    assert standin.contract is not None, "the stand-in was started without the contract"
    found = [
        v.as_json()
        for v in standin.violations.snapshot()
        if not (refused_requests_allowed and v.part == "request" and v.status >= 400)
    ]
    assert not found, describe_violations(found)


@contextmanager
def checked_standin(*, refused_requests_allowed: bool = False, **options: Any) -> Iterator[CloudflareStandin]:
    """A started stand-in (`options` as for CloudflareStandin) holding the contract; once
    stopped, `assert_within_contract`."""
    server = CloudflareStandin(contract=Contract.load(), **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()
    assert_within_contract(server, refused_requests_allowed=refused_requests_allowed)
