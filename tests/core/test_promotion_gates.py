"""Promotion gates (config `gates`): what waits at a gate is read from the regions'
release records (shared.gates), and the config refuses a gate that could never work."""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from typing import Any

import pytest

from shared.config import Config, Region
from shared.errors import ConfigError
from shared.flows.promotion import OperatorApproval, waiting_promotion
from shared.gates import Hold, pending_promotion
from shared.releases import Release, ReleaseRecord
from tests.core.builders import at, build_config, config_data, record, ref, release

EU, US, ASIA = "europe-west1", "us-west1", "asia-east1"


def gated(**gate: Any) -> Config:
    data = config_data(waves=True)
    data["gates"] = [{"wave": 1, **gate}]
    return build_config(data)


def at_region(**by_region: ReleaseRecord) -> dict[str, ReleaseRecord]:
    names = {"eu": EU, "us": US, "asia": ASIA}
    return {**{n: record() for n in names.values()}, **{names[k]: v for k, v in by_region.items()}}


R1 = release("r1", ref("v1"), issued_at=at(0))
R2 = release("r2", ref("v2"), issued_at=at(10))


def soaking(r: Release) -> Release:
    return r.model_copy(update={"status": "progressing", "finished_at": None, "soaked_from": at(3)})


def test_a_release_through_a_manual_gates_wave_waits_for_approval() -> None:
    promotion = pending_promotion(gated(approval="manual"), gated().app("shop"), at_region(eu=record(R1)))

    assert promotion is not None
    assert (promotion.release.release_id, promotion.wave, promotion.next_wave) == ("r1", 1, 2)
    assert promotion.holds == (Hold.APPROVAL,)
    assert promotion.since == R1.finished_at


def test_a_region_still_soaking_holds_the_gate_and_is_named() -> None:
    config = gated(soak_seconds=60, approval="manual")
    promotion = pending_promotion(config, config.app("shop"), at_region(eu=record(soaking(R1))))

    assert promotion is not None
    assert promotion.holds == (Hold.SOAK, Hold.APPROVAL)
    assert promotion.soaking == (EU,)
    assert promotion.since is None


def test_a_newer_push_cancels_the_waiting_promotion() -> None:
    config = gated(approval="manual")
    claimed = release("r2", ref("v2"), status="applying", issued_at=at(10))

    assert pending_promotion(config, config.app("shop"), at_region(eu=record(claimed, R1))) is None
    # ... even when it has only reached a region of a later wave (a deploy to named regions).
    assert pending_promotion(config, config.app("shop"), at_region(eu=record(R1), us=record(R2))) is None


def test_a_promoted_release_no_longer_waits() -> None:
    config = gated(approval="manual")
    started = release("r1", ref("v1"), status="progressing", issued_at=at(0))

    promoted = at_region(eu=record(R1), us=record(started), asia=record(started))

    assert pending_promotion(config, config.app("shop"), promoted) is None


def test_nothing_waits_after_a_failure_or_a_rollback_in_the_wave() -> None:
    config = gated(approval="manual")
    failed = release("r1", ref("v1"), status="failed", issued_at=at(0))
    rolled_back = release("r1-rb", ref("v0"), kind="rollback", rollback_of="r1", issued_at=at(0))

    assert pending_promotion(config, config.app("shop"), at_region(eu=record(failed))) is None
    assert pending_promotion(config, config.app("shop"), at_region(eu=record(rolled_back, failed))) is None


def test_a_deploy_to_named_regions_is_never_promoted() -> None:
    config = gated(approval="manual")
    hotfix = R2.model_copy(update={"follow_waves": False})

    assert pending_promotion(config, config.app("shop"), at_region(eu=record(hotfix, R1))) is None


def test_a_digest_recorded_under_another_release_id_is_the_same_release() -> None:
    """One digest pushed under two tags reaches the wave's regions in either order: each
    records the first it saw, as the wave advance counts it."""
    data = config_data(waves=True)
    data["regions"][1]["wave"] = 1  # us-west1 joins Europe in wave 1; Asia is wave 2
    data["gates"] = [{"wave": 1, "approval": "manual"}]
    config = build_config(data)
    first = release("r1", ref("v1"), issued_at=at(0))
    second = release("r2", ref("v1"), issued_at=at(1))
    confirmed = first.model_copy(update={"confirmed_by": "r2", "confirmed_at": at(1)})

    promotion = pending_promotion(config, config.app("shop"), at_region(eu=record(confirmed), us=record(second)))

    assert promotion is not None and promotion.holds == (Hold.APPROVAL,)
    assert promotion.release.image == ref("v1")


def test_a_promotion_cut_short_waits_for_nothing_and_names_who_has_it() -> None:
    """The promote's publish reached one region of the next wave and failed for the other
    (its redelivery, or the next tick, must send the rest): the gate was passed, so
    nothing holds it, and only the region without it is left."""
    config = gated(approval="manual")
    started = release("r1", ref("v1"), status="progressing", issued_at=at(0))

    promotion = pending_promotion(config, config.app("shop"), at_region(eu=record(R1), us=record(started)))

    assert promotion is not None
    assert (promotion.release.release_id, promotion.next_wave) == ("r1", 2)
    assert promotion.holds == ()
    assert promotion.promoted_to == (US,)


