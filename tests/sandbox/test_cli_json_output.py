"""`geodeploy -o json` as a CI job uses it, against the session sandbox: every command's
stdout is one JSON document (json.loads of all of it) whose fields say what a script
needs (digests per region, statuses, change counts, outcomes), its exit_code is the
process's, and the exit codes tell "changes" / "drift" (1) from "could not check" (3).
A region that does not answer is one whose cluster refuses connections at the fault
proxy, on the CLI's real path to its API server."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from sandbox.driver import digest_for, wait_until
from sandbox.kwok_stages import broken_digest
from tests.sandbox.cli_runner import REPO, image_of, release_everywhere, run_cli

pytestmark = pytest.mark.sandbox

CONTAINER_IMAGE = "spec.template.spec.containers[name=app].image"
KUSTOMIZE_BUILD = REPO / "sandbox" / "kustomize" / "build.sh"


def _json(done: subprocess.CompletedProcess[str], command: str) -> dict[str, Any]:
    """The run's one document (all of stdout), in the envelope, with the process's exit code."""
    doc = json.loads(done.stdout)
    assert doc["command"] == command and doc["schema_version"] == 1
    assert doc["exit_code"] == done.returncode, done.stderr
    return doc


@contextmanager
def _not_answering(sandbox, config, region: str) -> Iterator[None]:
    """The region's API server refuses every connection (at the fault proxy), then answers
    again; the regions' traffic is back in place before the next test."""
    sandbox.set_cluster_mode(config, region, "refuse_connections")
    try:
        yield
    finally:
        sandbox.set_cluster_mode(config, region, "normal")
        sandbox.wait_for_traffic_settled(config)


# --- reading -----------------------------------------------------------------------------------


def test_status_json_gives_each_regions_digest_rollout_release_and_pool(sandbox, shop):
    path, config = shop
    image = release_everywhere(sandbox, config, "json-status", tag="v20.0.0")
    sandbox.wait_for_traffic_settled(config)

    done = run_cli("-o", "json", "status", sandbox=sandbox, config_path=path)

    doc = _json(done, "status")
    assert done.returncode == 0 and doc["error"] is None
    regions = {r["region"]: r for r in doc["regions"]}
    assert list(regions) == [r.name for r in config.regions]
    for region in regions.values():
        assert region["reachable"] is True and region["image"] == image
        assert region["digest"] == digest_for("json-status")
        assert region["rollout"]["phase"] == "complete" and region["release"]["status"] == "succeeded"
    pools = {p["region"]: p for p in doc["cloudflare"]["pools"]}
    assert all(p["enabled"] is True and p["health"]["state"] == "healthy" for p in pools.values())

    alias = run_cli("status", "--json", "--region", "us-west1", sandbox=sandbox, config_path=path)
    [us] = _json(alias, "status")["regions"]
    assert us == regions["us-west1"]


def test_history_json_gives_each_regions_releases_newest_first(sandbox, shop):
    path, config = shop
    older = release_everywhere(sandbox, config, "json-history-1", tag="v21.0.0")
    newer = release_everywhere(sandbox, config, "json-history-2", tag="v21.1.0")

    done = run_cli("history", "--limit", "2", "--output", "json", sandbox=sandbox, config_path=path)

    doc = _json(done, "history")
    assert done.returncode == 0 and doc["limit"] == 2
    for region in doc["regions"]:
        assert region["reachable"] is True and region["total"] >= 2
        assert [r["image"] for r in region["releases"]] == [newer, older]
        assert region["releases"][0]["trigger"]["tag"] == "v21.1.0"


# --- diff: 0 nothing would change, 1 something would, 3 could not check -------------------------


def test_diff_exits_0_when_nothing_would_change_and_1_when_something_would(sandbox, shop):
    path, config = shop
    running = release_everywhere(sandbox, config, "json-diff-running", tag="v22.0.0")
    new = image_of(config, "json-diff-new")

    same = run_cli("diff", "-o", "json", "--region", "us-west1", "--image", running, sandbox=sandbox, config_path=path)

    doc = _json(same, "diff")
    assert same.returncode == 0 and doc["error"] is None
    assert doc["changed"] == 0 and doc["counts"]["unchanged"] == doc["total"] == 5
    assert {o["action"] for o in doc["objects"]} == {"unchanged"}

    changed = run_cli("diff", "-o", "json", "--region", "us-west1", "--image", new, sandbox=sandbox, config_path=path)

    doc = _json(changed, "diff")
    assert changed.returncode == 1 and doc["error"] is None  # a verdict, not an error
    assert (doc["image"], doc["digest"]) == (new, digest_for("json-diff-new"))
    assert doc["changed"] == 1 and doc["counts"] == {
        "create": 0, "unchanged": 4, "change": 1, "prune": 0, "rejected": 0
    }  # fmt: skip
    [deployment] = [o for o in doc["objects"] if o["action"] == "change"]
    assert (deployment["kind"], deployment["name"]) == ("Deployment", "shop")
    assert deployment["changes"] == [{"path": CONTAINER_IMAGE, "live": running, "expected": new}]

    text = run_cli("diff", "--region", "us-west1", "--image", new, sandbox=sandbox, config_path=path)
    assert text.returncode == 1 and "1 of 5 objects would change" in text.stdout


