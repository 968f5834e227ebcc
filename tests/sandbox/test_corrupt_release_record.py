"""One region's release record edited by hand into something that is not a record: traffic
keeps being reconciled for every region (that one drained, with its reason), and the drift
check reports the others as usual and that one as unreadable, without failing."""

from __future__ import annotations

import json

import pytest

from sandbox.driver import digest_for, wait_until

pytestmark = pytest.mark.sandbox

REGION = "us-west1"
RECORD = "geodeploy-releases-shop"
# What a hurried `kubectl edit` can leave: JSON, but not a release record.
CORRUPT = json.dumps({"history": [{"release_id": 7, "image": "shop:latest"}]})


def _pools_enabled(sandbox, config) -> dict[str, bool]:
    pools = {p["name"]: p["enabled"] for p in sandbox.sandbox.cloudflare.state()["pools"]}
    return {r.name: pools[r.cloudflare.pool] for r in config.regions}


def _set_record(sandbox, config, text: str) -> None:
    patch = json.dumps({"data": {"releases.json": text}})
    sandbox.kubectl(config, REGION, "-n", "shop", "patch", "configmap", RECORD, "--type=merge", "-p", patch)


def _check_drift(sandbox, config) -> dict:
    event_id = sandbox.publish(config, config.topics.drift, {"version": 1, "apps": ["shop"], "heal": False})
    return wait_until(
        lambda: next((r for r in sandbox.drift_reports(config) if r["trigger_event_id"] == event_id), None),
        60,
        f"the drift report for event {event_id}",
    )


@pytest.fixture
def corrupted(sandbox, shop):
    _, config = shop
    image = f"{config.apps[0].repository}@{digest_for('shop-corrupt-record')}"
    sandbox.push_image(config, image.split("@")[1], tag="v11.0.0")
    sandbox.wait_for_image(config, [r.name for r in config.regions], image)
    sandbox.wait_for_traffic_settled(config)
    saved = sandbox.get(config, REGION, "configmap", RECORD, "shop")["data"]["releases.json"]
    _set_record(sandbox, config, CORRUPT)
    try:
        yield config
    finally:
        _set_record(sandbox, config, saved)
    sandbox.reconcile_traffic(config)
    assert _pools_enabled(sandbox, config) == {r.name: True for r in config.regions}


def test_a_corrupt_record_drains_only_its_region_and_is_reported_as_unreadable(sandbox, shop, corrupted):
    path, config = shop

    logged = sandbox.reconcile_traffic(config)

    assert logged["health"] == {
        "europe-west1": "healthy:serving",
        "us-west1": "unhealthy:release_record_unreadable",
        "asia-east1": "healthy:serving",
    }
    assert _pools_enabled(sandbox, config) == {"europe-west1": True, "us-west1": False, "asia-east1": True}
    [drained] = [
        e
        for e in sandbox.log_events(path, f"{config.name}-reconcile-traffic")
        if e.get("event") == "region_drained" and e.get("event_id") == logged["event_id"]
    ]
    assert (drained["drained_region"], drained["reason"]) == (REGION, "release_record_unreadable")
    assert f"ConfigMap shop/{RECORD}" in drained["detail"]

    report = _check_drift(sandbox, config)

    regions = {r["region"]: r for r in report["regions"]}
    assert {name: r["status"] for name, r in regions.items()} == {
        "europe-west1": "in_sync",
        "us-west1": "unreadable",
        "asia-east1": "in_sync",
    }
    assert regions[REGION]["reason"] == "release_record_unreadable"
    assert f"ConfigMap shop/{RECORD}" in regions[REGION]["detail"]
    assert report["drifted"] is False
