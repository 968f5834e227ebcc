"""Every release ends, and the newest wins, when a call dies mid-way, the API server
refuses a step, an answer is lost or a message comes back after a newer push. Faults are
injected on the real path: the fault proxy between the functions and the API servers,
killed function workers, the Pub/Sub emulator's own redelivery."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from sandbox.driver import digest_for, wait_until
from sandbox.kwok_stages import broken_digest
from shared.contracts import DeployRequest, ImageRef, release_id_for
from tests.sandbox.faults import (
    assert_applies_never_go_back,
    assert_settled,
    deployment_path,
    deployment_writes,
    image_of,
    logged,
    record_path,
    wait_for_terminal_result,
    wait_logged,
)

pytestmark = pytest.mark.sandbox

REGION = "us-west1"


def _push(sandbox, config, label: str, tag: str) -> tuple[str, str]:
    """Pushes a new image; returns (image, release id in every region)."""
    digest = digest_for(label)
    event_id = sandbox.push_image(config, digest, tag=tag)
    image = image_of(config, digest)
    return image, release_id_for(config.apps[0].name, ImageRef.parse(image), event_id)


def _deploy_good(sandbox, config, label: str, tag: str) -> str:
    image, _ = _push(sandbox, config, label, tag)
    sandbox.wait_for_image(config, [r.name for r in config.regions], image)
    return image


# --- 1. an older digest never replaces a newer one --------------------------------------------


def test_a_call_that_died_after_its_claim_never_reapplies_its_image_over_a_newer_push(sandbox, shop, faults):
    _path, config = shop
    older_digest = digest_for("faults-older")
    mark = sandbox.audit_mark()
    # The older push's apply is held at the proxy (every delivery of it), and the call dies there.
    sandbox.add_fault(
        config, REGION, "hold", method="PATCH", path=deployment_path(config), body=older_digest, times=None
    )
    older, older_id = _push(sandbox, config, "faults-older", "v10.0.0")
    held = sandbox.wait_for_held(config, REGION, "PATCH", deployment_path(config))
    assert held["method"] == "PATCH"
    # The call dies while its apply waits; the proxy drops what a dead client sent.
    sandbox.kill_function(config, f"{config.name}-deploy-{REGION}")

    newer, newer_id = _push(sandbox, config, "faults-newer", "v10.0.1")
    sandbox.wait_for_image(config, [r.name for r in config.regions], newer)
    faults.clear()  # whatever the older call's redeliveries held now reaches the API server

    result = wait_for_terminal_result(sandbox, config, older_id, REGION)
    assert result["status"] == "superseded"
    assert wait_for_terminal_result(sandbox, config, newer_id, REGION)["status"] == "succeeded"
    time.sleep(2)  # anything still in flight would land now
    assert sandbox.running_image(config, REGION) == newer
    assert sandbox.release_record(config, REGION).find(older_id).status == "superseded"
    assert_settled(sandbox, config, [r.name for r in config.regions])
    writes = deployment_writes(sandbox, config, REGION, since=mark)
    assert writes[-1]["images"] == [newer]
    assert older not in [w["images"][0] for w in writes], "the older image reached the Deployment"
    assert_applies_never_go_back(writes)


def test_a_burst_of_pushes_ends_on_the_newest_digest_everywhere(sandbox, shop):
    _path, config = shop
    regions = [r.name for r in config.regions]
    mark = sandbox.audit_mark()
    pushed = [_push(sandbox, config, f"faults-burst-{n}", f"v11.0.{n}") for n in range(12)]
    newest_image, _ = pushed[-1]
    sandbox.wait_for_image(config, regions, newest_image, timeout=120)
    for _image, release_id in pushed:
        for region in regions:
            wait_for_terminal_result(sandbox, config, release_id, region, timeout=120)
    time.sleep(2)
    assert_settled(sandbox, config, regions)
    for region in regions:
        assert sandbox.running_image(config, region) == newest_image
        assert_applies_never_go_back(deployment_writes(sandbox, config, region, since=mark))


# --- 2. the automatic rollback cannot be skipped -----------------------------------------------


@pytest.mark.parametrize("fault", ["cut", "kill"])
def test_a_call_that_dies_after_recording_a_failure_still_rolls_back(sandbox, shop, faults, fault):
    _path, config = shop
    good = _deploy_good(sandbox, config, f"faults-good-before-broken-{fault}", "v12.0.0")
    digest = broken_digest(f"faults-broken-{fault}")
    if fault == "cut":
        # The write that records the failure reaches the API server; the call never learns it.
        sandbox.add_fault(
            config, REGION, "cut", method="PUT", path=record_path(config), body='"status": "failed"', times=1
        )
    else:
        # The call dies after recording the failure, while claiming the rollback.
        sandbox.add_fault(config, REGION, "hold", method="PUT", path=record_path(config), body='-rb"', times=1)
    event_id = sandbox.push_image(config, digest, tag="v12.0.1")
    bad = image_of(config, digest)
    release_id = release_id_for("shop", ImageRef.parse(bad), event_id)
    if fault == "kill":
        sandbox.wait_for_held(config, REGION, "PUT", record_path(config), timeout=90)
        sandbox.kill_function(config, f"{config.name}-deploy-{REGION}")
        assert sandbox.release_record(config, REGION).current.status == "failed"

    result = wait_for_terminal_result(sandbox, config, release_id, REGION, timeout=120)
    assert result["status"] == "rolled_back", result
    assert result["rolled_back_to"] == good
    record = sandbox.release_record(config, REGION)
    assert record.find(release_id).status == "failed"
    assert record.current.rollback_of == release_id and record.current.status == "succeeded"
    assert sandbox.running_image(config, REGION) == good
    for region in config.regions:
        wait_for_terminal_result(sandbox, config, release_id, region.name, timeout=120)
    assert_settled(sandbox, config, [r.name for r in config.regions])


# --- 3. a refusal after the claim ends the release ----------------------------------------------


def test_a_refused_apply_fails_the_release_and_rolls_it_back(sandbox, shop, faults):
    _path, config = shop
    good = _deploy_good(sandbox, config, "faults-good-before-refusal", "v13.0.0")
    digest = digest_for("faults-refused")
    sandbox.add_fault(
        config, REGION, "refuse", status=422, method="PATCH", path=deployment_path(config), body=digest, times=1
    )
    new, release_id = _push(sandbox, config, "faults-refused", "v13.0.1")

    result = wait_for_terminal_result(sandbox, config, release_id, REGION)
    assert (result["status"], result["reason"], result["rolled_back_to"]) == ("rolled_back", "kube_422", good)
    record = sandbox.release_record(config, REGION)
    assert (record.find(release_id).status, record.find(release_id).reason) == ("failed", "kube_422")
    assert sandbox.running_image(config, REGION) == good
    # The other regions were not refused: they run the new image.
    others = [r.name for r in config.regions if r.name != REGION]
    sandbox.wait_for_image(config, others, new)
    assert_settled(sandbox, config, [r.name for r in config.regions])
    # Pushing the same digest again is a new attempt, not a duplicate of the failed one.
    sandbox.push_image(config, digest, tag="v13.0.2")
    sandbox.wait_for_image(config, [REGION], new)


def test_a_refused_claim_is_answered_with_a_rejected_result(sandbox, shop, faults):
    _path, config = shop
    _deploy_good(sandbox, config, "faults-good-before-claim-refused", "v14.0.0")
    before = sandbox.release_record(config, REGION)
    sandbox.add_fault(config, REGION, "refuse", status=403, method="PUT", path=record_path(config), times=1)
    _image, release_id = _push(sandbox, config, "faults-claim-refused", "v14.0.1")

    result = wait_for_terminal_result(sandbox, config, release_id, REGION)
    assert (result["status"], result["reason"]) == ("rejected", "kube_403")
    assert sandbox.release_record(config, REGION).current == before.current
    assert sandbox.running_image(config, REGION) == before.current.image


@pytest.mark.parametrize(
    ("change", "reason"), [({"app": "no-such-app"}, "unknown_app"), ({"region": "asia-east1"}, "wrong_region")]
)
def test_a_request_the_region_cannot_take_gets_a_rejected_result(sandbox, shop, change, reason):
    _path, config = shop
    request = DeployRequest(
        release_id=f"cannot-take-{reason.replace('_', '-')}",
        app="shop",
        region=REGION,
        image=image_of(config, digest_for(f"faults-{reason}")),
        trigger={"type": "manual", "event_id": f"faults-{reason}"},
        issued_at=datetime.now(UTC),
    ).model_copy(update=change)
    sandbox.publish(config, config.deploy_topic(REGION), request.to_bytes())
    result = wait_for_terminal_result(sandbox, config, request.release_id, request.region)
    assert (result["status"], result["reason"]) == ("rejected", reason)


# --- 4. waves never stall -------------------------------------------------------------------------


def test_a_wave_advances_even_if_its_region_could_not_be_read_when_the_last_result_came(sandbox, catalog, faults):
    _path, config = catalog
    wave_1, wave_2 = ["europe-west1"], ["us-west1", "asia-east1"]
    failures_before = len(logged(sandbox, config, "on-deploy-result", "transient_failure"))
    # Hold the write that records wave 1's success; while it waits, make the record unreadable.
    digest = digest_for("faults-wave-unreadable")
    image = image_of(config, digest)
    # This release's own write of its success (the record's plain keys name it), no other.
    # Its release id is known only once pushed: the region's record reads wait 3 s until
    # that hold is in place, so a quick deploy cannot write its success before it.
    # Every reader's (times=None): reconcile_traffic reads the same record, and a one-shot
    # rule may be spent on its read instead of the deployer's.
    slow_reads = sandbox.add_fault(
        config, "europe-west1", "delay", seconds=3, method="GET", path=record_path(config), times=None
    )
    event_id = sandbox.push_image(config, digest, tag="v1.1.0")
    release_id = release_id_for("catalog", ImageRef.parse(image), event_id)
    success = f'"image": "{image}", "release": "{release_id}", "status": "succeeded"'
    sandbox.add_fault(config, "europe-west1", "hold", method="PUT", path=record_path(config), body=success, times=1)
    faults.remove_rule(slow_reads)
    held = sandbox.wait_for_held(config, "europe-west1", "PUT", record_path(config), timeout=60)
    sandbox.add_fault(config, "europe-west1", "refuse", status=503, method="GET", path=record_path(config), times=None)
    sandbox.release(held["id"])
    # The result arrives while the region cannot be read: it must come back, not be acked.
    wait_until(
        lambda: len(logged(sandbox, config, "on-deploy-result", "transient_failure")) > failures_before,
        60,
        "the wave advance to fail transiently",
    )
    faults.clear()
    sandbox.wait_for_image(config, wave_1 + wave_2, image, timeout=90)


# --- 6. a corrupt release record --------------------------------------------------------------------


def test_a_deploy_to_a_region_whose_record_is_corrupt_is_rejected_and_the_others_deploy(sandbox, shop):
    _path, config = shop
    _deploy_good(sandbox, config, "faults-good-before-corruption", "v15.0.0")
    name = "geodeploy-releases-shop"
    saved = sandbox.get(config, REGION, "configmap", name, "shop")["data"]
    patch = json.dumps({"data": {"releases.json": '{"history": [{"release_id": 7}]}'}})
    sandbox.kubectl(config, REGION, "-n", "shop", "patch", "configmap", name, "--type=merge", "-p", patch)
    try:
        new, release_id = _push(sandbox, config, "faults-corrupt-record", "v15.0.1")
        result = wait_for_terminal_result(sandbox, config, release_id, REGION)
        assert (result["status"], result["reason"]) == ("rejected", "release_record_unreadable")
        assert "releases.json" in result["message"]
        sandbox.wait_for_image(config, [r.name for r in config.regions if r.name != REGION], new)
    finally:
        restore = json.dumps({"data": saved})
        sandbox.kubectl(config, REGION, "-n", "shop", "patch", "configmap", name, "--type=merge", "-p", restore)


# --- 9. malformed messages are acked once, with a reason --------------------------------------------


def test_a_deploy_request_without_an_image_is_rejected_once(sandbox, shop):
    _path, config = shop
    message = {
        "version": 1, "kind": "deploy", "release_id": "no-image-0001", "app": "shop", "region": REGION,
        "trigger": {"type": "manual", "event_id": "no-image"}, "issued_at": datetime.now(UTC).isoformat(),
    }  # fmt: skip
    event_id = sandbox.publish(config, config.deploy_topic(REGION), message)
    rejected = wait_logged(sandbox, config, f"deploy-{REGION}", "event_rejected", event_id=event_id)
    assert rejected[0]["reason"] == "invalid_message" and "image" in rejected[0]["detail"]
    time.sleep(3)  # a retried message would be delivered again within the 1 s minimum backoff
    assert len(logged(sandbox, config, f"deploy-{REGION}", "event_rejected", event_id=event_id)) == 1
    assert not logged(sandbox, config, f"deploy-{REGION}", "unexpected_error", event_id=event_id)


def test_a_result_naming_an_unknown_app_is_rejected_once(sandbox, catalog):
    _path, config = catalog
    result = {
        "version": 1, "release_id": "unknown-app-0001", "app": "no-such-app", "region": "europe-west1",
        "kind": "deploy", "status": "succeeded", "image": image_of(config, digest_for("faults-unknown-app")),
        "trigger": {"type": "push", "event_id": "unknown-app"}, "issued_at": datetime.now(UTC).isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
    }  # fmt: skip
    event_id = sandbox.publish(config, config.topics.results, result)
    rejected = wait_logged(sandbox, config, "on-deploy-result", "event_rejected", event_id=event_id)
    assert rejected[0]["reason"] == "unknown_app"
    time.sleep(3)
    assert len(logged(sandbox, config, "on-deploy-result", "event_rejected", event_id=event_id)) == 1


# --- 11. a cold function that gets two events at once --------------------------------------------------


def test_a_cold_function_handles_two_events_at_once(sandbox, catalog):
    path, config = catalog
    function = f"{config.name}-on-deploy-result"
    sandbox.restart_function(path, function)  # cold: nothing imported yet
    base = {
        "version": 1, "app": "catalog", "region": "europe-west1", "kind": "deploy", "status": "succeeded",
        "trigger": {"type": "push", "event_id": "cold"}, "issued_at": datetime.now(UTC).isoformat(),
        "finished_at": datetime.now(UTC).isoformat(), "wave": 2,
    }  # fmt: skip
    ids = [
        sandbox.publish(config, config.topics.results, {**base, "release_id": f"cold-start-{n:04d}"}) for n in range(2)
    ]
    for event_id in ids:
        wait_logged(sandbox, config, "on-deploy-result", "all_waves_done", event_id=event_id)
    assert not logged(sandbox, config, "on-deploy-result", "unexpected_error")


# --- schedules the fast tier found (tests/core/test_deploy_state_machine.py), replayed here ------


def test_f2_two_first_releases_racing_to_create_the_deployment_end_on_the_newer(sandbox, shop, faults):
    """The older call's create waits at the proxy while the newer one creates the
    Deployment; the older create then lands too late and must not replace it."""
    _path, config = shop
    sandbox.kubectl(config, REGION, "-n", "shop", "delete", "deployment", "shop", "--wait=true")
    older_digest = digest_for("faults-f2-older")
    mark = sandbox.audit_mark()
    any_deployment_write = "/apis/apps/v1/namespaces/shop/deployments(/shop)?$"
    sandbox.add_fault(config, REGION, "hold", path=any_deployment_write, body=older_digest, times=1)
    older, older_id = _push(sandbox, config, "faults-f2-older", "v16.0.0")
    held = sandbox.wait_for_held(config, REGION, path=any_deployment_write)
    newer, _ = _push(sandbox, config, "faults-f2-newer", "v16.0.1")
    sandbox.wait_for_image(config, [REGION], newer)
    sandbox.release(held["id"])  # the older call's write reaches the API server now

    assert wait_for_terminal_result(sandbox, config, older_id, REGION)["status"] == "superseded"
    time.sleep(2)
    assert sandbox.running_image(config, REGION) == newer
    writes = deployment_writes(sandbox, config, REGION, since=mark)
    assert older not in [w["images"][0] for w in writes]
    assert_applies_never_go_back(writes)


def test_f1_an_older_request_after_a_newer_push_of_the_running_digest_does_not_replace_it(sandbox, shop):
    """The running digest pushed again (another tag) is the region's newest request, though
    nothing is applied for it; a request issued between the two pushes comes late."""
    _path, config = shop
    running = _deploy_good(sandbox, config, "faults-f1-running", "v17.0.0")
    between = datetime.now(UTC)
    time.sleep(0.05)
    _image, again_id = _push(sandbox, config, "faults-f1-running", "v17.0.1")
    assert wait_for_terminal_result(sandbox, config, again_id, REGION)["status"] == "unchanged"
    late = DeployRequest(
        release_id="faults-f1-late-0001",
        app="shop",
        region=REGION,
        image=image_of(config, digest_for("faults-f1-late")),
        trigger={"type": "push", "event_id": "faults-f1-late", "tag": "v17.0.0-late"},
        issued_at=between,
    )
    sandbox.publish(config, config.deploy_topic(REGION), late.to_bytes())
    result = wait_for_terminal_result(sandbox, config, late.release_id, REGION)
    assert (result["status"], result["reason"]) == ("superseded", "newer_release_recorded")
    assert sandbox.running_image(config, REGION) == running


def test_f4_a_digest_pushed_again_after_it_failed_in_place_is_rolled_out_again(sandbox, shop, faults):
    """The broken digest fails and its rollback is refused, so the broken spec stays in the
    Deployment; pushing the digest again must be a rollout of its own that ends."""
    _path, config = shop
    good = _deploy_good(sandbox, config, "faults-f4-good", "v18.0.0")
    good_digest = good.split("@")[1]
    sandbox.add_fault(
        config, REGION, "refuse", status=422, method="PATCH", path=deployment_path(config), body=good_digest, times=1
    )
    digest = broken_digest("faults-f4")
    event_id = sandbox.push_image(config, digest, tag="v18.0.1")
    bad = image_of(config, digest)
    first = wait_for_terminal_result(
        sandbox, config, release_id_for("shop", ImageRef.parse(bad), event_id), REGION, timeout=120
    )
    assert first["status"] == "failed"  # the rollback was refused: the broken spec stays

    again = sandbox.push_image(config, digest, tag="v18.0.2")
    result = wait_for_terminal_result(
        sandbox, config, release_id_for("shop", ImageRef.parse(bad), again), REGION, timeout=120
    )
    assert (result["status"], result["rolled_back_to"]) == ("rolled_back", good)
    assert sandbox.running_image(config, REGION) == good
