"""A release of an app that brings its own manifests applies every object, waits for
every Deployment, and prunes what an earlier release applied but this one no longer
renders, found through the release record's inventory (on the in-memory cluster)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from shared.adapters.release_store import ReleaseStore
from shared.contracts import DeployResult
from shared.errors import NotYet
from shared.flows.deploy import RegionDeployer
from shared.logs import BoundLogger
from tests.core.builders import build_sourced_config, deploy_request, ref
from tests.core.inmemory_kube import Gate, InMemoryCluster, InMemoryKube, no_gate

WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: __IMAGE__}]}
"""
WORKER = WEB.replace("web", "worker")
SETTINGS = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {QUEUE: orders}\n"


def deployer(
    files: dict[str, str], cluster: InMemoryCluster, results: list[DeployResult], gate: Gate = no_gate
) -> RegionDeployer:
    config = build_sourced_config({"directory": "app/"}, {f"app/{k}": v for k, v in files.items()})
    kube = InMemoryKube(cluster, field_manager=config.field_manager, gate=gate)
    return RegionDeployer(
        config=config,
        region=config.region("europe-west1"),
        kube=kube,  # type: ignore[arg-type]
        publish_result=results.append,
        log=BoundLogger(logging.getLogger("geodeploy.test"), {}),
        now=cluster.now,
        monotonic=cluster.monotonic,
    )


def deploy(d: RegionDeployer, seed: str, cluster: InMemoryCluster, issued_at: datetime | None = None) -> None:
    request = deploy_request(ref(seed), release_id=f"release-{seed}", issued_at=issued_at or cluster.now())
    while True:
        try:
            d.handle(request)
            return
        except NotYet:
            continue


def once_at(step: str, action: Callable[[], None], *, after: bool = False) -> Gate:
    """A gate that runs `action` once: before the call `step` (or before the call after it)."""
    state = {"seen": False, "done": False}

    def gate(name: str, _faultable: bool) -> None:
        if not state["done"] and (state["seen"] or (name == step and not after)):
            state["done"] = True
            action()
        state["seen"] = state["seen"] or name == step

    return gate


def image_of(cluster: InMemoryCluster, kind: str, name: str) -> str | None:
    obj = cluster.read(("apps/v1" if kind != "CronJob" else "batch/v1", kind, "shop", name))
    if obj is None:
        return None
    pod = obj["spec"]["jobTemplate"]["spec"]["template"] if kind == "CronJob" else obj["spec"]["template"]
    return str(pod["spec"]["containers"][0]["image"])


def test_both_deployments_roll_out_and_an_object_removed_from_the_directory_is_pruned():
    cluster, results = InMemoryCluster(), []
    full = deployer({"settings.yaml": SETTINGS, "web.yaml": WEB, "worker.yaml": WORKER}, cluster, results)
    deploy(full, "v1", cluster)
    assert results[-1].status == "succeeded"
    for name in ("web", "worker"):
        workload = cluster.read(("apps/v1", "Deployment", "shop", name))
        assert workload is not None and workload["spec"]["template"]["spec"]["containers"][0]["image"] == ref("v1")
    assert cluster.read(("v1", "ConfigMap", "shop", "settings")) is not None

    smaller = deployer({"web.yaml": WEB}, cluster, results)
    deploy(smaller, "v2", cluster)

    assert results[-1].status == "succeeded"
    assert cluster.read(("apps/v1", "Deployment", "shop", "worker")) is None
    assert cluster.read(("v1", "ConfigMap", "shop", "settings")) is None
    assert cluster.read(("apps/v1", "Deployment", "shop", "web")) is not None
    record, _ = ReleaseStore(smaller.kube, smaller.config.app("shop")).read()
    assert record.inventory == ("apps/v1/Deployment/web",)


def test_a_prune_never_deletes_what_a_newer_release_applied_meanwhile():
    # A (older, its config renders web only) prunes the worker; B (newer, a config that
    # still renders it) claims and applies the worker between A's read and A's delete.
    cluster, results = InMemoryCluster(), []
    both = {"web.yaml": WEB, "worker.yaml": WORKER}
    deploy(deployer(both, cluster, results), "v1", cluster)
    older = cluster.now()
    cluster.advance(5)
    newer = deployer(both, cluster, results)
    a = deployer({"web.yaml": WEB}, cluster, results, once_at("delete", lambda: deploy(newer, "v3", cluster)))

    deploy(a, "v2", cluster, issued_at=older)

    assert image_of(cluster, "Deployment", "worker") == ref("v3")
    record, _ = ReleaseStore(newer.kube, newer.config.app("shop")).read()
    assert record.current.release_id == "release-v3" and "apps/v1/Deployment/worker" in record.inventory


CRON = """\
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "@daily"
  jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: n, image: __IMAGE__}]}}}}
"""


def test_an_older_release_puts_back_no_object_once_a_newer_one_was_applied():
    # The CronJob comes before the Deployment: an older release's call that goes on after
    # a newer one rolled out must stop before its first write, not at the Deployment.
    cluster, results = InMemoryCluster(), []
    files = {"a-cron.yaml": CRON, "b-web.yaml": WEB}
    deploy(deployer(files, cluster, results), "v1", cluster)
    older = cluster.now()
    cluster.advance(5)
    newer = deployer(files, cluster, results)
    a = deployer(files, cluster, results, once_at("claim write", lambda: deploy(newer, "v3", cluster), after=True))

    deploy(a, "v2", cluster, issued_at=older)

    assert image_of(cluster, "CronJob", "nightly") == ref("v3")
    assert image_of(cluster, "Deployment", "web") == ref("v3")
    assert [r.status for r in results if r.release_id == "release-v2"] == ["superseded"]