def test_diff_exits_3_when_the_cluster_does_not_answer(sandbox, shop, faults):
    path, config = shop
    new = image_of(config, "json-diff-unreachable")
    with _not_answering(sandbox, config, "asia-east1"):
        done = run_cli(
            "diff", "-o", "json", "--region", "asia-east1", "--image", new, sandbox=sandbox, config_path=path
        )
        text = run_cli("diff", "--region", "asia-east1", "--image", new, sandbox=sandbox, config_path=path)

    doc = _json(done, "diff")
    assert done.returncode == 3
    assert doc["error"]["kind"] == "unavailable" and "shop-asia-east1" in doc["error"]["message"]
    assert "objects" not in doc  # nothing is known about the region
    assert done.stderr == ""
    assert text.returncode == 3 and "would change" not in text.stdout
    [error] = text.stderr.strip().splitlines()
    assert error.startswith("geodeploy: error: shop-asia-east1:")


# --- releasing ---------------------------------------------------------------------------------


def test_deploy_json_names_the_message_and_with_wait_each_regions_outcome(sandbox, shop):
    path, config = shop
    before = release_everywhere(sandbox, config, "json-deploy-before", tag="v23.0.0")

    again = run_cli(
        "deploy", "--image", before, "--region", "us-west1", "-o", "json", sandbox=sandbox, config_path=path
    )  # what already runs there: published, and the region says it is unchanged

    doc = _json(again, "deploy")
    assert again.returncode == 0 and doc["wait"] is None
    assert (doc["action"], doc["target"], doc["regions"]) == ("deploy", before, ["us-west1"])
    assert doc["requested_by"] == "cli-test"
    result = sandbox.wait_for_result(
        config,
        lambda r: r["trigger"]["event_id"] == doc["message_id"] and r["region"] == "us-west1",
        what=f"the result of message {doc['message_id']}",
    )
    assert result["status"] == "unchanged"

    new = image_of(config, "json-deploy")
    done = run_cli(
        "deploy", "--image", new, "--wait", "--timeout", "180", "-o", "json", sandbox=sandbox, config_path=path
    )

    doc = _json(done, "deploy")
    assert done.returncode == 0, done.stderr
    assert doc["digest"] == digest_for("json-deploy") and doc["wait"]["succeeded"] is True
    outcomes = {r["region"]: r for r in doc["wait"]["regions"]}
    assert set(outcomes) == {r.name for r in config.regions}
    for region in outcomes.values():
        assert (region["outcome"], region["ok"]) == ("succeeded", True)
        assert region["running"]["digest"] == digest_for("json-deploy")
        current = sandbox.release_record(config, region["region"]).current
        assert current.image == new and current.trigger.event_id == doc["message_id"]
    assert "result: succeeded" in done.stderr  # the live view is progress: on stderr


def test_a_failed_deploy_wait_is_a_document_with_each_outcome_and_the_error(sandbox, catalog):
    path, config = catalog
    good = release_everywhere(sandbox, config, "json-catalog-good", tag="v2.0.0")
    bad = broken_digest("json-catalog")

    done = run_cli(
        "deploy", "--image", bad, "--wait", "--timeout", "240", "-o", "json", sandbox=sandbox, config_path=path
    )

    doc = _json(done, "deploy")
    assert done.returncode == 1
    assert doc["error"]["kind"] == "failed" and "europe-west1 rolled_back" in doc["error"]["message"]
    assert doc["follows_waves"] is True and doc["wait"]["succeeded"] is False
    outcomes = {r["region"]: (r["wave"], r["outcome"], r["running"]["image"]) for r in doc["wait"]["regions"]}
    assert outcomes == {
        "europe-west1": (1, "rolled_back", good),
        "us-west1": (2, "not_started", good),
        "asia-east1": (2, "not_started", good),
    }
    sandbox.wait_for_traffic_settled(config)  # the drained pool is back before the next test


def test_rollback_wait_json_gives_the_resolved_image_and_each_outcome(sandbox, shop):
    path, config = shop
    previous = release_everywhere(sandbox, config, "json-rollback-v1", tag="v24.0.0")
    release_everywhere(sandbox, config, "json-rollback-v2", tag="v24.1.0")

    done = run_cli("rollback", "--wait", "--timeout", "180", "-o", "json", sandbox=sandbox, config_path=path)

    doc = _json(done, "rollback")
    assert done.returncode == 0, done.stderr
    assert (doc["action"], doc["target"], doc["image"]) == ("rollback", "previous", previous)
    assert {r["outcome"] for r in doc["wait"]["regions"]} == {"succeeded"}
    assert {r["running"]["image"] for r in doc["wait"]["regions"]} == {previous}


