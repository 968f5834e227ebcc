"""Waves: a later wave starts only after every region of the earlier one succeeded. A
broken image fails in wave 1, is rolled back there automatically while its Cloudflare
pool is drained, and never reaches wave 2."""

from __future__ import annotations

import pytest

from sandbox.driver import digest_for, wait_until
from sandbox.kwok_stages import broken_digest

pytestmark = pytest.mark.sandbox

WAVE_1, WAVE_2 = ["europe-west1"], ["us-west1", "asia-east1"]


def _push_and_wait(sandbox, config, digest: str) -> str:
    image = f"{config.apps[0].repository}@{digest}"
    sandbox.push_image(config, digest, tag="v1.0.0")
    sandbox.wait_for_image(config, WAVE_1 + WAVE_2, image, timeout=120)
    return image


def test_wave_two_starts_only_after_wave_one_succeeded(sandbox, catalog):
    path, config = catalog
    image = _push_and_wait(sandbox, config, digest_for("catalog-waves"))

    first = sandbox.release_record(config, "europe-west1").current
    assert first.image == image and first.status == "succeeded"
    for region in WAVE_2:
        later = sandbox.release_record(config, region).current
        assert later.release_id == first.release_id  # the same release, carried forward
        assert later.applied_at >= first.finished_at, f"{region} started before wave 1 finished"
    advanced = [
        e
        for e in sandbox.log_events(path, f"{config.name}-on-deploy-result")
        if e.get("event") == "wave_advanced" and e.get("release") == first.release_id
    ]
    assert advanced and advanced[0]["regions"] == WAVE_2


def test_a_broken_image_in_wave_one_is_rolled_back_drained_and_never_reaches_wave_two(sandbox, catalog):
    path, config = catalog
    good = _push_and_wait(sandbox, config, digest_for("catalog-good"))
    pool = "catalog-europe-west1"
    sandbox.sandbox.cloudflare.reset_requests()

    bad = f"{config.apps[0].repository}@{broken_digest('catalog')}"
    sandbox.push_image(config, bad.split("@")[1], tag="v2.0.0")

    failed = sandbox.wait_for_result(
        config, lambda r: r.get("image") == bad and r["status"] == "rolling_back", timeout=90, what="the wave-1 failure"
    )
    assert failed["region"] == "europe-west1" and failed["reason"] == "ProgressDeadlineExceeded"
    assert failed["rolled_back_to"] == good
    recovered = sandbox.wait_for_result(
        config,
        lambda r: r.get("image") == bad and r["status"] == "rolled_back",
        timeout=90,
        what="the automatic rollback",
    )
    assert recovered["rolled_back_to"] == good
    sandbox.wait_for_image(config, WAVE_1, good, timeout=30)

    history = sandbox.release_record(config, "europe-west1").history
    rollback, broken = history[0], history[1]
    assert (broken.image, broken.status, broken.reason) == (bad, "failed", "ProgressDeadlineExceeded")
    assert (rollback.kind, rollback.image, rollback.status) == ("rollback", good, "succeeded")
    assert rollback.rollback_of == broken.release_id
    assert rollback.trigger.requested_by == "geodeploy:auto-rollback"

    # Traffic left the region while it was failing and came back once it recovered.
    def pool_toggles() -> list[bool]:
        log = sandbox.sandbox.cloudflare.requests()["log"]
        pool_ids = {p["id"] for p in sandbox.sandbox.cloudflare.state()["pools"] if p["name"] == pool}
        return [
            entry["body"]["enabled"]
            for entry in log
            if entry["method"] == "PATCH"
            and entry["path"].rsplit("/", 1)[-1] in pool_ids
            and "enabled" in (entry["body"] or {})
            and entry["status"] == 200
        ]

    toggles = wait_until(lambda: pool_toggles() if pool_toggles()[-1:] == [True] else None, 30, "the pool restored")
    assert toggles == [False, True]

    # Wave 2 never saw the broken release.
    for region in WAVE_2:
        record = sandbox.release_record(config, region)
        assert all(r.image != bad for r in record.history)
        assert sandbox.running_image(config, region) == good
    halted = [
        e
        for e in sandbox.log_events(path, f"{config.name}-on-deploy-result")
        if e.get("event") == "wave_halted" and e.get("release") == broken.release_id
    ]
    assert halted
