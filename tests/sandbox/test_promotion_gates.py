"""Promotion gates between waves (config/sandbox-gates.yaml): wave 1 (europe-west1) soaks
20 s and is promoted only while Cloudflare's monitor calls its pool healthy; wave 2
(us-west1) waits for `geodeploy promote` before wave 3 (asia-east1). The tests run in
order: each starts from what the one before left running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sandbox.driver import digest_for, wait_until
from sandbox.kwok_stages import failing_later_digest

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[2]
EU, US, ASIA = "europe-west1", "us-west1", "asia-east1"
EU_POOL = "gated-europe-west1"


def _image(config, digest: str) -> str:
    return f"{config.apps[0].repository}@{digest}"


def _events(sandbox, path, function: str, event: str, **match: Any) -> list[dict[str, Any]]:
    return [
        e
        for e in sandbox.log_events(path, f"gates-{function}")
        if e.get("event") == event and all(e.get(k) == v for k, v in match.items())
    ]


def _has(sandbox, config, region: str, image: str) -> bool:
    return any(r.image == image for r in sandbox.release_record(config, region).history)


def _succeeded(sandbox, config, region: str, image: str) -> bool:
    current = sandbox.release_record(config, region).current
    return current is not None and current.image == image and current.status == "succeeded"


def _cli(sandbox, path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEODEPLOY_", "PUBSUB_", "CLOUDFLARE_"))}
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    env["USER"] = "gate-keeper"
    argv = [sys.executable, "-m", "cli", "--sandbox", str(sandbox.sandbox.state_dir), "--config", str(path), *args]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)


def _waiting(sandbox, path) -> dict[str, Any] | None:
    done = _cli(sandbox, path, "status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["waiting_at_gate"]


def _waiting_for_approval(sandbox, path, image: str) -> dict[str, Any] | None:
    """What waits at the wave-2 gate for `promote`, if it is `image` (soaked, through wave 1)."""
    waiting = _waiting(sandbox, path)
    if waiting and waiting["image"] == image and waiting["wave"] == 2 and waiting["holds"] == ["approval"]:
        return waiting
    return None


def test_a_release_soaks_waits_for_the_edge_then_for_promote(sandbox, gated):
    path, config = gated
    image = _image(config, digest_for("gated-v1"))
    sandbox.sandbox.cloudflare.set_pool_health(EU_POOL, False)  # Cloudflare's probes fail in Europe
    sandbox.push_image(config, digest_for("gated-v1"), tag="v1.0.0")

    # Wave 1 soaks: reported progressing (Soaking) after its rollout completed...
    soaking = sandbox.wait_for_result(
        config,
        lambda r: r.get("image") == image and r["status"] == "progressing" and r.get("reason") == "Soaking",
        what="europe-west1 soaking",
    )
    assert soaking["region"] == EU
    soaked_from = sandbox.release_record(config, EU).current.soaked_from
    assert soaked_from is not None
    # ... and a crash mid-soak neither restarts nor skips it: the redelivery carries on.
    sandbox.kill_function(config, f"{config.name}-deploy-{EU}")
    wait_until(lambda: _succeeded(sandbox, config, EU, image), 90, "europe-west1 soaked")
    europe = sandbox.release_record(config, EU).current
    assert europe.soaked_from == soaked_from
    assert (europe.finished_at - soaked_from).total_seconds() >= 20

    # Cloudflare's monitor calls the pool unhealthy: the promotion is held, not lost.
    held = wait_until(
        lambda: _events(sandbox, path, "on-deploy-result", "promotion_held", release=europe.release_id),
        60,
        "the promotion held by Cloudflare's verdict",
    )
    assert held[0]["holds"] == ["edge"] and EU_POOL in held[0]["detail"]
    assert not _has(sandbox, config, US, image)

    # Healthy again: the next drift-check tick promotes it.
    sandbox.sandbox.cloudflare.set_pool_health(EU_POOL, True)
    sandbox.publish(config, config.topics.drift, {"version": 1})
    wait_until(lambda: _succeeded(sandbox, config, US, image), 120, "wave 2 promoted and rolled out")

    # Wave 2's gate wants an operator: it waits, and says so.
    waiting = wait_until(lambda: _waiting(sandbox, path), 60, "the wave-2 gate shown waiting")
    assert (waiting["release_id"], waiting["wave"], waiting["next_wave"]) == (europe.release_id, 2, 3)
    assert waiting["holds"] == ["approval"]
    status = _cli(sandbox, path, "status")
    assert "Waiting at a gate" in status.stdout and "geodeploy promote" in status.stdout
    assert not _has(sandbox, config, ASIA, image)

    promoted = _cli(sandbox, path, "-o", "json", "promote")
    assert promoted.returncode == 0, promoted.stderr
    document = json.loads(promoted.stdout)
    assert (document["command"], document["error"]) == ("promote", None)
    assert document["promotion"]["release_id"] == europe.release_id
    assert (document["promotion"]["wave"], document["promotion"]["next_wave"]) == (2, 3)
    wait_until(lambda: _succeeded(sandbox, config, ASIA, image), 120, "wave 3 promoted by hand")
    line = wait_until(
        lambda: _events(sandbox, path, "on-control", "wave_promoted", release=europe.release_id), 30, "its log line"
    )
    assert line[0]["approved_by"] == "gate-keeper" and line[0]["regions"] == [ASIA]
    assert _waiting(sandbox, path) is None


def test_a_newer_push_cancels_a_waiting_promotion(sandbox, gated):
    path, config = gated
    v2, v3 = _image(config, digest_for("gated-v2")), _image(config, digest_for("gated-v3"))
    sandbox.push_image(config, digest_for("gated-v2"), tag="v2.0.0")
    waiting_v2 = wait_until(lambda: _waiting_for_approval(sandbox, path, v2), 150, "v2 at the wave-2 gate")

    sandbox.push_image(config, digest_for("gated-v3"), tag="v3.0.0")
    wait_until(lambda: _has(sandbox, config, EU, v3), 60, "v3 claimed in wave 1")
    # v2 no longer waits: promoting now lets nothing through (v3 is soaking, or on its way).
    assert (_waiting(sandbox, path) or {}).get("image") != v2
    refused = _cli(sandbox, path, "promote")
    assert refused.returncode == 1 and waiting_v2["release_id"] not in refused.stderr, refused.stderr
    # A promote of v2 published late (as a script would) is looked at and lets nothing through.
    mark = len(_events(sandbox, path, "on-control", "nothing_to_promote"))
    late = {"version": 1, "action": "promote", "app": "gated", "target": waiting_v2["release_id"], "wave": 2}
    sandbox.publish(config, config.topics.control, late)
    wait_until(lambda: len(_events(sandbox, path, "on-control", "nothing_to_promote")) > mark, 30, "promote ignored")

    wait_until(lambda: _waiting_for_approval(sandbox, path, v3), 150, "v3 waiting at the wave-2 gate")
    # The late promote of v2 must not open the gate v3 now waits at either.
    sandbox.publish(config, config.topics.control, late)
    wait_until(lambda: len(_events(sandbox, path, "on-control", "nothing_to_promote")) > mark + 1, 30, "ignored")
    assert not _has(sandbox, config, ASIA, v2) and not _has(sandbox, config, ASIA, v3)
    assert _cli(sandbox, path, "promote").returncode == 0
    wait_until(lambda: _succeeded(sandbox, config, ASIA, v3), 120, "v3 in wave 3")
    assert not _has(sandbox, config, ASIA, v2)


def test_a_failure_during_the_soak_rolls_the_region_back_and_halts(sandbox, gated):
    path, config = gated
    good = sandbox.release_record(config, EU).current.image
    bad = _image(config, failing_later_digest("gated"))
    sandbox.push_image(config, failing_later_digest("gated"), tag="v4.0.0")

    failed = sandbox.wait_for_result(
        config, lambda r: r.get("image") == bad and r["status"] == "rolling_back", timeout=90, what="the soak failure"
    )
    assert failed["region"] == EU and failed["reason"] == "unhealthy_during_soak"
    sandbox.wait_for_result(
        config, lambda r: r.get("image") == bad and r["status"] == "rolled_back", timeout=90, what="the rollback"
    )
    sandbox.wait_for_image(config, [EU], good, timeout=30)
    broken = sandbox.release_record(config, EU).history[1]
    assert (broken.image, broken.status, broken.reason) == (bad, "failed", "unhealthy_during_soak")
    assert broken.soaked_from is not None  # it passed its rollout, then failed soaking
    assert not _has(sandbox, config, US, bad) and not _has(sandbox, config, ASIA, bad)
    assert _waiting(sandbox, path) is None
