"""deploy_region checks a request where it is applied, whoever published it: only the
app's repository runs, a request dated ahead of the region's clock is refused, and no
message may carry strings longer than its contract's bounds. on_image_pushed refuses a
notification whose tag names another repository than its digest."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.pubsub import Publisher
from shared.adapters.release_store import ReleaseStore
from shared.contracts import (
    MAX_APPS_NAMED,
    MAX_EVENT_ID_LENGTH,
    MAX_IMAGE_REFERENCE_LENGTH,
    MAX_NAME_LENGTH,
    MAX_REASON_LENGTH,
    MAX_REGIONS_NAMED,
    MAX_REQUESTED_BY_LENGTH,
    MAX_RESULT_MESSAGE_LENGTH,
    MAX_TAG_LENGTH,
    ArtifactRegistryNotification,
    ControlMessage,
    DeployRequest,
    DeployResult,
    DriftCheckRequest,
    parse_message,
)
from shared.errors import InvalidMessage, NotYet, PermanentError
from shared.flows.deploy import ISSUED_IN_THE_FUTURE, MAX_ISSUED_AHEAD, RegionDeployer
from shared.flows.image_pushed import TAG_OF_ANOTHER_REPOSITORY, IgnoredPush, handle_image_pushed, plan_push
from shared.logs import BoundLogger
from shared.releases import IMAGE_NOT_ALLOWED, Action, decide
from tests.core.builders import (
    HASH,
    OTHER_REPO,
    SHOP_REPO,
    at,
    build_config,
    deploy_request,
    digest,
    record,
    ref,
    release,
    trigger,
)
from tests.core.inmemory_kube import InMemoryCluster, InMemoryKube, broken_image

CONFIG = build_config()
APP = CONFIG.app("shop")
REGION = CONFIG.region("europe-west1")
DEPLOYMENT_KEY = ("apps/v1", "Deployment", APP.namespace, APP.name)
LOG = BoundLogger(logging.getLogger("geodeploy.test"), {})


@dataclass
class OneRegion:
    """One region's in-memory API server and the results its deploy_region published."""

    cluster: InMemoryCluster = field(default_factory=InMemoryCluster)
    results: list[DeployResult] = field(default_factory=list)

    def deliver(self, request: DeployRequest, deliveries: int = 10) -> DeployResult:
        """Delivers `request` until a delivery acks (as Pub/Sub would); its last result."""
        for _ in range(deliveries):
            deployer = RegionDeployer(
                config=CONFIG,
                region=REGION,
                kube=InMemoryKube(self.cluster, field_manager=CONFIG.field_manager),  # type: ignore[arg-type]
                publish_result=self.results.append,
                log=LOG,
                now=self.cluster.now,
                monotonic=self.cluster.monotonic,
            )
            try:
                deployer.handle(request)
                break
            except NotYet:
                continue
            except PermanentError:  # acked by the entry point, after its rejected result
                break
        return self.results[-1]

    def running_image(self) -> str | None:
        deployment = self.cluster.read(DEPLOYMENT_KEY)
        return deployment["spec"]["template"]["spec"]["containers"][0]["image"] if deployment else None

    def record_version(self) -> str | None:
        return ReleaseStore(InMemoryKube(self.cluster), APP).read()[1]


# --- only the app's repository runs ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["deploy", "rollback"])
def test_a_request_for_an_image_of_another_repository_is_rejected_and_applies_nothing(kind):
    region = OneRegion()
    good = region.deliver(deploy_request(ref("v1"), release_id="rel-good-0001", issued_at=at(0)))
    assert good.status == "succeeded"
    version = region.record_version()

    miner = ref("miner", "evil.example/miner")
    result = region.deliver(deploy_request(miner, kind=kind, release_id="rel-miner-0001", issued_at=at(5)))

    assert (result.status, result.reason, result.image) == ("rejected", IMAGE_NOT_ALLOWED, miner)
    assert region.running_image() == ref("v1")
    assert region.record_version() == version  # nothing claimed, nothing written


def test_a_rollback_to_previous_whose_previous_release_is_foreign_is_rejected():
    # E.g. applied before requests were checked: "previous" must not bring it back.
    foreign = ref("miner", OTHER_REPO)
    rec = record(release("rel-current", ref("v2"), issued_at=at(0)), release("rel-foreign", foreign, issued_at=at(-5)))
    decision = decide(deploy_request(kind="rollback", release_id="previous-0001"), rec, SHOP_REPO, lambda _: HASH)
    # Skipped as a candidate: with no good release of the app's own before it, none is left.
    assert (decision.action, decision.reason) == (Action.REJECT, "no_previous_release")


def test_an_automatic_rollback_never_returns_to_a_foreign_image_the_history_holds():
    region = OneRegion()
    good = ref("v1")
    assert region.deliver(deploy_request(good, release_id="rel-good-0001", issued_at=at(-120))).status == "succeeded"
    # A release of another repository, recorded on top (e.g. before requests were checked).
    foreign = ref("miner", OTHER_REPO)
    store = ReleaseStore(InMemoryKube(region.cluster), APP)
    rec, version = store.read()
    store.write(rec.with_release(release("rel-foreign-01", foreign, issued_at=at(-60)), limit=10), version)
    bad = broken_image(SHOP_REPO, "bad")
    region.deliver(deploy_request(bad, release_id="rel-bad-00001", issued_at=region.cluster.now()))
    assert (region.results[-1].status, region.results[-1].rolled_back_to) == ("rolled_back", good)
    assert region.running_image() == good


