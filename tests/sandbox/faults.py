"""What the fault tests check after a schedule, on the real clusters, records and results:
the invariants of docs/architecture.md ("Invariants")."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sandbox.driver import SandboxDriver, wait_until
from shared.config import Config
from shared.releases import TERMINAL, release_order, stamp_order

# Results that end a request (duplicates of one are fine).
TERMINAL_RESULTS = frozenset({"succeeded", "unchanged", "failed", "rolled_back", "superseded", "rejected"})


def image_of(config: Config, digest: str, app: str | None = None) -> str:
    return f"{config.app(app or config.apps[0].name).repository}@{digest}"


def deployment_path(config: Config, app: str | None = None) -> str:
    a = config.app(app or config.apps[0].name)
    return f"/apis/apps/v1/namespaces/{a.namespace}/deployments/{a.name}$"


def record_path(config: Config, app: str | None = None) -> str:
    a = config.app(app or config.apps[0].name)
    return f"/api/v1/namespaces/{a.namespace}/configmaps/geodeploy-releases-{a.name}$"


def deployment_writes(
    sandbox: SandboxDriver, config: Config, region: str, since: int = 0, app: str | None = None
) -> list[dict[str, Any]]:
    """The Deployment writes that reached the region's API server, in arrival order, as
    the fault proxy's audit log saw them (a `cut` write reached it too)."""
    pattern = re.compile(deployment_path(config, app))
    return [
        e
        for e in sandbox.audit(config, region, since)
        if e["method"] in ("PATCH", "PUT", "POST")
        and pattern.search(e["path"])
        and e.get("images")
        and "dryRun" not in (e.get("query") or "")
        and ((e.get("status") or 0) < 300 and (e.get("status") or e.get("fault") == "cut"))
    ]


def assert_applies_never_go_back(writes: Iterable[dict[str, Any]]) -> None:
    """Invariant 3: each write carries its release's stamp, in non-decreasing release order."""
    previous = None
    for write in writes:
        order = stamp_order({"metadata": {"annotations": write.get("annotations") or {}}})
        assert order is not None, f"an unstamped Deployment write: {write}"
        assert previous is None or order >= previous, f"an older release was applied after a newer one: {write}"
        previous = order


def assert_settled(sandbox: SandboxDriver, config: Config, regions: list[str], app: str | None = None) -> None:
    """Invariants 1 and 2: every release in each record is finished, and the cluster runs
    the image the record calls current."""
    for region in regions:
        record = sandbox.release_record(config, region, app)
        unfinished = [(r.release_id, r.status) for r in record.history if r.status not in TERMINAL]
        assert not unfinished, f"{region}: releases that never ended: {unfinished}"
        current = record.current
        assert current is not None
        running = sandbox.running_image(config, region, app)
        assert running == current.image, f"{region}: the record says {current.image}, the cluster runs {running}"


def wait_for_terminal_result(
    sandbox: SandboxDriver, config: Config, release_id: str, region: str, timeout: float = 90
) -> dict[str, Any]:
    return sandbox.wait_for_result(
        config,
        lambda r: r["release_id"] == release_id and r["region"] == region and r["status"] in TERMINAL_RESULTS,
        timeout=timeout,
        what=f"a terminal result of {release_id} in {region}",
    )


def newest_release(results: Iterable[dict[str, Any]]) -> tuple[Any, ...]:
    return max(release_order(_time(r["issued_at"]), r["release_id"]) for r in results)


def _time(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def logged(sandbox: SandboxDriver, config: Config, function: str, event: str, **fields: Any) -> list[dict[str, Any]]:
    path = sandbox._path(config)
    return [
        e
        for e in sandbox.log_events(path, f"{config.name}-{function}")
        if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
    ]


def wait_logged(
    sandbox: SandboxDriver, config: Config, function: str, event: str, timeout: float = 30, **fields: Any
) -> list[dict[str, Any]]:
    return wait_until(
        lambda: logged(sandbox, config, function, event, **fields), timeout, f"{function} to log {event} {fields}"
    )