# --- drift: 0 in sync, 1 drift found, 3 could not check ---------------------------------------------


def test_drift_request_json_names_the_message_the_report_will_carry(sandbox, shop):
    path, config = shop
    release_everywhere(sandbox, config, "json-drift-request", tag="v25.0.0")

    done = run_cli("drift", "-o", "json", sandbox=sandbox, config_path=path)

    doc = _json(done, "drift")
    assert done.returncode == 0 and doc["mode"] == "request" and doc["report"] is None
    assert doc["request"]["report_topic"] == config.topics.drift_reports
    event_id = doc["request"]["message_id"]
    wait_until(
        lambda: any(r["trigger_event_id"] == event_id for r in sandbox.drift_reports(config)),
        90,
        f"the drift report for event {event_id}",
    )


def test_drift_run_json_exit_codes_in_sync_drifted_healed_and_not_checked(sandbox, shop, faults):
    path, config = shop
    image = release_everywhere(sandbox, config, "json-drift-run", tag="v26.0.0")
    sandbox.wait_for_traffic_settled(config)

    clean = run_cli("drift", "--run", "-o", "json", sandbox=sandbox, config_path=path)

    doc = _json(clean, "drift")
    assert clean.returncode == 0, clean.stderr
    report = doc["report"]
    assert report["drifted"] is False and report["unhealed"] == report["unchecked"] == []
    assert {r["region"]: r["status"] for r in report["regions"]} == {r.name: "in_sync" for r in config.regions}
    assert report["cloudflare"]["status"] == "in_sync"

    hand_picked = image_of(config, "json-hand-picked")
    sandbox.kubectl(config, "us-west1", "-n", "shop", "set", "image", "deployment/shop", f"app={hand_picked}")
    try:
        drifted = run_cli("drift", "--run", "-o", "json", sandbox=sandbox, config_path=path)

        doc = _json(drifted, "drift")
        assert drifted.returncode == 1
        assert doc["error"]["kind"] == "failed" and "drift found in us-west1" in doc["error"]["message"]
        [us] = [r for r in doc["report"]["regions"] if r["region"] == "us-west1"]
        assert (us["status"], us["healed"]) == ("drifted", False)
        assert us["differences"] == [
            {"object": "Deployment/shop/shop", "path": CONTAINER_IMAGE, "expected": image, "live": hand_picked}
        ]
        assert doc["report"]["unhealed"] == ["us-west1"]
    finally:
        healed = run_cli(
            "drift", "--run", "--heal", "--region", "us-west1", "-o", "json", sandbox=sandbox, config_path=path
        )
    doc = _json(healed, "drift")
    assert healed.returncode == 0, healed.stderr
    [us] = doc["report"]["regions"]
    assert (us["status"], us["healed"], doc["heal"]) == ("drifted", True, True)
    sandbox.wait_for_image(config, ["us-west1"], image)

    with _not_answering(sandbox, config, "asia-east1"):
        unchecked = run_cli("drift", "--run", "-o", "json", sandbox=sandbox, config_path=path)

    doc = _json(unchecked, "drift")
    assert unchecked.returncode == 3
    assert doc["error"]["kind"] == "unavailable" and doc["report"]["unchecked"] == ["asia-east1"]
    statuses = {r["region"]: r["status"] for r in doc["report"]["regions"]}
    assert statuses == {"europe-west1": "in_sync", "us-west1": "in_sync", "asia-east1": "unreachable"}


# --- kustomize (no sandbox needed, only the kustomize binary it builds) ----------------------------


def test_kustomize_json_lists_the_renderings_and_a_failed_build_is_exit_1(tmp_path):
    binary = subprocess.run([str(KUSTOMIZE_BUILD)], capture_output=True, text=True, check=True, timeout=600)
    examples = tmp_path / "examples"
    shutil.copytree(REPO / "config" / "examples", examples)
    config = examples / "storefront.yaml"
    args = ["kustomize", "--kustomize", binary.stdout.strip(), "-o", "json"]

    done = run_cli(*args, config_path=config)

    doc = _json(done, "kustomize")
    assert done.returncode == 0, done.stderr
    assert doc["rendered"] == [f"storefront/overlays/{r}/geodeploy-rendered.yaml" for r in ("europe-west1", "us-west1")]
    assert all((examples / file).is_file() for file in doc["rendered"])

    (examples / "storefront" / "overlays" / "us-west1" / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    broken = run_cli(*args, config_path=config)

    doc = _json(broken, "kustomize")
    assert broken.returncode == 1 and doc["error"]["kind"] == "failed"
    assert "kustomize build storefront/overlays/us-west1 failed" in doc["error"]["message"]