def test_a_first_request_for_a_foreign_image_creates_nothing_in_the_region():
    region = OneRegion()
    result = region.deliver(deploy_request(ref("miner", OTHER_REPO)))
    assert (result.status, result.reason) == ("rejected", IMAGE_NOT_ALLOWED)
    assert region.cluster.read(DEPLOYMENT_KEY) is None
    assert region.record_version() is None


# --- issued_at cannot be far ahead of the region's clock --------------------------------------------


def test_a_request_dated_far_ahead_is_rejected_and_does_not_block_later_pushes():
    region = OneRegion()
    region.deliver(deploy_request(ref("v1"), release_id="rel-good-0001", issued_at=at(0)))
    version = region.record_version()

    year_9999 = datetime(9999, 12, 31, tzinfo=UTC)
    future = region.deliver(deploy_request(ref("v2"), release_id="rel-future-01", issued_at=year_9999))
    assert (future.status, future.reason) == ("rejected", ISSUED_IN_THE_FUTURE)
    assert region.record_version() == version
    assert region.running_image() == ref("v1")

    later = region.deliver(deploy_request(ref("v3"), release_id="rel-later-001", issued_at=region.cluster.now()))
    assert later.status == "succeeded"
    assert region.running_image() == ref("v3")


def test_the_bound_is_relative_to_the_handlers_clock():
    region = OneRegion()
    too_far = region.cluster.now() + MAX_ISSUED_AHEAD + timedelta(minutes=1)
    assert region.deliver(deploy_request(ref("v1"), issued_at=too_far)).reason == ISSUED_IN_THE_FUTURE


def test_an_hour_ahead_is_already_too_far():
    # "A few minutes" of clock skew, not a window in which one request can block pushes.
    region = OneRegion()
    hour_ahead = region.cluster.now() + timedelta(hours=1)
    assert region.deliver(deploy_request(ref("v1"), issued_at=hour_ahead)).reason == ISSUED_IN_THE_FUTURE


def test_a_request_a_little_ahead_of_the_clock_is_applied():
    # Publishers' clocks may be a little ahead of the region's: that is not an attack.
    region = OneRegion()
    skewed = region.cluster.now() + MAX_ISSUED_AHEAD / 2
    assert region.deliver(deploy_request(ref("v1"), issued_at=skewed)).status == "succeeded"


# --- strings have bounds -------------------------------------------------------------------------


def request_data(**changes):
    data = json.loads(deploy_request(ref("v1")).to_bytes())
    data.update(changes)
    return data


def a_trigger(**fields):
    return {"type": "push", "event_id": "evt-1", **fields}


LONG_REPOSITORY = "europe-docker.pkg.dev/" + "a" * MAX_IMAGE_REFERENCE_LENGTH


@pytest.mark.parametrize(
    ("data", "field", "bound"),
    [
        (request_data(trigger=a_trigger(requested_by="x" * 100_000)), "trigger.requested_by", MAX_REQUESTED_BY_LENGTH),
        (request_data(trigger=a_trigger(tag="v" * (MAX_TAG_LENGTH + 1))), "trigger.tag", MAX_TAG_LENGTH),
        (request_data(trigger=a_trigger(event_id="e" * 10_000)), "trigger.event_id", MAX_EVENT_ID_LENGTH),
        (request_data(app="a" * (MAX_NAME_LENGTH + 1)), "app", MAX_NAME_LENGTH),
        (request_data(region="r" * 10_000), "region", MAX_NAME_LENGTH),
        (request_data(image=f"{LONG_REPOSITORY}@{digest('v1')}"), "image", MAX_IMAGE_REFERENCE_LENGTH),
    ],
    ids=["requested_by", "tag", "event_id", "app", "region", "image"],
)
def test_a_deploy_request_with_an_oversized_string_is_invalid_naming_the_field(data, field, bound):
    with pytest.raises(InvalidMessage) as caught:
        parse_message(DeployRequest, data)
    # An InvalidMessage is a PermanentError: the entry point logs its reason and acks it.
    assert caught.value.reason == "invalid_message"
    assert f"{field}: String should have at most {bound} characters" in caught.value.detail


def test_strings_at_their_bounds_are_accepted():
    data = request_data(
        app="a" * MAX_NAME_LENGTH,
        trigger=a_trigger(
            event_id="e" * MAX_EVENT_ID_LENGTH, tag="v" * MAX_TAG_LENGTH, requested_by="é" * MAX_REQUESTED_BY_LENGTH
        ),
    )
    assert parse_message(DeployRequest, data).trigger.requested_by == "é" * MAX_REQUESTED_BY_LENGTH


