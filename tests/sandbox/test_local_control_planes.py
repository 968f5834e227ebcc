"""The sandbox's regions are real Kubernetes control planes: Deployments progress through
the real controller-manager and scheduler onto kwok nodes, a broken image stalls into
ProgressDeadlineExceeded, and a stopped region stops answering while the others work."""

from __future__ import annotations

import json
import subprocess

import pytest

from sandbox.driver import digest_for, wait_until
from sandbox.kwok_stages import broken_digest

pytestmark = pytest.mark.sandbox


def _deployment(name: str, image: str, progress_deadline: int = 600) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "replicas": 2,
                "progressDeadlineSeconds": progress_deadline,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": image}]},
                },
            },
        }
    )


def _kubectl_apply(sandbox, config, region: str, manifest: str) -> None:
    cluster = sandbox.sandbox.clusters.clusters[config.region(region).cluster.name]
    subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "apply", "-f", "-"],
        input=manifest,
        text=True,
        check=True,
        capture_output=True,
    )


def _condition(sandbox, config, region: str, name: str, kind: str) -> dict | None:
    d = sandbox.get(config, region, "deployment", name, "default")
    return next((c for c in (d or {}).get("status", {}).get("conditions", []) if c["type"] == kind), None)


def test_a_deployment_becomes_available_in_two_regions(sandbox, shop):
    _, config = shop
    image = f"registry.example/probe@{digest_for('control-plane-probe')}"
    for region in ("europe-west1", "us-west1"):
        _kubectl_apply(sandbox, config, region, _deployment("probe", image))
    for region in ("europe-west1", "us-west1"):
        available = wait_until(
            lambda region=region: (
                (_condition(sandbox, config, region, "probe", "Available") or {}).get("status") == "True"
            ),
            60,
            f"probe Available in {region}",
        )
        assert available
        pods = json.loads(
            sandbox.kubectl(config, region, "-n", "default", "get", "pods", "-l", "app=probe", "-o", "json")
        )["items"]
        # The real scheduler bound them to kwok nodes, and kwok reported them Ready.
        assert len(pods) == 2 and all(p["spec"]["nodeName"].startswith("node-") for p in pods)
        assert all(p["status"]["phase"] == "Running" for p in pods)


def test_the_broken_image_never_becomes_ready(sandbox, shop):
    _, config = shop
    image = f"registry.example/probe@{broken_digest('probe')}"
    _kubectl_apply(sandbox, config, "europe-west1", _deployment("broken-probe", image, progress_deadline=5))
    progressing = wait_until(
        lambda: (
            (_condition(sandbox, config, "europe-west1", "broken-probe", "Progressing") or {}).get("reason")
            == "ProgressDeadlineExceeded"
        ),
        60,
        "ProgressDeadlineExceeded",
    )
    assert progressing
    pods = json.loads(
        sandbox.kubectl(config, "europe-west1", "-n", "default", "get", "pods", "-l", "app=broken-probe", "-o", "json")
    )["items"]
    assert pods and all(p["status"]["phase"] == "Running" for p in pods)
    assert not any(c["ready"] for p in pods for c in p["status"]["containerStatuses"])


def test_a_stopped_region_fails_while_the_others_keep_working(sandbox, shop):
    _, config = shop
    sandbox.stop_region(config, "asia-east1")
    try:
        with pytest.raises(subprocess.CalledProcessError) as failure:
            sandbox.kubectl(config, "asia-east1", "get", "namespaces", "--request-timeout=3s")
        assert "refused" in failure.value.stderr
        assert "default" in sandbox.kubectl(config, "europe-west1", "get", "namespaces")
        assert "default" in sandbox.kubectl(config, "us-west1", "get", "namespaces")
    finally:
        sandbox.start_region(config, "asia-east1")
    assert "default" in sandbox.kubectl(config, "asia-east1", "get", "namespaces")
