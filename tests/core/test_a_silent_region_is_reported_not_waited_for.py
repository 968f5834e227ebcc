"""A region whose API server never answers (packets dropped: the call neither fails nor
returns) is read in parallel with the others and given up on at the config's
`region_deadline_seconds`: traffic counts it unreachable, drift reports it unreachable,
a wave with it in it is not advanced (the result is redelivered), and `previous` is
resolved from the regions that answered. The others are read and acted on meanwhile.

The flows run for real on in-memory clusters where the real deploy flow released the app;
the silent API server is the in-memory one, holding every call until the test ends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from shared.config import Region
from shared.contracts import ControlMessage, DeployResult
from shared.errors import TransientError
from shared.flows.control import _resolve_previous
from shared.flows.drift import RegionStatus, check_drift
from shared.flows.regions import NO_ANSWER
from shared.flows.traffic import read_every_region_health
from shared.flows.waves import _wave_status
from tests.core.builders import at, build_config, changed, config_data, ref, trigger
from tests.core.inmemory_kube import CLOCK_START, Fault, InMemoryKube
from tests.core.test_drift_leaves_traffic_to_reconcile_traffic import GOOD, LOG, Regions

CONFIG = build_config(changed(config_data(worker=True), "region_deadline_seconds", 1))
SILENT = "asia-east1"


class OneRegionSilent(Regions):
    """Once `silence()` is called, every call to SILENT's API server waits until the test
    ends, as a call into a black hole waits for its socket timeout."""

    def __init__(self) -> None:
        self.silent = False
        self.unblocked = threading.Event()
        super().__init__(CONFIG)

    def connect(self, region: Region) -> InMemoryKube:
        def gate(_step: str, _faultable: bool) -> Fault | None:
            if region.name == SILENT and self.silent:
                self.unblocked.wait(timeout=30)
            return None

        return InMemoryKube(
            self.clusters[region.name], field_manager=self.config.field_manager, name=region.name, gate=gate
        )


@pytest.fixture
def regions() -> Iterator[OneRegionSilent]:
    fleet = OneRegionSilent()
    yield fleet
    fleet.unblocked.set()  # let the abandoned calls end


def test_traffic_counts_a_silent_region_unreachable_and_reads_the_others(regions):
    regions.silent = True
    health = read_every_region_health(CONFIG, regions.connect)  # type: ignore[arg-type]
    assert (health[SILENT].state, health[SILENT].reason) == ("unreachable", NO_ANSWER)
    assert health[SILENT].detail == "no answer within 1 s"
    assert [name for name, h in health.items() if h.healthy] == [r.name for r in CONFIG.regions if r.name != SILENT]


def test_drift_reports_a_silent_region_unreachable_and_checks_the_others(regions):
    regions.hand_edit("us-west1", "shop")
    regions.silent = True
    report = check_drift(CONFIG, connect=regions.connect, cloudflare=None, heal=True, now=CLOCK_START, log=LOG)  # type: ignore[arg-type]
    statuses = {(r.app, r.region): r.status for r in report.regions}
    assert statuses[("shop", SILENT)] is RegionStatus.UNREACHABLE
    assert statuses[("worker", SILENT)] is RegionStatus.UNREACHABLE
    assert statuses[("shop", "us-west1")] is RegionStatus.DRIFTED
    assert regions.running("us-west1", "shop") == GOOD["shop"]  # healed meanwhile
    # The report keeps the config's order: app by app, region by region.
    assert [(r.app, r.region) for r in report.regions] == [
        (a.name, g.name) for a in CONFIG.apps for g in CONFIG.regions
    ]


def test_a_wave_with_a_silent_region_is_not_decided(regions):
    regions.silent = True
    result = DeployResult(
        release_id="shop-v1-release",
        app="shop",
        region="europe-west1",
        kind="deploy",
        status="succeeded",
        image=GOOD["shop"],
        trigger=trigger(),
        issued_at=at(10),
        finished_at=at(10) + timedelta(seconds=5),
    )
    status = _wave_status(result, CONFIG.app("shop"), CONFIG, regions.connect)  # type: ignore[arg-type]
    assert status.unknown == [SILENT]
    assert sorted(status.succeeded) == sorted(r.name for r in CONFIG.regions if r.name != SILENT)


def test_previous_is_not_resolved_past_a_silent_canary(regions):
    # Every region on v2, the silent one already on v3: "previous" is v2. Resolved from the
    # regions that answer, it would be v1, one release too far back; the message is kept.
    for region in CONFIG.regions:
        regions.release(region.name, "shop", ref("v2"), "shop-v2-release", issued_at=at(20))
    regions.release(SILENT, "shop", ref("v3"), "shop-v3-release", issued_at=at(25))
    message = ControlMessage(version=1, action="rollback", app="shop", target="previous")
    assert _resolve_previous(message, CONFIG, regions.connect, LOG).reference == ref("v2")  # type: ignore[arg-type]
    regions.silent = True
    with pytest.raises(TransientError, match=rf"while {SILENT} cannot be read .*too far back"):
        _resolve_previous(message, CONFIG, regions.connect, LOG)  # type: ignore[arg-type]