def control_data(**changes):
    return {"version": 1, "action": "rollback", "app": "shop", "target": "previous", **changes}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (control_data(requested_by="x" * (MAX_REQUESTED_BY_LENGTH + 1)), "requested_by"),
        (control_data(target=f"{LONG_REPOSITORY}@{digest('v1')}"), "target"),
        (control_data(app="a" * 10_000), "app"),
        (control_data(regions=["r" * 10_000]), "regions.0"),
        (control_data(regions=["us-west1"] * (MAX_REGIONS_NAMED + 1)), "regions"),
    ],
    ids=["requested_by", "target", "app", "region", "regions"],
)
def test_a_control_message_with_an_oversized_value_is_invalid_naming_the_field(data, field):
    with pytest.raises(InvalidMessage) as caught:
        parse_message(ControlMessage, data)
    assert f"{field}: " in caught.value.detail


def result_data(**changes):
    result = DeployResult(
        release_id="rel-new-0001",
        app="shop",
        region="europe-west1",
        kind="deploy",
        status="failed",
        trigger=trigger(),
        issued_at=at(0),
        finished_at=at(1),
    )
    return {**json.loads(result.to_bytes()), **changes}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (result_data(reason="r" * (MAX_REASON_LENGTH + 1)), "reason"),
        (result_data(message="m" * (MAX_RESULT_MESSAGE_LENGTH + 1)), "message"),
        (result_data(trigger=a_trigger(requested_by="x" * 100_000)), "trigger.requested_by"),
    ],
    ids=["reason", "message", "requested_by"],
)
def test_a_deploy_result_with_an_oversized_string_is_invalid_naming_the_field(data, field):
    with pytest.raises(InvalidMessage) as caught:
        parse_message(DeployResult, data)
    assert f"{field}: " in caught.value.detail


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (result_data(issued_at="2026-01-01T00:00:00"), "issued_at"),
        (result_data(finished_at="2026-01-01T00:00:00"), "finished_at"),
        (result_data(issued_at="0001-01-01T00:00:00+01:00"), "issued_at"),
    ],
    ids=["naive-issued_at", "naive-finished_at", "before-the-calendar"],
)
def test_a_deploy_result_with_a_time_that_is_not_a_utc_instant_is_invalid(data, field):
    # The wave advance orders the next wave by issued_at: caught here, it is acked once.
    with pytest.raises(InvalidMessage) as caught:
        parse_message(DeployResult, data)
    assert f"{field}: " in caught.value.detail


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00"])
def test_a_request_dated_at_the_calendars_ends_is_invalid_not_an_unexpected_error(when):
    with pytest.raises(InvalidMessage) as caught:
        parse_message(DeployRequest, request_data(issued_at=when))
    assert "issued_at is out of range once converted to UTC" in caught.value.detail


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"version": 1, "apps": ["a" * 10_000]}, "apps.0"),
        ({"version": 1, "regions": ["r" * 10_000]}, "regions.0"),
        ({"version": 1, "apps": ["shop"] * (MAX_APPS_NAMED + 1)}, "apps"),
    ],
    ids=["app", "region", "apps"],
)
def test_a_drift_check_request_with_an_oversized_value_is_invalid(data, field):
    with pytest.raises(InvalidMessage) as caught:
        parse_message(DriftCheckRequest, data)
    assert f"{field}: " in caught.value.detail


@pytest.mark.parametrize("key", ["digest", "tag"])
def test_an_artifact_registry_notification_with_an_oversized_reference_is_invalid(key):
    with pytest.raises(InvalidMessage) as caught:
        parse_message(ArtifactRegistryNotification, {"action": "INSERT", key: f"{LONG_REPOSITORY}:v1"})
    assert f"{key}: " in caught.value.detail


# --- a tag names the digest's own repository ----------------------------------------------------------


def forged(tag_repository: str) -> ArtifactRegistryNotification:
    return ArtifactRegistryNotification(
        action="INSERT", digest=f"{SHOP_REPO}@{digest('v1')}", tag=f"{tag_repository}:v1.0.0"
    )


def test_a_push_whose_tag_names_another_repository_is_ignored_and_logged(caplog):
    config = build_config()
    with caplog.at_level(logging.INFO, logger="geodeploy"):
        outcome = handle_image_pushed(
            forged(OTHER_REPO),
            event_id="evt-1",
            published_at=at(0),
            config=config,
            publisher=Publisher(config.project),  # never asked to publish: nothing is sent
            log=LOG,
        )
    assert isinstance(outcome, IgnoredPush)
    assert outcome.reason == TAG_OF_ANOTHER_REPOSITORY
    assert OTHER_REPO in outcome.detail
    [logged] = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "push_ignored"]
    assert logged.fields["reason"] == TAG_OF_ANOTHER_REPOSITORY  # type: ignore[attr-defined]


def test_a_push_whose_tag_names_its_own_repository_deploys():
    requests = plan_push(forged(SHOP_REPO), event_id="evt-1", published_at=at(0), config=build_config())
    assert not isinstance(requests, IgnoredPush)
    assert requests[0].trigger.tag == "v1.0.0"
