"""One writer of Cloudflare: a drift check with healing on heals the clusters, then asks
reconcile_traffic for the Cloudflare heal (a TrafficHealRequest on the drift topic),
instead of reconciling traffic itself while reconcile_traffic handles the same tick.

The check runs for real (shared/flows/drift.py: release records, rendering, dry runs,
heals) on in-memory clusters where the real deploy flow released the app; only the
Kubernetes API and the publish are stand-ins."""

from __future__ import annotations

import json
import logging
from datetime import datetime

import pytest

from shared.config import Config, Region
from shared.contracts import (
    DriftCheckRequest,
    TrafficHealReason,
    TrafficHealRequest,
    parse_drift_topic_message,
)
from shared.errors import InvalidMessage
from shared.flows.deploy import RegionDeployer
from shared.flows.drift import RegionStatus, check_drift
from shared.logs import BoundLogger
from tests.core.builders import WORKER_REPO, build_config, config_data, deploy_request, ref
from tests.core.inmemory_kube import CLOCK_START, InMemoryCluster, InMemoryKube

CONFIG = build_config(config_data(worker=True))  # shop is steered by Cloudflare, worker is not
GOOD = {"shop": ref("v1"), "worker": ref("v1", WORKER_REPO)}
HAND_PICKED = {"shop": ref("hand-picked"), "worker": ref("hand-picked", WORKER_REPO)}
LOG = BoundLogger(logging.getLogger("geodeploy.test"), {})


