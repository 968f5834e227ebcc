"""Duplicates, redeliveries and late arrivals never cause extra or backward deploys."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from sandbox.driver import digest_for, wait_until
from shared.contracts import DeployRequest

pytestmark = pytest.mark.sandbox


def _apply_time(obj: dict) -> str:
    """When geodeploy last server-side-applied this object."""
    return next(
        m["time"] for m in obj["metadata"]["managedFields"] if m["manager"] == "geodeploy" and m["operation"] == "Apply"
    )


def _logged(sandbox, path, function, event, **fields) -> list[dict]:
    return [
        e
        for e in sandbox.log_events(path, function)
        if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
    ]


def test_one_digest_pushed_under_three_tags_deploys_once_per_region(sandbox, shop):
    path, config = shop
    digest = digest_for("shop-three-tags")
    image = f"{config.apps[0].repository}@{digest}"
    for tag in ("v3", "v3.0", "v3.0.0"):
        sandbox.push_image(config, digest, tag=tag)

    regions = [r.name for r in config.regions]
    sandbox.wait_for_image(config, regions, image)
    for region in regions:
        fn = f"{config.name}-deploy-{region}"
        wait_until(
            lambda fn=fn: len(_logged(sandbox, path, fn, "duplicate_ignored", image=image)) == 2,
            30,
            f"two duplicates ignored in {region}",
        )
        history = sandbox.release_record(config, region).history
        assert [r.image for r in history].count(image) == 1
        assert len(_logged(sandbox, path, fn, "manifests_applied", digest=image)) == 1
    successes = [r for r in sandbox.results(config) if r.get("image") == image and r["status"] == "succeeded"]
    assert sorted(r["region"] for r in successes) == sorted(regions)


def test_a_redelivered_request_makes_no_writes(sandbox, shop):
    path, config = shop
    digest = digest_for("shop-redelivered")
    image = f"{config.apps[0].repository}@{digest}"
    sandbox.push_image(config, digest, tag="v4.0.0")
    sandbox.wait_for_image(config, ["us-west1"], image)
    current = sandbox.release_record(config, "us-west1").current
    before_record = sandbox.get(config, "us-west1", "configmap", "geodeploy-releases-shop", "shop")
    before_deployment = sandbox.deployment(config, "us-west1")

    again = DeployRequest(
        release_id=current.release_id,
        app="shop",
        region="us-west1",
        image=image,
        trigger=current.trigger,
        issued_at=current.issued_at,
    )
    sandbox.publish(config, config.deploy_topic("us-west1"), again.to_bytes())

    fn = f"{config.name}-deploy-us-west1"
    wait_until(
        lambda: _logged(sandbox, path, fn, "request_already_handled", release=current.release_id),
        30,
        "the redelivery to be handled",
    )
    after_record = sandbox.get(config, "us-west1", "configmap", "geodeploy-releases-shop", "shop")
    assert after_record["metadata"]["resourceVersion"] == before_record["metadata"]["resourceVersion"]
    assert _apply_time(sandbox.deployment(config, "us-west1")) == _apply_time(before_deployment)


def test_an_older_digest_arriving_late_does_not_replace_a_newer_one(sandbox, shop):
    _path, config = shop
    old, new = (f"{config.apps[0].repository}@{digest_for(label)}" for label in ("shop-old", "shop-new"))
    sandbox.push_image(config, new.split("@")[1], tag="v5.0.0")
    sandbox.wait_for_image(config, ["europe-west1"], new)
    newer = sandbox.release_record(config, "europe-west1").current

    # The push of `old` happened before `new`'s, but its request is delivered only now.
    late = DeployRequest(
        release_id="late-old-push",
        app="shop",
        region="europe-west1",
        image=old,
        trigger={"type": "push", "event_id": "late-1", "tag": "v4.9.0"},
        issued_at=newer.issued_at - timedelta(minutes=2),
    )
    sandbox.publish(config, config.deploy_topic("europe-west1"), late.to_bytes())

    result = sandbox.wait_for_result(config, lambda r: r["release_id"] == "late-old-push", what="the late result")
    assert result["status"] == "superseded"
    assert sandbox.running_image(config, "europe-west1") == new
    assert sandbox.release_record(config, "europe-west1").find("late-old-push") is None


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"action": "INSERT", "tag": "latest"}, "tag_filtered"),
        ({"action": "INSERT", "repository": "europe-docker.pkg.dev/other-project/apps/shop"}, "unknown_repository"),
        ({"action": "DELETE"}, "not_an_insert"),
        ({"action": "INSERT", "digest": None}, "no_digest"),
    ],
)
def test_pushes_that_do_not_deploy_are_logged_with_their_reason(sandbox, shop, message, reason):
    path, config = shop
    repository = message.pop("repository", config.apps[0].repository)
    digest = digest_for(f"ignored-{reason}")
    body = {"action": message["action"], "digest": f"{repository}@{digest}", "tag": f"{repository}:v9.9.9"}
    if "tag" in message:
        body["tag"] = f"{repository}:{message['tag']}"
    if message.get("digest", "") is None:
        body.pop("digest")
    event_id = sandbox.publish(config, config.topics.images, body)

    fn = f"{config.name}-on-image-pushed"
    logged = wait_until(lambda: _logged(sandbox, path, fn, "push_ignored", event_id=event_id), 30, "push_ignored")
    assert logged[0]["reason"] == reason
    assert logged[0]["severity"] == "INFO"
    assert not _logged(sandbox, path, fn, "deploy_requested", event_id=event_id)


def test_every_rendered_object_passes_a_server_side_dry_run(sandbox, shop):
    import subprocess

    from shared.contracts import ImageRef
    from shared.rendering import render_release

    _, config = shop
    for region in config.regions:
        rendered = render_release(
            config, config.apps[0], region, ImageRef(config.apps[0].repository, digest_for("dry-run"))
        )
        cluster = sandbox.sandbox.clusters.clusters[region.cluster.name]
        done = subprocess.run(
            [
                "kubectl",
                "--kubeconfig",
                str(cluster.kubeconfig),
                "apply",
                "--server-side",
                "--dry-run=server",
                "--field-manager=geodeploy-dry-run",
                "--force-conflicts",
                "-o",
                "json",
                "-f",
                "-",
            ],
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(rendered.objects)}),
            text=True,
            capture_output=True,
        )
        assert done.returncode == 0, done.stderr
        accepted = json.loads(done.stdout)
        kinds = [o["kind"] for o in accepted.get("items", [accepted])]
        assert kinds == ["Namespace", "Service", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget"]
