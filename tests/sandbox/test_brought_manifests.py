"""Apps that bring their own manifests (config/sandbox-brought.yaml): the seed article's
k8s.yaml through `template`, a directory app with a web and a worker Deployment, and a
StatefulSet app, deployed to three regions on real control planes, each release watched
across every workload it renders."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from typing import Any

import pytest

from sandbox.driver import digest_for, wait_until
from sandbox.kwok_stages import broken_digest
from sandbox.stack import REPO

pytestmark = pytest.mark.sandbox

PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"


def _image(config, app: str, digest: str) -> str:
    return f"{config.app(app).repository}@{digest}"


def _rolled_out_image(workload: dict[str, Any] | None) -> str | None:
    """The first container's image of a workload whose rollout is done with every pod
    ready, else None."""
    if workload is None:
        return None
    spec, status = workload["spec"], workload.get("status", {})
    if workload["metadata"]["generation"] > status.get("observedGeneration", 0):
        return None
    desired = spec.get("replicas", 1)
    ready = status.get("readyReplicas", 0) == desired and status.get("updatedReplicas", 0) == desired
    if workload["kind"] == "Deployment":
        ready = ready and status.get("availableReplicas", 0) == status.get("replicas", -1) == desired
    else:
        ready = ready and status.get("currentRevision") == status.get("updateRevision")
    image: str = spec["template"]["spec"]["containers"][0]["image"]
    return image if ready else None


def _wait_for_workloads(sandbox, config, app: str, workloads: list[tuple[str, str]], image: str) -> None:
    namespace = config.app(app).namespace
    regions = [r.name for r in config.regions]

    def all_rolled_out() -> bool:
        return all(
            _rolled_out_image(sandbox.get(config, region, kind, name, namespace)) == image
            for region in regions
            for kind, name in workloads
        )

    wait_until(all_rolled_out, 120, f"{image} rolled out in {workloads} in every region")


def _results(sandbox, config, app: str, image: str, status: str) -> dict[str, dict[str, Any]]:
    """The result of `status` for `image` from every region, by region."""
    regions = [r.name for r in config.regions]

    def found() -> dict[str, dict[str, Any]] | None:
        matching = {
            r["region"]: r
            for r in sandbox.results(config)
            if (r["app"], r.get("image"), r["status"]) == (app, image, status)
        }
        return matching if set(matching) == set(regions) else None

    return wait_until(found, 150, f"a {status} result for {image} from every region")


def _deploy(sandbox, config, app: str, label: str, workloads: list[tuple[str, str]]) -> str:
    image = _image(config, app, digest_for(label))
    sandbox.push_image(config, digest_for(label), app=app)
    _results(sandbox, config, app, image, "succeeded")
    _wait_for_workloads(sandbox, config, app, workloads, image)
    return image


def test_the_seed_articles_k8s_yaml_deploys_to_every_region_in_current_api_versions(sandbox, brought):
    _path, config = brought
    image = _deploy(sandbox, config, "my-app", "seed-v1", [("deployment", "my-app-deployment")])

    for region in config.regions:
        deployment = sandbox.get(config, region.name, "deployment.v1.apps", "my-app-deployment", "app-ns")
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image
        # The HPA (upgraded from autoscaling/v2beta1) owns the replica count: its minimum.
        assert deployment["spec"]["replicas"] == 3
        hpa = sandbox.get(config, region.name, "horizontalpodautoscaler.v2.autoscaling", "my-app-hpa", "app-ns")
        assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 200}
        pdb = sandbox.get(config, region.name, "poddisruptionbudget.v1.policy", "my-app-pdb", "app-ns")
        assert pdb["spec"]["minAvailable"] == 2
        service = sandbox.get(config, region.name, "service", "my-app-service", "app-ns")
        # __IP__ and __ZONE__ became the region's own.
        assert service["spec"]["loadBalancerIP"] == region.static_ip.address
        assert service["metadata"]["labels"]["zone"] == region.cluster.location
        record = sandbox.release_record(config, region.name, "my-app")
        assert (record.current.image, record.current.status) == (image, "succeeded")


def test_a_directory_app_rolls_out_both_deployments_and_a_broken_worker_is_rolled_back(sandbox, brought):
    _path, config = brought
    kit = [("deployment", "kit-web"), ("deployment", "kit-worker")]
    good = _deploy(sandbox, config, "kit", "kit-v1", kit)
    for region in config.regions:
        settings = sandbox.get(config, region.name, "configmap", "kit-settings", "kit")
        assert settings["data"]["REGION"] == region.name
        assert settings["data"]["GREETING"] == "hello: {world} --- # not a comment"  # verbatim
        assert sandbox.get(config, region.name, "serviceaccount", "kit", "kit") is not None

    # An image whose worker never becomes ready, while its web tier does.
    broken = _image(config, "kit", broken_digest("kit-worker", worker_only=True))
    sandbox.push_image(config, broken.split("@")[1], app="kit")

    rolled_back = _results(sandbox, config, "kit", broken, "rolled_back")
    for region in config.regions:
        result = rolled_back[region.name]
        assert result["reason"] == PROGRESS_DEADLINE_EXCEEDED and result["rolled_back_to"] == good
        record = sandbox.release_record(config, region.name, "kit")
        failed = record.find(result["release_id"])
        assert (failed.status, failed.reason) == ("failed", PROGRESS_DEADLINE_EXCEEDED)
        assert (record.current.image, record.current.status) == (good, "succeeded")
    _wait_for_workloads(sandbox, config, "kit", kit, good)


def test_a_statefulset_is_watched_to_completion_and_a_stuck_one_fails_with_its_reason(sandbox, brought):
    _path, config = brought
    good = _deploy(sandbox, config, "ledger", "ledger-v1", [("statefulset", "ledger")])
    for region in config.regions:
        ledger = sandbox.get(config, region.name, "statefulset", "ledger", "ledger")
        assert ledger["status"]["readyReplicas"] == 2

    stuck = _image(config, "ledger", broken_digest("ledger-stuck"))
    sandbox.push_image(config, stuck.split("@")[1], app="ledger")

    rolled_back = _results(sandbox, config, "ledger", stuck, "rolled_back")
    for region in config.regions:
        result = rolled_back[region.name]
        assert result["reason"] == PROGRESS_DEADLINE_EXCEEDED and result["rolled_back_to"] == good
        failed = sandbox.release_record(config, region.name, "ledger").find(result["release_id"])
        assert (failed.status, failed.reason) == ("failed", PROGRESS_DEADLINE_EXCEEDED)
    _wait_for_workloads(sandbox, config, "ledger", [("statefulset", "ledger")], good)


def test_an_object_removed_from_the_directory_is_pruned_in_every_region(sandbox, brought, tmp_path):
    path, config = brought
    kit = [("deployment", "kit-web"), ("deployment", "kit-worker")]
    _deploy(sandbox, config, "kit", "kit-prune-v1", kit)
    # The next function version: the same config, its directory without worker.yaml.
    bundle = tmp_path / "bundle"
    shutil.copytree(REPO / "config" / "examples", bundle / "examples")
    shutil.copy(path, bundle / path.name)
    (bundle / "examples" / "kit" / "worker.yaml").unlink()
    image = _image(config, "kit", digest_for("kit-prune-v2"))

    for region in config.regions:
        request = {
            "version": 1,
            "release_id": f"prune-{region.name}",
            "app": "kit",
            "region": region.name,
            "kind": "deploy",
            "image": image,
            "trigger": {"type": "manual", "event_id": f"prune-{region.name}", "requested_by": "test"},
            "issued_at": datetime.now(UTC).isoformat(),
        }
        function = f"{config.name}-deploy-{region.name}"
        sandbox.fresh_instance(config, function, config.deploy_topic(region.name), request, bundle=bundle / path.name)

    for region in config.regions:
        assert sandbox.get(config, region.name, "deployment", "kit-worker", "kit") is None, region.name
        web = sandbox.get(config, region.name, "deployment", "kit-web", "kit")
        assert web["spec"]["template"]["spec"]["containers"][0]["image"] == image
        record = sandbox.release_record(config, region.name, "kit")
        assert (record.current.image, record.current.status) == (image, "succeeded")
        assert "apps/v1/Deployment/kit-worker" not in record.inventory
        assert "apps/v1/Deployment/kit-web" in record.inventory


def _check_drift(sandbox, config, apps: list[str]) -> dict[str, Any]:
    event_id = sandbox.publish(config, config.topics.drift, {"version": 1, "apps": apps, "heal": False})
    return wait_until(
        lambda: next((r for r in sandbox.drift_reports(config) if r["trigger_event_id"] == event_id), None),
        90,
        f"the drift report for event {event_id}",
    )


def test_hand_edits_to_brought_objects_are_reported_with_their_field_paths(sandbox, brought):
    _path, config = brought
    _deploy(sandbox, config, "kit", "kit-drift", [("deployment", "kit-web"), ("deployment", "kit-worker")])
    _deploy(sandbox, config, "ledger", "ledger-drift", [("statefulset", "ledger")])
    region = "us-west1"
    sandbox.kubectl(config, region, "-n", "kit", "patch", "configmap", "kit-settings", "-p", '{"data":{"QUEUE":"x"}}')
    sandbox.kubectl(
        config, region, "-n", "ledger", "patch", "service", "ledger", "--type=json",
        "-p", '[{"op":"replace","path":"/spec/ports/0/port","value":7001}]',
    )  # fmt: skip

    report = _check_drift(sandbox, config, ["kit", "ledger"])

    found = {
        (r["app"], d["object"], d["path"]): d
        for r in report["regions"]
        if r["region"] == region
        for d in r["differences"]
    }
    assert found[("kit", "ConfigMap/kit/kit-settings", "data.QUEUE")]["expected"] == "orders"
    assert found[("kit", "ConfigMap/kit/kit-settings", "data.QUEUE")]["live"] == "x"
    port = found[("ledger", "Service/ledger/ledger", "spec.ports[name=peer].port")]
    assert (port["expected"], port["live"]) == (7000, 7001)
    others = [r for r in report["regions"] if r["region"] != region]
    assert {r["status"] for r in others} == {"in_sync"}, others


def test_a_kustomize_app_runs_each_regions_overlay(sandbox, brought):
    _path, config = brought
    image = _deploy(sandbox, config, "storefront", "storefront-v1", [("deployment", "storefront")])
    for region in config.regions:
        deployment = sandbox.get(config, region.name, "deployment", "storefront", "storefront")
        # The overlay's replica count (Europe's is larger), and its own generated settings.
        assert deployment["spec"]["replicas"] == (3 if region.name == "europe-west1" else 2)
        [settings] = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        generated = sandbox.get(config, region.name, "configmap", settings["configMapRef"]["name"], "storefront")
        assert generated["data"] == {"REGION": region.name, "THEME": "light"}
        record = sandbox.release_record(config, region.name, "storefront")
        assert (record.current.image, record.current.status) == (image, "succeeded")
