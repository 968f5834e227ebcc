"""A full traffic reconcile covers every event published before it started, whichever
instance handles the event: each reconcile's start is recorded on a ConfigMap in the
fallback region. The mark only ever saves work: when it cannot be read, is garbled, or
its region is silent, the event is reconciled, and a silent region costs about a second.

The flow's functions run on in-memory clusters (the same API semantics as the sandbox's);
tests/sandbox/test_traffic_follows_region_health.py replays the cross-instance case with
a second process of the function against real control planes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.flows.traffic import TrafficReport, covering_reconcile_anywhere, record_reconcile_start
from shared.traffic import COALESCE_MARGIN, RegionHealth, covering_reconcile, reconcile_mark_started
from tests.core.test_a_silent_region_is_reported_not_waited_for import CONFIG, LOG, OneRegionSilent

FALLBACK = CONFIG.fallback_region.name
T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


class SilentFallback(OneRegionSilent):
    """As OneRegionSilent, with the fallback region the one that falls silent."""


@pytest.fixture
def regions(monkeypatch: pytest.MonkeyPatch) -> Iterator[OneRegionSilent]:
    monkeypatch.setattr("tests.core.test_a_silent_region_is_reported_not_waited_for.SILENT", FALLBACK)
    fleet = SilentFallback()
    yield fleet
    fleet.unblocked.set()


def _report(state: str = "healthy") -> TrafficReport:
    health = {r.name: RegionHealth(r.name, "healthy", "serving") for r in CONFIG.regions}
    health[FALLBACK] = RegionHealth(FALLBACK, state, "serving" if state == "healthy" else "no_answer")  # type: ignore[arg-type]
    return TrafficReport(health=health, pools_enabled={r.name: True for r in CONFIG.regions})


def test_an_event_published_before_a_reconcile_started_is_covered_by_it() -> None:
    assert covering_reconcile(T0, T0 + timedelta(seconds=1)) == T0 + timedelta(seconds=1)
    assert covering_reconcile(T0, None, T0 + timedelta(seconds=1), T0 + timedelta(seconds=3)) == T0 + timedelta(
        seconds=3
    )
    # Published after, or too close to tell apart across two clocks: it needs its own.
    assert covering_reconcile(T0, T0 - timedelta(seconds=1)) is None
    assert covering_reconcile(T0, T0 + COALESCE_MARGIN) is None
    assert covering_reconcile(T0) is None


@pytest.mark.parametrize(
    "data",
    [
        None,
        {},
        {"data": None},
        {"data": {"full-reconcile-started": "yesterday"}},
        {"data": {"full-reconcile-started": "2026-12-04T12:00:00"}},
    ],
)
def test_a_missing_or_garbled_mark_covers_nothing(data) -> None:
    assert reconcile_mark_started(data) is None


def test_a_new_instance_coalesces_against_the_mark_another_instance_wrote(regions) -> None:
    started = datetime.now(UTC)
    record_reconcile_start(CONFIG, started, _report(), connect=regions.connect, log=LOG)  # type: ignore[arg-type]
    before, after = started - timedelta(seconds=2), started + timedelta(seconds=2)
    new_instance = {"this_instance": None, "connect": regions.connect, "log": LOG}
    assert covering_reconcile_anywhere(CONFIG, before, **new_instance) == started  # type: ignore[arg-type]
    assert covering_reconcile_anywhere(CONFIG, after, **new_instance) is None  # type: ignore[arg-type]
    # The mark is where the function's RBAC allows it, and nowhere else.
    [holder] = [r.name for r in CONFIG.regions if regions.clusters[r.name].read(_mark_key())]
    assert holder == FALLBACK


def test_a_silent_fallback_region_costs_a_second_and_the_event_is_reconciled(regions) -> None:
    record_reconcile_start(CONFIG, datetime.now(UTC), _report(), connect=regions.connect, log=LOG)  # type: ignore[arg-type]
    regions.silent = True
    began = time.monotonic()
    covered = covering_reconcile_anywhere(
        CONFIG,
        T0,
        this_instance=None,
        connect=regions.connect,
        log=LOG,  # type: ignore[arg-type]
    )
    assert covered is None
    assert time.monotonic() - began < CONFIG.region_deadline_seconds + 1


def test_no_mark_is_written_to_a_fallback_region_the_reconcile_found_unreachable(regions) -> None:
    regions.silent = True
    began = time.monotonic()
    record_reconcile_start(CONFIG, datetime.now(UTC), _report("unreachable"), connect=regions.connect, log=LOG)  # type: ignore[arg-type]
    assert time.monotonic() - began < 0.5  # not even tried
    regions.silent = False
    assert regions.clusters[FALLBACK].read(_mark_key()) is None


def _mark_key() -> tuple[str, str, str, str]:
    app = CONFIG.app(CONFIG.cloudflare.app)
    return ("v1", "ConfigMap", app.namespace, f"{CONFIG.name}-traffic-{app.name}")


def test_a_mark_from_the_future_covers_nothing_and_is_overwritten(regions) -> None:
    """A fast clock or a hand edit must not make every event look covered until then."""
    now = datetime.now(UTC)
    record_reconcile_start(CONFIG, now + timedelta(minutes=10), _report(), connect=regions.connect, log=LOG)  # type: ignore[arg-type]
    new_instance = {"this_instance": None, "connect": regions.connect, "log": LOG}
    assert covering_reconcile_anywhere(CONFIG, now, **new_instance) is None  # type: ignore[arg-type]
    record_reconcile_start(CONFIG, now, _report(), connect=regions.connect, log=LOG)  # type: ignore[arg-type]
    assert covering_reconcile_anywhere(CONFIG, now - timedelta(seconds=2), **new_instance) == now  # type: ignore[arg-type]


def test_a_newer_mark_is_not_replaced_by_an_older_reconcile(regions) -> None:
    now = datetime.now(UTC)
    record_reconcile_start(CONFIG, now, _report(), connect=regions.connect, log=LOG)  # type: ignore[arg-type]
    record_reconcile_start(CONFIG, now - timedelta(seconds=5), _report(), connect=regions.connect, log=LOG)  # type: ignore[arg-type]
    new_instance = {"this_instance": None, "connect": regions.connect, "log": LOG}
    assert covering_reconcile_anywhere(CONFIG, now - timedelta(seconds=2), **new_instance) == now  # type: ignore[arg-type]
