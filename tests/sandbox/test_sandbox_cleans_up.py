"""A sandbox that is stopped — even after a failure mid-test — leaves no process running
and no port bound."""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from sandbox.stack import Sandbox, sandbox_pids

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parent.parent.parent


def _bound(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_stopping_after_a_failure_leaves_no_process_and_no_port():
    state = Path(tempfile.mkdtemp(prefix="geodeploy-cleanup-"))
    stack = Sandbox([REPO / "config" / "sandbox.yaml"], state, progress=lambda _: None)
    ports: list[int] = []
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="a test failed here"):
        try:
            stack.start()
            ports += [int(url.rsplit(":", 1)[1]) for url in stack.urls.values()]
            ports += [int(c.endpoint.rsplit(":", 1)[1]) for c in stack.clusters.clusters.values()]
            ports += [int(url.rsplit(":", 1)[1]) for host in stack.functions.values() for url in host.urls.values()]
            ports.append(int(stack.emulator.host.rsplit(":", 1)[1]))
            pids += sandbox_pids(state)
            assert len(pids) >= 3 * 5 + 8 + 2, "clusters, functions and stand-ins were running"
            assert all(_bound(p) for p in ports)
            raise RuntimeError("a test failed here")
        finally:
            stack.stop()
    assert sandbox_pids(state) == []
    assert [p for p in ports if _bound(p)] == []
    shutil.rmtree(state, ignore_errors=True)
