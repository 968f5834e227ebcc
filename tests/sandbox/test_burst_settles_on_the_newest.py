"""A busy hour in one minute: 60 pushes across both sandbox apps, with duplicate tags,
redeliveries of older requests shuffled in after newer pushes, and one region's control
plane restarted in the middle. Everything must settle on each app's newest digest, every
request must end, and no older image may reach a Deployment after a newer one (read
from the fault proxy's audit log of what reached each API server)."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from typing import Any

import pytest

from sandbox.driver import digest_for, wait_until
from shared.contracts import DeployRequest, ImageRef, release_id_for
from tests.sandbox.faults import (
    TERMINAL_RESULTS,
    assert_applies_never_go_back,
    assert_settled,
    deployment_writes,
    image_of,
    logged,
)

pytestmark = pytest.mark.sandbox

PUSHES = 60
RESTARTED_REGION = "asia-east1"


def test_sixty_pushes_with_duplicates_redeliveries_and_a_restart_settle_on_the_newest(sandbox, shop, catalog):
    rng = random.Random(60)
    apps = {"shop": shop[1], "catalog": catalog[1]}
    mark = sandbox.audit_mark()
    pushed: dict[str, list[tuple[str, str]]] = defaultdict(list)  # app -> [(image, release id)]
    restart = threading.Thread(target=sandbox.restart_region, args=(shop[1], RESTARTED_REGION))
    started = time.monotonic()
    for n in range(PUSHES):
        app = "shop" if n % 2 == 0 else "catalog"
        config = apps[app]
        duplicate = n >= 4 and n % 7 == 3  # the same digest again, under another tag
        image = pushed[app][-1][0] if duplicate else image_of(config, digest_for(f"burst-{app}-{n}"))
        event_id = sandbox.push_image(config, image.split("@")[1], tag=f"v20.{n}.0")
        pushed[app].append((image, release_id_for(app, ImageRef.parse(image), event_id)))
        if n == PUSHES // 2:
            restart.start()
        time.sleep(0.02)  # distinct publish times, so "newest" is the last push
    newest = {app: pushes[-1][0] for app, pushes in pushed.items()}

    # Redeliveries of older requests, after newer pushes, in shuffled order.
    early = [rid for _, rid in pushed["shop"][:20]]
    first_results = _wait_for_results(sandbox, apps["shop"], early, "europe-west1")
    redelivered = rng.sample(first_results, 8)
    rng.shuffle(redelivered)
    for old in redelivered:
        for region in ("europe-west1", "us-west1"):
            request = DeployRequest(
                release_id=old["release_id"],
                app="shop",
                region=region,
                image=old["image"],
                trigger=old["trigger"],
                issued_at=old["issued_at"],
            )
            sandbox.publish(apps["shop"], apps["shop"].deploy_topic(region), request.to_bytes())
    restart.join()

    for app, config in apps.items():
        regions = [r.name for r in config.regions]
        sandbox.wait_for_image(config, regions, newest[app], timeout=240)
    settled_at = time.monotonic() - started
    for config in apps.values():
        # Cloudflare too: every result of the burst reconciled (or covered by a later reconcile).
        sandbox.wait_for_traffic_settled(config, timeout=300)
    traffic_at = time.monotonic() - started
    print(f"\n{PUSHES} pushes: every region on the newest in {settled_at:.1f} s, Cloudflare in {traffic_at:.1f} s")

    for app, config in apps.items():
        regions = [r.name for r in config.regions]
        _assert_every_request_ended(sandbox, config, app, pushed[app], regions)
        assert_settled(sandbox, config, regions)
        for region in regions:
            assert sandbox.running_image(config, region) == newest[app]
            writes = deployment_writes(sandbox, config, region, since=mark)
            assert writes, f"no Deployment write of {app} in {region}"
            assert_applies_never_go_back(writes)
            assert writes[-1]["images"] == [newest[app]]
    # Every redelivered older request ended without touching its region.
    for old in redelivered:
        for region in ("europe-west1", "us-west1"):
            statuses = [
                r["status"]
                for r in sandbox.results(apps["shop"])
                if r["release_id"] == old["release_id"] and r["region"] == region
            ]
            assert set(statuses) & TERMINAL_RESULTS, (old["release_id"], region, statuses)


def _wait_for_results(sandbox, config, release_ids: list[str], region: str) -> list[dict[str, Any]]:
    """Waits until each request ended in the region; returns the terminal results of those
    that have one of their own (a duplicate of a release still rolling out has none: which
    of two tags of a digest is the duplicate depends on delivery order)."""

    def ended() -> list[dict[str, Any]] | None:
        results = [r for r in sandbox.results(config) if r["region"] == region and r["status"] in TERMINAL_RESULTS]
        own = {r["release_id"]: r for r in results if r["release_id"] in release_ids}
        ignored = {e["release"] for e in logged(sandbox, config, f"deploy-{region}", "duplicate_ignored")}
        ended_images = {r.get("image") for r in results}
        decided = {e["release"]: e.get("image") for e in logged(sandbox, config, f"deploy-{region}", "request_decided")}
        for release_id in release_ids:
            if release_id in own:
                continue
            if release_id in ignored and decided.get(release_id) in ended_images:
                continue
            return None
        return list(own.values())

    return wait_until(ended, 240, f"the end of {len(release_ids)} requests in {region}")


def _assert_every_request_ended(sandbox, config, app: str, pushes: list[tuple[str, str]], regions: list[str]) -> None:
    """Invariant 1, per region: every request that reached it ended with a terminal result,
    or was a duplicate of a release of the same image that did."""
    results = sandbox.results(config)
    ended = {(r["release_id"], r["region"]) for r in results if r["status"] in TERMINAL_RESULTS}
    ended_images = {(r.get("image"), r["region"]) for r in results if r["status"] in TERMINAL_RESULTS}
    for region in regions:
        decided = {
            e["release"] for e in logged(sandbox, config, f"deploy-{region}", "request_decided") if e.get("app") == app
        }
        ignored = logged(sandbox, config, f"deploy-{region}", "duplicate_ignored")
        duplicates = {e["release"] for e in ignored if e.get("app") == app}
        for image, release_id in pushes:
            if release_id not in decided:
                # Only a later wave may never see a request (its wave stopped on a newer push).
                assert config.region(region).wave > 1, f"{release_id} never reached {region}"
                continue
            if (release_id, region) in ended:
                continue
            assert release_id in duplicates and (image, region) in ended_images, f"{release_id} never ended in {region}"
