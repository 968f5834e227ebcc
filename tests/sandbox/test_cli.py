"""The `geodeploy` CLI as an operator runs it: a subprocess per command, pointed at the
session sandbox with --sandbox and --config, checked by its output, its exit code and its
effect on the regions (read with the driver, not with the CLI)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from sandbox.driver import digest_for, wait_until
from sandbox.kwok_stages import broken_digest
from sandbox.processes import free_port
from shared.contracts import ImageRef
from shared.rendering import render_release
from tests.sandbox.cli_runner import image_of as _image
from tests.sandbox.cli_runner import release_everywhere as _release
from tests.sandbox.cli_runner import run_cli as _cli

pytestmark = pytest.mark.sandbox

COMMANDS = ["status", "render", "diff", "deploy", "rollback", "drift", "history"]
CONTAINER = "spec.template.spec.containers[name=app]"


def _one_error_line(done) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def _message_id(stdout: str) -> str:
    return re.search(r"message (\S+)", stdout).group(1)


def _region_lines(stdout: str, region: str) -> list[str]:
    return [line for line in stdout.splitlines() if re.match(rf"^\d\d:\d\d:\d\d  {region}\s", line)]


# --- usage -------------------------------------------------------------------------------------


def test_help_works_for_every_command():
    top = _cli("--help")
    assert top.returncode == 0
    for command in COMMANDS:
        assert command in top.stdout
    for command in COMMANDS:
        done = _cli(command, "--help")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"usage: geodeploy {command}")
        assert "examples:" in done.stdout and f"geodeploy {command}" in done.stdout.split("examples:")[1]


def test_a_bad_config_path_exits_2_with_one_line(sandbox, tmp_path):
    done = _cli("status", sandbox=sandbox, config_path=tmp_path / "missing.yaml")
    assert done.returncode == 2
    assert "cannot read config" in _one_error_line(done)
    assert done.stdout == ""


def test_an_unknown_app_exits_2(sandbox, shop):
    path, _ = shop
    done = _cli("--app", "shopp", "status", sandbox=sandbox, config_path=path)
    assert done.returncode == 2
    assert "no app named 'shopp'" in _one_error_line(done)


# --- reading -----------------------------------------------------------------------------------


def test_status_shows_each_regions_running_digest_and_pool_state(sandbox, shop):
    path, config = shop
    image = _release(sandbox, config, "cli-status")
    sandbox.wait_for_traffic_settled(config)
    short = ImageRef.parse(image).short

    done = _cli("status", "--json", sandbox=sandbox, config_path=path)

    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    for region in status["regions"]:
        assert region["reachable"] and region["digest_short"] == short
        assert region["rollout"]["phase"] == "complete" and region["release"]["status"] == "succeeded"
    pools = {p["region"]: p for p in status["cloudflare"]["pools"]}
    for region in config.regions:
        pool = pools[region.name]
        assert pool["pool"] == region.cloudflare.pool and pool["enabled"] is True and pool["healthy"] is True
        assert pool["health"]["state"] == "healthy"

    text = _cli("status", sandbox=sandbox, config_path=path)
    assert text.returncode == 0, text.stderr
    for region in config.regions:
        row = next(line for line in text.stdout.splitlines() if line.startswith(f"{region.name} ") and short in line)
        assert "complete" in row and "succeeded" in row
        pool_row = next(line for line in text.stdout.splitlines() if region.cloudflare.pool in line)
        assert re.search(r"yes\s+yes\s+healthy", pool_row)


def test_status_shows_a_region_that_does_not_answer_as_unreachable(sandbox, shop, tmp_path):
    path, config = shop
    image = _release(sandbox, config, "cli-status-unreachable", tag="v2.0.0")
    # A copy of the config whose asia-east1 cluster GKE reports at an endpoint where nothing
    # listens, used through a sandbox record of its own: the shared clusters stay untouched
    # (a stopped and restarted sandbox cluster no longer rolls pods out).
    gone = tmp_path / "shop-gone.yaml"
    gone.write_text(path.read_text().replace("name: shop-asia-east1}", "name: shop-asia-gone}"))
    sandbox.sandbox.google.register_cluster(
        f"projects/{config.project}/locations/asia-east1-a/clusters/shop-asia-gone",
        f"127.0.0.1:{free_port()}",
        sandbox.sandbox.cluster_for(config, "asia-east1").ca_pem,
    )
    record = tmp_path / "sandbox"
    record.mkdir()
    state = json.loads((sandbox.sandbox.state_dir / "sandbox.json").read_text())
    env = {**state["env"][str(path.resolve())], "GEODEPLOY_CONFIG": str(gone)}
    (record / "sandbox.json").write_text(json.dumps({"env": {str(gone): env}}))

    done = _cli("status", config_path=gone, extra=["--sandbox", str(record)])

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    asia = next(line for line in lines if line.startswith("asia-east1 "))
    assert asia.split()[:3] == ["asia-east1", "-", "unreachable"]
    assert any(line.strip().startswith("asia-east1: shop-asia-gone:") for line in lines)
    assert ImageRef.parse(image).short in next(line for line in lines if line.startswith("europe-west1 "))
    assert next(line for line in lines if "shop-asia-east1" in line).split()[-1] == "unreachable"


def test_history_lists_the_releases_newest_first(sandbox, shop):
    path, config = shop
    older = _release(sandbox, config, "cli-history-1", tag="v3.0.0")
    newer = _release(sandbox, config, "cli-history-2", tag="v3.1.0")
    recorded = [r.release_id for r in sandbox.release_record(config, "europe-west1").history]

    done = _cli("history", "--region", "europe-west1", "--json", sandbox=sandbox, config_path=path)

    assert done.returncode == 0, done.stderr
    [region] = json.loads(done.stdout)["regions"]
    releases = region["releases"]
    assert [r["release_id"] for r in releases] == recorded[:10]
    assert releases[0]["image"] == newer and releases[1]["image"] == older

    text = _cli("history", "--region", "europe-west1", "--limit", "2", sandbox=sandbox, config_path=path)
    assert text.returncode == 0, text.stderr
    rows = [line.strip() for line in text.stdout.splitlines() if line.strip().startswith(tuple(recorded))]
    assert [row.split()[0] for row in rows] == recorded[:2]
    assert ImageRef.parse(newer).short in rows[0] and "push v3.1.0" in rows[0]
    assert f"2 of {len(recorded)} releases, newest first" in text.stdout


# --- manifests -----------------------------------------------------------------------------------


def test_render_prints_the_five_objects_with_the_pinned_image(sandbox, shop):
    path, config = shop
    digest = digest_for("cli-render")

    done = _cli("render", "--region", "us-west1", "--image", digest, sandbox=sandbox, config_path=path)

    assert done.returncode == 0, done.stderr
    objects = list(yaml.safe_load_all(done.stdout))
    assert [o["kind"] for o in objects] == [
        "Namespace", "Service", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget"
    ]  # fmt: skip
    [container] = objects[2]["spec"]["template"]["spec"]["containers"]
    assert container.get("image") == f"{config.apps[0].repository}@{digest}"
    expected = render_release(config, config.apps[0], config.region("us-west1"), ImageRef.parse(container.get("image")))
    assert done.stderr.strip() == f"manifest hash: {expected.manifest_hash}"


def test_diff_shows_a_changed_image_for_a_new_digest_and_unchanged_for_the_running_one(sandbox, shop):
    path, config = shop
    running = _release(sandbox, config, "cli-diff-running", tag="v4.0.0")
    new = _image(config, "cli-diff-new")

    changed = _cli("diff", "--region", "europe-west1", "--image", new, sandbox=sandbox, config_path=path)

    assert changed.returncode == 1, changed.stderr  # something would change, as `kubectl diff` exits
    assert changed.stderr == ""  # not an error
    lines = [line.strip() for line in changed.stdout.splitlines()]
    assert "change     Deployment/shop/shop" in lines
    assert f"{CONTAINER}.image" in lines
    assert f"- {running}" in lines and f"+ {new}" in lines
    assert "1 of 5 objects would change" in lines

    same = _cli("diff", "--region", "europe-west1", "--image", running, sandbox=sandbox, config_path=path)

    assert same.returncode == 0, same.stderr
    verdicts = [line.split()[0] for line in same.stdout.splitlines() if "/shop" in line and "@" not in line]
    assert verdicts == ["unchanged"] * 5
    assert "nothing would change" in same.stdout


# --- releasing ---------------------------------------------------------------------------------


def test_deploy_wait_deploys_a_new_digest_to_every_region(sandbox, shop):
    path, config = shop
    _release(sandbox, config, "cli-deploy-before", tag="v5.0.0")
    digest = digest_for("cli-deploy")
    image = f"{config.apps[0].repository}@{digest}"

    done = _cli(
        "deploy", "--image", digest, "--wait", "--timeout", "180", sandbox=sandbox, config_path=path, user="ana"
    )

    assert done.returncode == 0, done.stdout + done.stderr
    short = ImageRef.parse(image).short
    for region in config.regions:
        lines = _region_lines(done.stdout, region.name)
        assert any(f"result: succeeded: running {short}" in line for line in lines), done.stdout
        assert any("available" in line for line in lines)
        summary = next(line for line in done.stdout.splitlines() if line.strip().startswith(f"{region.name} "))
        assert "succeeded" in summary
        assert sandbox.running_image(config, region.name) == image
        current = sandbox.release_record(config, region.name).current
        assert (current.image, current.trigger.type, current.trigger.requested_by) == (image, "manual", "ana")
        assert current.trigger.event_id == _message_id(done.stdout)


def test_deploy_wait_of_a_broken_image_fails_in_wave_one_and_reports_the_rollback(sandbox, catalog):
    path, config = catalog
    good = _release(sandbox, config, "cli-catalog-good")
    bad = broken_digest("cli-catalog")

    done = _cli("deploy", "--image", bad, "--wait", "--timeout", "240", sandbox=sandbox, config_path=path)

    assert done.returncode == 1, done.stdout + done.stderr
    europe = "\n".join(_region_lines(done.stdout, "europe-west1"))
    good_short = ImageRef.parse(good).short
    assert f"result: failed (ProgressDeadlineExceeded): rolling back to {good_short}" in europe
    assert "result: rolled back (ProgressDeadlineExceeded)" in europe
    summary = {
        line.split()[0]: line.split()[2]
        for line in done.stdout.split("done in")[1].splitlines()
        if line.strip().split(" ")[0] in {r.name for r in config.regions}
    }
    assert summary == {"europe-west1": "rolled_back", "us-west1": "not_started", "asia-east1": "not_started"}
    error = _one_error_line(done)
    assert "did not succeed" in error and "europe-west1 rolled_back" in error
    sandbox.wait_for_image(config, [r.name for r in config.regions], good, timeout=30)
    for region in ("us-west1", "asia-east1"):
        assert all(
            r.image != f"{config.apps[0].repository}@{bad}" for r in sandbox.release_record(config, region).history
        )
    sandbox.wait_for_traffic_settled(config)  # the drained pool is back before the next test


def test_rollback_wait_returns_every_region_to_the_previous_release(sandbox, shop):
    path, config = shop
    previous = _release(sandbox, config, "cli-rollback-v1", tag="v6.0.0")
    _release(sandbox, config, "cli-rollback-v2", tag="v6.1.0")

    done = _cli("rollback", "--wait", "--timeout", "180", sandbox=sandbox, config_path=path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"rollback to {ImageRef.parse(previous).short} requested" in done.stdout
    for region in config.regions:
        assert any("result: succeeded" in line for line in _region_lines(done.stdout, region.name)), done.stdout
        assert sandbox.running_image(config, region.name) == previous
        current = sandbox.release_record(config, region.name).current
        assert (current.kind, current.image, current.status) == ("rollback", previous, "succeeded")
        assert current.trigger.requested_by == "cli-test"


# --- drift -----------------------------------------------------------------------------------------


def test_drift_publishes_a_request_that_yields_a_report(sandbox, shop):
    path, config = shop
    _release(sandbox, config, "cli-drift-publish", tag="v7.0.0")

    done = _cli("drift", sandbox=sandbox, config_path=path)

    assert done.returncode == 0, done.stderr
    event_id = _message_id(done.stdout)
    report = wait_until(
        lambda: next((r for r in sandbox.drift_reports(config) if r["trigger_event_id"] == event_id), None),
        90,
        f"the drift report for event {event_id}",
    )
    assert {r["region"]: r["status"] for r in report["regions"]} == {r.name: "in_sync" for r in config.regions}
    assert {r["app"] for r in report["regions"]} == {"shop"}


def test_drift_run_reports_in_sync_then_a_hand_edit_with_its_path(sandbox, shop):
    path, config = shop
    image = _release(sandbox, config, "cli-drift-run", tag="v8.0.0")
    sandbox.wait_for_traffic_settled(config)

    clean = _cli("drift", "--run", sandbox=sandbox, config_path=path)

    assert clean.returncode == 0, clean.stdout + clean.stderr
    rows = [line.split() for line in clean.stdout.splitlines()[2:] if line and not line.startswith(" ")]
    statuses = {row[0]: row[1] for row in rows}
    assert statuses == {**{r.name: "in_sync" for r in config.regions}, "cloudflare": "in_sync"}

    hand_picked = _image(config, "cli-hand-picked")
    sandbox.kubectl(config, "us-west1", "-n", "shop", "set", "image", "deployment/shop", f"app={hand_picked}")
    try:
        drifted = _cli("drift", "--run", sandbox=sandbox, config_path=path)

        assert drifted.returncode == 1, drifted.stdout + drifted.stderr
        [row] = [line for line in drifted.stdout.splitlines() if line.startswith("us-west1 ")]
        assert row.split() == ["us-west1", "drifted", "Deployment/shop/shop", f"{CONTAINER}.image", image, hand_picked]
        assert "drift found in us-west1" in _one_error_line(drifted)
    finally:
        healed = _cli("drift", "--run", "--heal", "--region", "us-west1", sandbox=sandbox, config_path=path)
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert "drifted (healed)" in healed.stdout
    sandbox.wait_for_image(config, ["us-west1"], image)