def test_an_older_release_of_the_same_image_is_not_the_new_one() -> None:
    """v1, v2, then v1 pushed again (a revert): a next-wave region that ran the first v1
    has not been promoted the third release, so the gate still holds it."""
    config = gated(approval="manual")
    again = release("r3", ref("v1"), issued_at=at(20))

    promotion = pending_promotion(
        config, config.app("shop"), at_region(eu=record(again, R2, R1), us=record(R2, R1), asia=record(R2, R1))
    )

    assert promotion is not None
    assert (promotion.release.release_id, promotion.holds, promotion.promoted_to) == ("r3", (Hold.APPROVAL,), ())


def test_the_same_image_deployed_by_hand_to_a_next_wave_region_passes_no_gate() -> None:
    """r1 waits for approval; someone deploys the same digest to Asia alone (r5, a deploy
    to named regions), then the digest is pushed again under a new tag (r7, confirmed in
    Europe). Asia runs the image, but nobody promoted r1: the approval still holds it."""
    config = gated(approval="manual")
    r1 = R1.model_copy(update={"confirmed_by": "r7", "confirmed_at": at(7)})
    by_hand = release("r5", ref("v1"), issued_at=at(5)).model_copy(update={"follow_waves": False})

    promotion = pending_promotion(config, config.app("shop"), at_region(eu=record(r1), asia=record(by_hand)))

    assert promotion is not None and promotion.holds == (Hold.APPROVAL,)


def test_a_region_whose_rollback_was_confirmed_by_the_push_has_it() -> None:
    """US rolled r0 back to v1; the fix-forward push r1 is that same v1, promoted: Asia
    applies it, US confirms it on its rollback entry. Nothing is left to send."""
    config = gated(approval="manual")
    r1 = release("r1", ref("v1"), issued_at=at(20))
    failed = release("r0", ref("v2"), status="failed", issued_at=at(10))
    rolled_back = release("r0-rb", ref("v1"), kind="rollback", rollback_of="r0", issued_at=at(10))
    rolled_back = rolled_back.model_copy(update={"confirmed_by": "r1", "confirmed_at": at(20)})

    records = at_region(eu=record(r1), us=record(rolled_back, failed), asia=record(r1))

    assert pending_promotion(config, config.app("shop"), records) is None


def test_a_region_already_running_the_image_stands_for_the_push_that_confirmed_it() -> None:
    """The same digest pushed again where it already runs is confirmed, not re-applied:
    that entry stands for the new push; an unconfirmed older one does not."""
    again = release("r3", ref("v1"), issued_at=at(20))
    confirmed = R1.model_copy(update={"confirmed_by": "r3", "confirmed_at": at(20)})

    assert record(confirmed).standing_for("r3", ref("v1"), again.order) == confirmed
    assert record(R2, R1).standing_for("r3", ref("v1"), again.order) is None
    assert record(R1).standing_for("r1", ref("v1"), R1.order) == R1


def test_an_operators_approval_opens_only_the_gate_it_names() -> None:
    config = gated(approval="manual")
    promotion = pending_promotion(config, config.app("shop"), at_region(eu=record(R1)))
    assert promotion is not None

    assert OperatorApproval("r1", 1, "ana").approves(promotion)
    assert not OperatorApproval("r0", 1, "ana").approves(promotion)  # a late promote of an older release
    assert not OperatorApproval("r1", 2, "ana").approves(promotion)  # a repeated promote, at the next gate


def test_an_open_gate_holds_nothing() -> None:
    config = build_config(config_data(waves=True))

    assert pending_promotion(config, config.app("shop"), at_region(eu=record(R1))) is None


@pytest.mark.parametrize(
    ("gate", "refusal"),
    [
        ({"wave": 2, "approval": "manual"}, "wave 2 is the last wave"),
        ({"wave": 7, "approval": "manual"}, "no region is in wave 7"),
        ({"wave": 1, "soak_seconds": 100_000}, "gates[0].soak_seconds: must be less than"),
        ({"wave": 1, "approval": "sometimes"}, "approval"),
    ],
)
def test_the_config_refuses_a_gate_that_cannot_work(gate: dict[str, Any], refusal: str) -> None:
    data = config_data(waves=True)
    data["gates"] = [gate]
    with pytest.raises(ConfigError, match=re.escape(refusal)):
        build_config(data)


def test_a_soak_that_fits_the_deliveries_loads() -> None:
    config = gated(soak_seconds=600, require_edge_healthy=True)

    gate = config.gate_after(1)
    assert (gate.soak_seconds, gate.require_edge_healthy) == (600, True)
    assert config.gate_after(2).soak_seconds == 0  # no gate: an open one
    assert timedelta(seconds=gate.soak_seconds) < timedelta(hours=1)


def test_a_cloudflare_that_does_not_answer_holds_the_gate_for_one_deadline_and_says_so() -> None:
    """Cloudflare's verdict is asked for every pool of the wave at once, under the
    regions' deadline: one that never comes holds the gate, named, and the call ends."""
    data = config_data(waves=True)
    data["gates"] = [{"wave": 1, "require_edge_healthy": True}]
    data["region_deadline_seconds"] = 1
    config = build_config(data)
    answered = threading.Event()

    def silent(region: Region) -> bool:
        answered.wait(30)  # a Cloudflare that keeps the connection and never answers
        return True

    try:
        promotion = waiting_promotion(config, config.app("shop"), at_region(eu=record(R1)), silent)
    finally:
        answered.set()

    assert promotion is not None and promotion.holds == (Hold.EDGE,)
    assert promotion.edge_detail == "Cloudflare: no verdict on shop-europe-west1 within 1 s"
