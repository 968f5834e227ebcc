"""A release of an app that brings its own manifests applies every object, waits for
every Deployment, and prunes what an earlier release applied but this one no longer
renders, found through the release record's inventory (on the in-memory cluster)."""

from __future__ import annotations

import logging

from shared.adapters.release_store import ReleaseStore
from shared.contracts import DeployResult
from shared.errors import NotYet
from shared.flows.deploy import RegionDeployer
from shared.logs import BoundLogger
from tests.core.builders import build_sourced_config, deploy_request, ref
from tests.core.inmemory_kube import InMemoryCluster, InMemoryKube

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


def deployer(files: dict[str, str], cluster: InMemoryCluster, results: list[DeployResult]) -> RegionDeployer:
    config = build_sourced_config({"directory": "app/"}, {f"app/{k}": v for k, v in files.items()})
    kube = InMemoryKube(cluster, field_manager=config.field_manager)
    return RegionDeployer(
        config=config,
        region=config.region("europe-west1"),
        kube=kube,  # type: ignore[arg-type]
        publish_result=results.append,
        log=BoundLogger(logging.getLogger("geodeploy.test"), {}),
        now=cluster.now,
        monotonic=cluster.monotonic,
    )


def deploy(d: RegionDeployer, seed: str, cluster: InMemoryCluster) -> None:
    request = deploy_request(ref(seed), release_id=f"release-{seed}", issued_at=cluster.now())
    while True:
        try:
            d.handle(request)
            return
        except NotYet:
            continue


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
