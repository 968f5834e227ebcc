"""An Artifact Registry push becomes one deploy request per first-wave region — or a
logged reason why it does not deploy."""

from __future__ import annotations

import pytest

from shared.contracts import ArtifactRegistryNotification, decode_pubsub_data, parse_message
from shared.flows.image_pushed import IgnoredPush, plan_push
from shared.releases import Action, decide
from tests.core.builders import (
    HASH,
    SHOP_REPO,
    at,
    build_config,
    changed,
    config_data,
    digest,
    pubsub_event_data,
    record,
    release,
    shipped_config,
)

PUBLISHED = at(0)
DIGEST = digest("v1")


def notification(action="INSERT", *, digest_ref=None, tag_ref=None, **extra):
    payload = {"action": action, **extra}
    if digest_ref:
        payload["digest"] = digest_ref
    if tag_ref:
        payload["tag"] = tag_ref
    return ArtifactRegistryNotification.model_validate(payload)


def plan(note, config=None, event_id="evt-1", published_at=PUBLISHED):
    return plan_push(note, event_id=event_id, published_at=published_at, config=config or build_config())


def pushed(tag="v1.0.0", repo=SHOP_REPO, dig=DIGEST):
    return notification(digest_ref=f"{repo}@{dig}", tag_ref=f"{repo}:{tag}" if tag else None)


# --- pushes that deploy ------------------------------------------------------------------------


def test_a_tagged_push_gives_one_request_per_region_of_the_first_wave():
    requests = plan(pushed("v1.0.0"))
    assert [r.region for r in requests] == ["europe-west1", "us-west1", "asia-east1"]
    assert {r.release_id for r in requests} == {requests[0].release_id}
    for r in requests:
        assert r.kind == "deploy"
        assert r.app == "shop"
        assert r.image == f"{SHOP_REPO}@{DIGEST}"
        assert r.issued_at == PUBLISHED
        assert (r.trigger.type, r.trigger.tag, r.trigger.event_id) == ("push", "v1.0.0", "evt-1")
        assert r.wave == 1


def test_with_waves_only_the_first_waves_regions_are_asked():
    requests = plan(pushed(), build_config(config_data(waves=True)))
    assert [r.region for r in requests] == ["europe-west1"]


def test_the_first_wave_is_the_lowest_wave_number_even_if_not_one():
    data = config_data(waves=True)
    for region, wave in zip(data["regions"], [3, 5, 3], strict=True):
        region["wave"] = wave
    requests = plan(pushed(), build_config(data))
    assert [(r.region, r.wave) for r in requests] == [("europe-west1", 3), ("asia-east1", 3)]


def test_a_digest_only_push_deploys_by_default():
    requests = plan(pushed(tag=None))
    assert len(requests) == 3
    assert requests[0].trigger.tag is None


def test_a_digest_only_push_is_ignored_when_the_app_needs_tags():
    config = build_config(changed(config_data(), "apps[0].deploy_untagged", False))
    outcome = plan(pushed(tag=None), config)
    assert isinstance(outcome, IgnoredPush)
    assert outcome.reason == "tag_filtered"
    assert "untagged" in outcome.detail


def test_the_same_event_always_gets_the_same_release_id():
    assert plan(pushed())[0].release_id == plan(pushed())[0].release_id
    assert plan(pushed(), event_id="evt-1")[0].release_id != plan(pushed(), event_id="evt-2")[0].release_id


def test_a_registry_port_is_not_mistaken_for_a_tag():
    repo = "localhost:5000/team/shop"
    config = build_config(changed(config_data(), "apps[0].repository", repo))
    requests = plan(pushed("v1", repo=repo), config)
    assert requests[0].image == f"{repo}@{DIGEST}"
    assert requests[0].trigger.tag == "v1"


def test_a_registry_port_without_a_tag_is_not_a_tag_either():
    repo = "localhost:5000/team/shop"
    config = build_config(changed(config_data(), "apps[0].repository", repo))
    outcome = plan(notification(digest_ref=f"{repo}@{DIGEST}", tag_ref=repo), config)
    assert isinstance(outcome, IgnoredPush)
    assert outcome.reason == "unparseable_reference"


# --- pushes that do not deploy -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("note", "reason"),
    [
        (notification("DELETE", tag_ref=f"{SHOP_REPO}:v1.0.0"), "not_an_insert"),
        (notification("DELETE", digest_ref=f"{SHOP_REPO}@{DIGEST}"), "not_an_insert"),
        (notification("UPDATE", digest_ref=f"{SHOP_REPO}@{DIGEST}"), "not_an_insert"),
        (notification(tag_ref=f"{SHOP_REPO}:v1.0.0"), "no_digest"),
        (pushed(repo="europe-docker.pkg.dev/geo-test-project/apps/blog"), "unknown_repository"),
        (notification(digest_ref=f"{SHOP_REPO}@sha256:6ec128e26cd5"), "unparseable_reference"),
        (notification(digest_ref=f"{SHOP_REPO}@{DIGEST}", tag_ref="v1.0.0"), "unparseable_reference"),
    ],
    ids=["delete-tag", "delete-digest", "other-action", "tag-only", "unknown-repo", "short-digest", "bare-tag"],
)
def test_pushes_that_do_not_deploy_say_why(note, reason):
    outcome = plan(note)
    assert isinstance(outcome, IgnoredPush)
    assert outcome.reason == reason
    assert outcome.detail


