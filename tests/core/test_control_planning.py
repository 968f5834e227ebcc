"""A hand-published rollback or deploy becomes per-region requests, or is rejected whole
with a reason the operator can act on."""

from __future__ import annotations

import pytest

from shared.contracts import ControlMessage, DeployRequest
from shared.errors import InvalidMessage
from shared.flows.control import plan_control
from tests.core.builders import OTHER_REPO, SHOP_REPO, at, build_config, config_data, digest, ref

PUBLISHED = at(30)


def control(action="rollback", target="previous", **fields):
    return ControlMessage(version=1, action=action, app=fields.pop("app", "shop"), target=target, **fields)


def plan(message, config=None, event_id="ctl-1"):
    return plan_control(message, event_id=event_id, published_at=PUBLISHED, config=config or build_config())


def waves_config():
    return build_config(config_data(waves=True))


def rejection(message, config=None) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as caught:
        plan(message, config)
    return caught.value


# --- rollbacks ----------------------------------------------------------------------------------


def test_rollback_to_previous_goes_to_every_region_at_once_ignoring_waves():
    requests = plan(control(), waves_config())
    assert [r.region for r in requests] == ["europe-west1", "us-west1", "asia-east1"]
    for r in requests:
        assert r.kind == "rollback"
        assert r.image is None
        assert r.trigger.type == "rollback"
        assert r.issued_at == PUBLISHED
    assert len({r.release_id for r in requests}) == 1


def test_rollback_to_named_regions_only():
    requests = plan(control(regions=["asia-east1", "us-west1"]))
    assert [r.region for r in requests] == ["asia-east1", "us-west1"]


def test_a_bare_digest_target_means_the_apps_repository():
    dig = digest("good")
    requests = plan(control(target=dig))
    assert {r.image for r in requests} == {f"{SHOP_REPO}@{dig}"}


def test_a_target_with_surrounding_spaces_is_accepted():
    assert plan(control(target="  previous \n"))[0].image is None


def test_a_rollback_may_name_an_image_from_another_repository_the_region_decides():
    # A region only applies it if that image is in its history (see test_release_decisions).
    requests = plan(control(target=ref("hotfix", OTHER_REPO)))
    assert requests[0].image == ref("hotfix", OTHER_REPO)


def test_requested_by_is_carried_to_the_regions():
    requests = plan(control(requested_by="alice@example.com"))
    assert {r.trigger.requested_by for r in requests} == {"alice@example.com"}


# --- manual deploys --------------------------------------------------------------------------------


def test_a_manual_deploy_follows_the_waves():
    requests = plan(control("deploy", ref("v9")), waves_config())
    assert [r.region for r in requests] == ["europe-west1"]
    assert requests[0].kind == "deploy"
    assert requests[0].trigger.type == "manual"
    assert requests[0].image == ref("v9")


def test_a_manual_deploy_to_named_regions_goes_only_there():
    requests = plan(control("deploy", ref("v9"), regions=["us-west1"]), waves_config())
    assert [(r.region, r.wave) for r in requests] == [("us-west1", 2)]


# --- rejections ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (control(app="blog"), "unknown_app"),
        (control(regions=["us-east1"]), "unknown_region"),
        (control(regions=["europe-west1", "mars-north1"]), "unknown_region"),
        (control(target="yesterday"), "invalid_target"),
        (control(target="sha256:abc"), "invalid_target"),
        (control(target=f"{SHOP_REPO}:v1.0.0"), "invalid_target"),
        (control("deploy", "previous"), "deploy_needs_image"),
        (control("deploy", ref("v9", OTHER_REPO)), "image_not_allowed"),
    ],
    ids=["app", "region", "one-bad-region", "garbage", "short-digest", "tag", "deploy-previous", "foreign-deploy"],
)
def test_a_bad_control_message_is_rejected_with_a_reason(message, reason):
    assert rejection(message).reason == reason


def test_rejections_name_what_was_wrong():
    assert "'blog'" in rejection(control(app="blog")).detail
    assert "'mars-north1'" in rejection(control(regions=["mars-north1"])).detail
    assert "'yesterday'" in rejection(control(target="yesterday")).detail
    assert OTHER_REPO in rejection(control("deploy", ref("v9", OTHER_REPO))).detail


# --- release ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["previous", digest("good"), ref("good")])
def test_release_ids_are_stable_for_the_same_event(target):
    first = plan(control(target=target), event_id="ctl-7")
    again = plan(control(target=target), event_id="ctl-7")
    other = plan(control(target=target), event_id="ctl-8")
    assert first[0].release_id == again[0].release_id
    assert first[0].release_id != other[0].release_id


def test_requests_are_valid_deploy_requests_on_the_wire():
    for message in (control(), control("deploy", ref("v9"))):
        for request in plan(message):
            assert DeployRequest.model_validate_json(request.to_bytes()) == request


# --- found while writing these tests --------------------------------------------------------------


def test_a_region_named_twice_is_rejected_as_a_likely_typo():
    with pytest.raises(InvalidMessage) as error:
        plan(control(regions=["us-west1", "us-west1"]))
    assert error.value.reason == "duplicate_region"
