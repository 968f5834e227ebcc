"""What travels on the topics: decoded from the CloudEvent, validated field by field,
pinned by digest, and the same after a trip over the wire."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.contracts import (
    ArtifactRegistryNotification,
    ControlMessage,
    DeployRequest,
    DeployResult,
    DriftCheckRequest,
    ImageRef,
    decode_pubsub_data,
    parse_message,
    release_id_for,
    split_tag_reference,
)
from shared.errors import InvalidMessage, PermanentError
from tests.core.builders import SHOP_REPO, at, deploy_request, digest, image, pubsub_event_data, ref, trigger


def invalid(call, *args) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as caught:
        call(*args)
    return caught.value


# --- decoding the CloudEvent ---------------------------------------------------------------------


def test_decodes_the_data_functions_framework_builds_from_a_push():
    payload = {"version": 1, "action": "rollback", "app": "shop", "target": "previous"}
    assert decode_pubsub_data(pubsub_event_data(payload)) == payload


def test_decodes_the_eventarc_shape_with_its_extra_fields():
    body = base64.b64encode(b'{"version": 1}').decode()
    event = {
        "message": {
            "data": body,
            "attributes": {"k": "v"},
            "messageId": "1",
            "message_id": "1",
            "publishTime": "2026-03-01T12:00:00Z",
            "publish_time": "2026-03-01T12:00:00Z",
        },
        "subscription": "projects/p/subscriptions/eventarc-europe-west1-x",
    }
    assert decode_pubsub_data(event) == {"version": 1}


def test_utf8_text_in_the_message_survives():
    assert decode_pubsub_data(pubsub_event_data({"requested_by": "Zoë"})) == {"requested_by": "Zoë"}


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (None, "not_a_pubsub_event"),
        ("a string", "not_a_pubsub_event"),
        ({}, "not_a_pubsub_event"),
        ({"message": {}}, "not_a_pubsub_event"),
        ({"message": "data"}, "not_a_pubsub_event"),
        ({"message": {"data": "!!not base64!!"}}, "not_json"),
        ({"message": {"data": ""}}, "not_json"),  # the emulator sends "" for an empty message
        ({"message": {"data": None}}, "not_json"),
        (pubsub_event_data(None, raw=b"not json"), "not_json"),
        (pubsub_event_data(None, raw=b"\xff\xfe"), "not_json"),
        (pubsub_event_data([1, 2]), "not_json_object"),
        (pubsub_event_data("text"), "not_json_object"),
        (pubsub_event_data(None), "not_json_object"),
    ],
    ids=[
        "none",
        "str",
        "empty",
        "no-data",
        "message-str",
        "bad-b64",
        "empty-data",
        "null-data",
        "not-json",
        "bad-utf8",
        "array",
        "json-string",
        "json-null",
    ],
)
def test_a_message_that_is_not_a_json_object_is_invalid_with_a_reason(event, reason):
    error = invalid(decode_pubsub_data, event)
    assert error.reason == reason
    assert isinstance(error, PermanentError)  # acknowledged, not retried for a day


def test_message_data_that_is_not_a_string_is_invalid():
    assert invalid(decode_pubsub_data, {"message": {"data": 12345}}).reason == "not_json"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"version": 1, "apps": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b"}",
    ],
    ids=["arrays", "objects"],
)
def test_a_message_nested_too_deeply_to_decode_is_invalid_not_a_crash(raw):
    error = invalid(decode_pubsub_data, pubsub_event_data(None, raw=raw))
    assert error.reason == "too_deeply_nested"
    assert isinstance(error, PermanentError)  # acknowledged: every redelivery would fail the same way


def test_a_contract_whose_validation_recurses_too_deeply_is_invalid_not_a_crash():
    from pydantic import BaseModel, field_validator

    class Tree(BaseModel):
        """A contract with a Python validator that walks its input, as one could write."""

        branches: list[object]

        @field_validator("branches")
        @classmethod
        def _depth(cls, value: list[object]) -> list[object]:
            def depth(node: object) -> int:
                return 1 + max((depth(n) for n in node), default=0) if isinstance(node, list) else 0

            depth(value)
            return value

    nested: list[object] = []
    for _ in range(50_000):
        nested = [nested]
    error = invalid(parse_message, Tree, {"branches": nested})
    assert error.reason == "too_deeply_nested"


# --- validating contracts -------------------------------------------------------------------------


def request_data(**changes):
    data = json.loads(deploy_request(ref("v1")).to_bytes())
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_a_valid_request_parses():
    assert parse_message(DeployRequest, request_data()).image == ref("v1")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (request_data(release_id=None), "release_id"),
        (request_data(release_id="UPPER-case-id"), "release_id"),
        (request_data(release_id="short"), "release_id"),
        (request_data(kind="redeploy"), "kind"),
        (request_data(version=2), "version"),
        (request_data(wave=0), "wave"),
        (request_data(issued_at="yesterday"), "issued_at"),
        (request_data(trigger={"type": "push"}), "trigger.event_id"),
        (request_data(trigger={"type": "cron", "event_id": "e"}), "trigger.type"),
    ],
)
def test_parse_message_names_the_bad_field(data, field):
    error = invalid(parse_message, DeployRequest, data)
    assert error.reason == "invalid_message"
    assert error.detail.startswith("DeployRequest: ")
    assert f"{field}: " in error.detail


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (DeployRequest, request_data(relase_id="x"), "relase_id"),
        (DeployRequest, request_data(trigger={"type": "push", "event_id": "e", "tagg": "v1"}), "trigger.tagg"),
        (
            ControlMessage,
            {"version": 1, "action": "rollback", "app": "shop", "target": "previous", "region": "x"},
            "region",
        ),
        (DriftCheckRequest, {"version": 1, "heal_now": True}, "heal_now"),
    ],
)
def test_unknown_fields_are_rejected_in_our_contracts(model, data, field):
    assert f"{field}: unknown field" in invalid(parse_message, model, data).detail


def test_unknown_fields_are_tolerated_in_artifact_registry_notifications():
    note = parse_message(ArtifactRegistryNotification, {"action": "INSERT", "digest": ref("v1"), "new_field": 1})
    assert note.pinned_image() == image("v1")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"version": 1, "action": "undo", "app": "shop", "target": "previous"}, "action"),
        ({"version": 1, "action": "rollback", "app": "", "target": "previous"}, "app"),
        ({"version": 1, "action": "rollback", "app": "shop"}, "target"),
        ({"version": 1, "action": "rollback", "app": "shop", "target": "previous", "regions": []}, "regions"),
        ({"action": "rollback", "app": "shop", "target": "previous"}, "version"),
        ({"version": 1, "action": "promote", "app": "shop", "target": "r1"}, "wave"),
        ({"version": 1, "action": "promote", "app": "shop", "wave": 1}, "target"),
        ({"version": 1, "action": "rollback", "app": "shop", "target": "previous", "wave": 1}, "wave"),
    ],
)
def test_a_hand_written_control_message_is_checked(data, field):
    assert f"{field}: " in invalid(parse_message, ControlMessage, data).detail


def test_the_documented_rollback_message_parses():
    message = parse_message(ControlMessage, {"version": 1, "action": "rollback", "app": "shop", "target": "previous"})
    assert (message.action, message.target, message.regions) == ("rollback", "previous", None)


def test_a_promote_names_the_release_and_the_wave_whose_gate_it_opens():
    message = parse_message(
        ControlMessage, {"version": 1, "action": "promote", "app": "shop", "target": "r1", "wave": 2}
    )
    assert (message.action, message.target, message.wave) == ("promote", "r1", 2)


def test_the_scheduler_drift_message_is_just_a_version():
    check = parse_message(DriftCheckRequest, {"version": 1})
    assert (check.apps, check.regions, check.heal) == (None, None, None)


# --- issued_at and pinning -----------------------------------------------------------------------


def test_issued_at_needs_a_time_zone():
    error = invalid(parse_message, DeployRequest, request_data(issued_at="2026-03-01T12:00:00"))
    assert "issued_at" in error.detail
    assert "time zone" in error.detail


def test_issued_at_in_another_zone_is_the_same_instant_in_utc():
    parsed = parse_message(DeployRequest, request_data(issued_at="2026-03-01T14:00:00+02:00"))
    assert parsed.issued_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert parsed.issued_at.utcoffset() == timedelta(0)


def test_issued_at_with_z_is_utc():
    assert parse_message(DeployRequest, request_data(issued_at="2026-03-01T12:00:00Z")).issued_at == at(0)


def test_a_python_aware_datetime_is_accepted_and_normalized():
    tz = timezone(timedelta(hours=-7))
    request = deploy_request(ref("v1"), issued_at=datetime(2026, 3, 1, 5, 0, tzinfo=tz))
    assert request.issued_at == at(0)


@pytest.mark.parametrize(
    "bad",
    [
        f"{SHOP_REPO}:v1.0.0",
        f"{SHOP_REPO}@sha256:abc",
        f"{SHOP_REPO}@sha256:{'A' * 64}",
        f"{SHOP_REPO}@sha512:{'a' * 64}",
        f"{SHOP_REPO.upper()}@{digest('v1')}",
        digest("v1"),
        f"shop@{digest('v1')}",
    ],
)
def test_images_must_be_pinned_by_digest(bad):
    assert "image: " in invalid(parse_message, DeployRequest, request_data(image=bad)).detail
    with pytest.raises(ValueError):
        ImageRef.parse(bad)


def test_an_image_reference_splits_into_repository_and_digest():
    parsed = ImageRef.parse(f"localhost:5000/team/shop@{digest('v1')}")
    assert parsed.repository == "localhost:5000/team/shop"
    assert parsed.digest == digest("v1")
    assert parsed.reference == f"localhost:5000/team/shop@{digest('v1')}"
    assert parsed.short == digest("v1")[7:19]


@pytest.mark.parametrize(
    ("reference", "repository", "tag"),
    [
        (f"{SHOP_REPO}:v1.0.0", SHOP_REPO, "v1.0.0"),
        ("localhost:5000/a/b:v1", "localhost:5000/a/b", "v1"),
        ("localhost:5000/a/b:5000", "localhost:5000/a/b", "5000"),
        (
            "us-west1-docker.pkg.dev/my-project/my-repo/hello-world:1.1",
            "us-west1-docker.pkg.dev/my-project/my-repo/hello-world",
            "1.1",
        ),
    ],
)
def test_a_tag_is_what_follows_the_last_colon_after_the_last_slash(reference, repository, tag):
    assert split_tag_reference(reference) == (repository, tag)


@pytest.mark.parametrize("reference", ["localhost:5000/a/b", "v1.0.0", f"{SHOP_REPO}:-bad", f"{SHOP_REPO}:"])
def test_a_reference_without_a_valid_tag_is_not_a_tag(reference):
    with pytest.raises(ValueError):
        split_tag_reference(reference)


def test_a_notification_without_a_digest_pins_nothing():
    note = ArtifactRegistryNotification(action="DELETE", tag=f"{SHOP_REPO}:v1")
    assert note.pinned_image() is None
    assert note.tag_name() == "v1"


# --- on the wire -----------------------------------------------------------------------------------


def roundtrip(message):
    return parse_message(type(message), json.loads(message.to_bytes()))


def test_a_deploy_request_survives_the_wire():
    request = deploy_request(ref("v1"))
    assert roundtrip(request) == request


def test_a_rollback_to_previous_survives_the_wire_without_an_image():
    request = deploy_request(kind="rollback", release_id="previous-0123456789")
    assert "image" not in json.loads(request.to_bytes())
    assert roundtrip(request) == request


def test_a_deploy_result_survives_the_wire():
    result = DeployResult(
        release_id="rel-new-0001",
        app="shop",
        region="europe-west1",
        kind="deploy",
        status="rolled_back",
        reason="ProgressDeadlineExceeded",
        image=ref("bad"),
        trigger=trigger(tag="v2"),
        issued_at=at(0),
        rolled_back_to=ref("good"),
        manifest_hash="sha256:" + "1" * 64,
        finished_at=at(5),
    )
    assert roundtrip(result) == result


@pytest.mark.parametrize(
    "message",
    [
        ControlMessage(
            version=1, action="deploy", app="shop", target=ref("v1"), regions=["us-west1"], requested_by="alice"
        ),
        DriftCheckRequest(apps=["shop"], heal=True),
        DriftCheckRequest(),
    ],
)
def test_control_and_drift_messages_survive_the_wire(message):
    assert roundtrip(message) == message


def test_messages_carry_their_version():
    assert json.loads(deploy_request(ref("v1")).to_bytes())["version"] == 1
    assert json.loads(DriftCheckRequest().to_bytes()) == {"version": 1}


# --- release ids -------------------------------------------------------------------------------------


def test_a_release_id_is_stable_per_event_and_valid_on_the_wire():
    one = release_id_for("shop", image("v1"), "evt-1")
    assert one == release_id_for("shop", image("v1"), "evt-1")
    assert one != release_id_for("shop", image("v1"), "evt-2")
    assert one != release_id_for("shop", image("v2"), "evt-1")
    assert one != release_id_for("blog", image("v1"), "evt-1")
    assert one.startswith(image("v1").short[:8] + "-")
    deploy_request(ref("v1"), release_id=one)  # matches the DeployRequest pattern