def test_an_unknown_repository_is_named_in_the_reason():
    outcome = plan(pushed(repo="europe-docker.pkg.dev/geo-test-project/apps/blog"))
    assert "europe-docker.pkg.dev/geo-test-project/apps/blog" in outcome.detail


@pytest.mark.parametrize("tag", ["latest", "v1.2.3-rc1", "dev-1234"])
def test_a_tag_failing_the_filter_is_ignored_and_the_reason_names_the_filter(tag):
    config = shipped_config("example")
    repo = config.app("image-charts").repository
    outcome = plan(pushed(tag, repo=repo), config)
    assert isinstance(outcome, IgnoredPush)
    assert outcome.reason == "tag_filtered"
    assert repr(tag) in outcome.detail
    assert f"the filter {config.app('image-charts').tag_filter}" in outcome.detail


def test_a_tag_passing_the_filter_deploys_the_first_wave_of_the_example():
    config = shipped_config("example")
    repo = config.app("image-charts").repository
    requests = plan(pushed("v2.3.4", repo=repo), config)
    assert [r.region for r in requests] == ["europe-west1"]


@pytest.mark.parametrize(
    ("tag", "deploys"),
    [("v2", True), ("v2.0", True), ("v2.0.0", True), ("stable", True), ("v2.0.0.0", False), ("latest", False)],
)
def test_the_sandbox_tag_filter(tag, deploys):
    config = shipped_config("sandbox")
    repo = config.app("shop").repository
    assert isinstance(plan(pushed(tag, repo=repo), config), list) is deploys


# --- one image under three tags: three plans, one release per region -------------------------------


def test_one_image_pushed_under_three_tags_plans_three_times_but_each_region_releases_it_once():
    plans = [
        plan(pushed(tag), event_id=f"evt-{n}", published_at=at(n)) for n, tag in enumerate(["v1", "v1.0", "stable"])
    ]
    assert len({p[0].image for p in plans}) == 1
    assert len({p[0].release_id for p in plans}) == 3
    for region_index in range(3):
        first, second, third = (p[region_index] for p in plans)
        assert decide(first, record(), SHOP_REPO, lambda _: HASH).action is Action.APPLY
        released = record(release(first.release_id, first.image, status="progressing", issued_at=first.issued_at))
        assert decide(second, released, SHOP_REPO, lambda _: HASH).action is Action.DUPLICATE
        assert decide(third, released, SHOP_REPO, lambda _: HASH).action is Action.DUPLICATE


# --- the payloads Artifact Registry publishes ----------------------------------------------------------

# From https://cloud.google.com/artifact-registry/docs/configure-notifications (research/gcp-event-formats-
# and-clients.md §1); the docs shorten the digest, so a full 64-hex digest stands in for it here.
AR_REPO = "us-west1-docker.pkg.dev/my-project/my-repo/hello-world"
AR_DIGEST = "sha256:6ec128e26cd5" + "0" * 52
AR_PAYLOADS = {
    "digest-only": {"action": "INSERT", "digest": f"{AR_REPO}@{AR_DIGEST}"},
    "digest-and-tag": {"action": "INSERT", "digest": f"{AR_REPO}@{AR_DIGEST}", "tag": f"{AR_REPO}:1.1"},
    "delete-tag": {"action": "DELETE", "tag": f"{AR_REPO}:1.1"},
}


def ar_config():
    data = changed(config_data(), "apps[0].repository", AR_REPO)
    return build_config(data)


@pytest.mark.parametrize(
    ("name", "regions", "tag"),
    [("digest-only", 3, None), ("digest-and-tag", 3, "1.1"), ("delete-tag", 0, None)],
)
def test_recorded_artifact_registry_payloads_parse_and_plan(name, regions, tag):
    data = decode_pubsub_data(pubsub_event_data(AR_PAYLOADS[name]))
    note = parse_message(ArtifactRegistryNotification, data)
    outcome = plan(note, ar_config())
    if regions:
        assert len(outcome) == regions
        assert outcome[0].image == f"{AR_REPO}@{AR_DIGEST}"
        assert outcome[0].trigger.tag == tag
    else:
        assert isinstance(outcome, IgnoredPush)
        assert outcome.reason == "not_an_insert"


def test_the_docs_literal_shortened_digest_is_ignored_not_crashed_on():
    note = ArtifactRegistryNotification.model_validate(
        {"action": "INSERT", "digest": f"{AR_REPO}@sha256:6ec128e26cd5..."}
    )
    outcome = plan(note, ar_config())
    assert isinstance(outcome, IgnoredPush)
    assert outcome.reason == "unparseable_reference"


def test_a_notification_with_fields_google_may_add_later_still_plans():
    note = ArtifactRegistryNotification.model_validate({**AR_PAYLOADS["digest-and-tag"], "package": "x", "v": 2})
    assert len(plan(note, ar_config())) == 3