class Regions:
    """Every region of CONFIG as an in-memory cluster, with each app released by the real
    deploy flow."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.clusters = {r.name: InMemoryCluster() for r in config.regions}
        for region in config.regions:
            for app in config.apps:
                self.release(region.name, app.name, GOOD[app.name], f"{app.name}-v1-release")

    def release(
        self, region_name: str, app: str, image: str, release_id: str, issued_at: datetime | None = None
    ) -> None:
        """Releases `image` of `app` in the region with the real deploy flow."""
        region = self.config.region(region_name)
        cluster = self.clusters[region_name]
        request = deploy_request(image, app=app, region=region_name, release_id=release_id, issued_at=issued_at)
        RegionDeployer(
            config=self.config,
            region=region,
            kube=self.connect(region),  # type: ignore[arg-type]
            publish_result=lambda _result: None,
            log=LOG,
            now=cluster.now,
            monotonic=cluster.monotonic,
        ).handle(request)
        assert self.running(region_name, app) == image

    def connect(self, region: Region) -> InMemoryKube:
        return InMemoryKube(self.clusters[region.name], field_manager=self.config.field_manager, name=region.name)

    def hand_edit(self, region: str, app: str) -> None:
        """`kubectl set image`: someone else's write of the Deployment's image."""
        kube = InMemoryKube(self.clusters[region], field_manager="kubectl", name=region)
        namespace = self.config.app(app).namespace
        path = "/spec/template/spec/containers/0/image"
        kube.json_patch(
            "apps/v1", "Deployment", app, namespace, [{"op": "replace", "path": path, "value": HAND_PICKED[app]}]
        )

    def running(self, region: str, app: str) -> str:
        deployment = self.clusters[region].read(("apps/v1", "Deployment", self.config.app(app).namespace, app))
        assert deployment is not None
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


class HealRequests:
    """check_drift's way to reach reconcile_traffic; notes what us-west1's shop ran when asked."""

    def __init__(self, regions: Regions) -> None:
        self.regions = regions
        self.sent: list[tuple[list[TrafficHealReason], str]] = []

    def __call__(self, reasons: list[TrafficHealReason]) -> None:
        self.sent.append((list(reasons), self.regions.running("us-west1", "shop")))


def run_check(regions: Regions, heal: bool, **scope: list[str]) -> tuple[object, HealRequests]:
    asked = HealRequests(regions)
    report = check_drift(
        regions.config,
        connect=regions.connect,  # type: ignore[arg-type]
        cloudflare=None,  # nothing in the fast tier answers as Cloudflare: its differences are the sandbox's to show
        heal=heal,
        now=CLOCK_START,
        log=LOG,
        request_traffic_heal=asked,
        **scope,  # type: ignore[arg-type]
    )
    return report, asked


@pytest.fixture
def regions() -> Regions:
    return Regions(CONFIG)


def test_a_heal_asks_reconcile_traffic_for_cloudflare_once_the_region_is_healed(regions):
    regions.hand_edit("us-west1", "shop")

    report, asked = run_check(regions, heal=True)

    us = next(r for r in report.regions if (r.app, r.region) == ("shop", "us-west1"))
    assert us.status is RegionStatus.DRIFTED and us.healed
    # Asked once, and only after the heal: the reconcile it triggers reads the healed region.
    assert asked.sent == [([TrafficHealReason.CLUSTERS_HEALED], GOOD["shop"])]
    message = report.as_message()
    assert message["cloudflare"] == {"differences": [], "heal_requested": True}
    assert "healed" not in message["cloudflare"], "check_drift heals no Cloudflare object itself"


def test_without_healing_a_hand_edit_is_reported_and_no_heal_is_asked(regions):
    regions.hand_edit("us-west1", "shop")

    report, asked = run_check(regions, heal=False)

    us = next(r for r in report.regions if (r.app, r.region) == ("shop", "us-west1"))
    assert us.status is RegionStatus.DRIFTED and not us.healed
    assert regions.running("us-west1", "shop") == HAND_PICKED["shop"]
    assert asked.sent == []
    assert report.as_message()["cloudflare"]["heal_requested"] is False


def test_nothing_to_heal_asks_for_nothing(regions):
    report, asked = run_check(regions, heal=True)

    assert {r.status for r in report.regions} == {RegionStatus.IN_SYNC}
    assert asked.sent == []


def test_healing_an_app_cloudflare_does_not_steer_asks_for_nothing(regions):
    regions.hand_edit("us-west1", "worker")

    report, asked = run_check(regions, heal=True, apps=["worker"])

    [us] = [r for r in report.regions if r.region == "us-west1"]
    assert (us.app, us.status, us.healed) == ("worker", RegionStatus.DRIFTED, True)
    assert regions.running("us-west1", "worker") == GOOD["worker"]
    assert asked.sent == [], "the worker's health does not steer any pool"


# --- the heal request on the drift topic --------------------------------------------------------


def test_the_heal_request_travels_on_the_drift_topic_beside_the_schedulers_request():
    sent = TrafficHealRequest(
        trigger_event_id="5120", reasons=[TrafficHealReason.CLUSTERS_HEALED, TrafficHealReason.CLOUDFLARE_DRIFTED]
    )
    wire = json.loads(sent.to_bytes())
    assert wire == {
        "version": 1,
        "kind": "heal_traffic",
        "trigger_event_id": "5120",
        "reasons": ["clusters_healed", "cloudflare_drifted"],
    }
    assert parse_drift_topic_message(wire) == sent
    assert parse_drift_topic_message({"version": 1}) == DriftCheckRequest()
    assert parse_drift_topic_message({"version": 1, "heal": True}) == DriftCheckRequest(heal=True)


@pytest.mark.parametrize(
    "data, field",
    [
        ({"version": 1, "kind": "heal_traffic", "trigger_event_id": "1", "reasons": []}, "reasons"),
        ({"version": 1, "kind": "heal_traffic", "trigger_event_id": "1", "reasons": ["because"]}, "reasons"),
        ({"version": 1, "kind": "heal_traffic", "reasons": ["clusters_healed"]}, "trigger_event_id"),
        ({"version": 1, "kind": "heal", "trigger_event_id": "1", "reasons": ["clusters_healed"]}, "kind"),
        ({"version": 1, "kind": "heal_traffic", "trigger_event_id": "1", "reasons": ["clusters_healed"], "x": 1}, "x"),
    ],
)
def test_a_malformed_heal_request_is_rejected_naming_the_field(data, field):
    with pytest.raises(InvalidMessage) as caught:
        parse_drift_topic_message(data)
    assert caught.value.reason == "invalid_message"
    assert f"TrafficHealRequest: {field}" in caught.value.detail
