"""Notifications, pure: which webhooks get what, the Slack blocks and the JSON body, the
signature a receiver verifies, the delivery id it dedupes on, and the config rules."""

from __future__ import annotations

import hashlib
import hmac
import json
import typing
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.config import Config
from shared.contracts import DeployStatus
from shared.errors import ConfigError, InvalidMessage
from shared.flows.drift import RegionStatus
from shared.notification_kinds import EventKind, NotificationStatus
from shared.notify import Notification, PubSubMessage, notifications_of, webhooks_for
from shared.topology import dead_letter_topic_for, functions_of
from shared.webhook_requests import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, build_request
from tests.core.builders import T0, build_config, changed, config_data, ref

KEY = "0f" * 32
WEBHOOKS = [
    {
        "name": "chat",
        "kind": "slack",
        "url_secret": "chat-url",
        "filters": {"statuses": ["failed", "rolled_back", "drifted", "dead_lettered"]},
    },
    {"name": "audit", "kind": "json", "url_secret": "audit-url", "signing_secret": "audit-key"},
    {
        "name": "worker-team",
        "kind": "json",
        "url_secret": "worker-url",
        "signing_secret": "audit-key",
        "filters": {"apps": ["worker"]},
    },
]


def _config(webhooks: list[dict[str, Any]] | None = None) -> Config:
    return build_config(
        changed(config_data(worker=True), "notifications", {"webhooks": WEBHOOKS if webhooks is None else webhooks})
    )


def _message(topic: str, data: dict[str, Any] | None, attributes: dict[str, str] | None = None) -> PubSubMessage:
    return PubSubMessage(topic, "1001", T0, data, attributes or {})


def _result(status: str = "failed", app: str = "shop", region: str = "us-west1", **extra: Any) -> dict[str, Any]:
    return {
        "version": 1, "release_id": "6ec128e2-2f1c0a9b7d", "app": app, "region": region, "kind": "deploy",
        "status": status, "reason": "ProgressDeadlineExceeded", "message": "rollout <stalled> & failed",
        "image": ref("v2"), "trigger": {"type": "push", "event_id": "4711"},
        "issued_at": "2026-03-01T12:00:00Z", "finished_at": "2026-03-01T12:05:00Z", **extra,
    }  # fmt: skip


def _one(config: Config, message: PubSubMessage) -> Notification:
    [notification] = notifications_of(config, message)
    return notification


# --- the vocabulary ----------------------------------------------------------------------


def test_every_deploy_status_and_the_drift_status_can_be_filtered_on():
    statuses = {s.value for s in NotificationStatus}
    assert set(typing.get_args(DeployStatus)) <= statuses
    assert RegionStatus.DRIFTED.value in statuses


# --- config --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("webhook", "complaint"),
    [
        ({"name": "a", "kind": "json", "url_secret": "u"}, "a json webhook needs signing_secret"),
        ({"name": "a", "kind": "slack", "url_secret": "u", "signing_secret": "k"}, "applies to json webhooks only"),
        ({"name": "a", "kind": "json", "url_secret": "u", "signing_secret": "u"}, "must be two secrets"),
        ({"name": "a", "kind": "teams", "url_secret": "u"}, "notifications.webhooks[0].kind"),
        ({"name": "a", "kind": "slack", "url_secret": "u", "filters": {"statuses": ["broken"]}}, "statuses[0]"),
        ({"name": "a", "kind": "slack", "url_secret": "u", "filters": {"apps": ["nope"]}}, "no app named 'nope'"),
        ({"name": "a", "kind": "slack", "url_secret": "cloudflare-api-token"}, "is the Cloudflare token's"),
        ({"name": "a", "kind": "slack", "url_secret": "u", "filter": {}}, "filter: unknown key"),
    ],
)
def test_a_bad_webhook_is_refused_naming_what_is_wrong(webhook: dict[str, Any], complaint: str):
    with pytest.raises(ConfigError, match="notifications") as refused:
        _config([webhook])
    assert complaint in str(refused.value)


def test_webhook_names_are_unique():
    with pytest.raises(ConfigError, match=r"notifications\.webhooks: 'chat' appears twice"):
        _config([WEBHOOKS[0], WEBHOOKS[0]])


def test_notify_exists_only_with_webhooks_and_reads_exactly_their_secrets():
    assert not [f for f in functions_of(build_config()) if f.entry_point == "notify"]
    config = _config()
    [notify] = [f for f in functions_of(config) if f.entry_point == "notify"]
    topics = config.topics
    assert notify.topics == (topics.results, topics.drift_reports, topics.dead_letter)
    assert notify.access.secrets == ("chat-url", "audit-url", "audit-key", "worker-url")  # each once
    assert (notify.access.publishes, notify.access.clusters, notify.access.kube) == ((), (), ())


def test_only_the_dead_letter_topics_own_subscription_never_dead_letters():
    config = _config()
    assert dead_letter_topic_for(config, config.topics.dead_letter) is None
    assert dead_letter_topic_for(config, config.topics.results) == config.topics.dead_letter


# --- routing ------------------------------------------------------------------------------


def _routed(config: Config, notification: Notification) -> list[str]:
    return [w.name for w in webhooks_for(config, notification)]


def test_filters_pick_the_webhooks():
    config = _config()
    results = config.topics.results
    assert _routed(config, _one(config, _message(results, _result("failed")))) == ["chat", "audit"]
    assert _routed(config, _one(config, _message(results, _result("succeeded")))) == ["audit"]
    worker = _one(config, _message(results, _result("succeeded", app="worker", image=ref("v2", "x/y/worker"))))
    assert _routed(config, worker) == ["audit", "worker-team"]


def test_a_dead_letter_of_no_app_passes_every_apps_filter():
    config = _config()
    dead = _one(config, _message(config.topics.dead_letter, None))
    assert dead.app is None
    assert _routed(config, dead) == ["chat", "audit", "worker-team"]


# --- from messages ------------------------------------------------------------------------


def test_a_result_names_its_region_app_digest_status_and_reason():
    config = _config()
    n = _one(config, _message(config.topics.results, _result()))
    assert (n.kind, n.status, n.app, n.region, n.reason) == (
        EventKind.DEPLOY_RESULT,
        NotificationStatus.FAILED,
        "shop",
        "us-west1",
        "ProgressDeadlineExceeded",
    )
    assert n.digest == ref("v2").split("@")[1] and n.function == "geodeploy-deploy-us-west1"


def _report(**extra: Any) -> dict[str, Any]:
    region = {"app": "shop", "status": "drifted", "release": "r1", "image": ref("v1"), "healed": False}
    return {
        "version": 1, "checked_at": "2026-03-01T12:00:00+00:00", "heal": False, "drifted": True,
        "trigger_event_id": "5120",
        "regions": [
            {**region, "region": "us-west1", "differences": [{"object": "Service/shop/shop", "path": "spec.ports"}]},
            {**region, "region": "europe-west1", "status": "in_sync"},
            {**region, "region": "asia-east1", "status": "unreachable"},
        ],
        "cloudflare": {"differences": [{"object": "pool/shop-us-west1", "path": "description"}]},
        **extra,
    }  # fmt: skip


def test_a_drift_report_tells_each_drifted_region_and_cloudflare():
    config = _config()
    region, cloudflare = notifications_of(config, _message(config.topics.drift_reports, _report()))
    assert (region.region, region.status, region.reason, region.digest) == (
        "us-west1",
        NotificationStatus.DRIFTED,
        "not_healed",
        ref("v1").split("@")[1],
    )
    assert "Service/shop/shop spec.ports" in region.message and 'event_id="5120"' in region.log_filter
    assert (cloudflare.app, cloudflare.region, cloudflare.reason) == ("shop", None, "cloudflare_drifted")


@pytest.mark.parametrize(("heal", "healed", "reason"), [(True, True, "healed"), (True, False, "heal_failed")])
def test_a_drift_findings_reason_says_what_became_of_it(heal: bool, healed: bool, reason: str):
    config = _config()
    data = _report(heal=heal, cloudflare={"differences": []})
    data["regions"][0]["healed"] = healed
    assert _one(config, _message(config.topics.drift_reports, data)).reason == reason


def test_a_dead_letter_names_the_function_that_gave_up_even_when_unreadable():
    config = _config()
    attributes = {
        "CloudPubSubDeadLetterSourceSubscription": "geodeploy-deploy-us-west1--geodeploy-deploy-us-west1",
        "CloudPubSubDeadLetterSourceDeliveryCount": "5",
        "CloudPubSubDeadLetterSourceTopicPublishTime": "2026-03-01T11:59:00Z",
    }
    request = {"release_id": "6ec128e2-2f1c0a9b7d", "app": "shop", "region": "us-west1", "image": ref("v3")}
    n = _one(config, _message(config.topics.dead_letter, request, attributes))
    assert (n.status, n.reason, n.app, n.region, n.release) == (
        NotificationStatus.DEAD_LETTERED,
        "delivery_attempts_exhausted",
        "shop",
        "us-west1",
        "6ec128e2-2f1c0a9b7d",
    )
    assert n.function == "geodeploy-deploy-us-west1" and "5 attempts" in n.message
    assert n.time == datetime(2026, 3, 1, 11, 59, tzinfo=UTC)
    unreadable = _one(config, _message(config.topics.dead_letter, None, attributes))
    assert unreadable.app is None and "not a JSON object" in unreadable.message


@pytest.mark.parametrize(
    ("topic", "data", "reason"),
    [
        ("geodeploy-results", {"version": 1, "status": "failed"}, "invalid_message"),
        ("geodeploy-results", None, "not_json_object"),
        ("geodeploy-drift-reports", {"regions": []}, "invalid_message"),
        ("somewhere-else", {}, "unknown_topic"),
    ],
)
def test_a_message_that_cannot_be_read_is_invalid(topic: str, data: dict[str, Any] | None, reason: str):
    with pytest.raises(InvalidMessage) as rejected:
        notifications_of(_config(), _message(topic, data))
    assert rejected.value.reason == reason


# --- the requests -------------------------------------------------------------------------


def _request(webhook: str, data: dict[str, Any] | None = None, now: datetime = T0) -> Any:
    config = _config()
    hook = next(w for w in config.notifications.webhooks if w.name == webhook)
    n = _one(config, _message(config.topics.results, data or _result()))
    return build_request(config, hook, n, signing_key=KEY if hook.signing_secret else None, now=now)


def test_a_json_webhooks_body_is_signed_over_the_timestamp_and_the_body():
    request = _request("audit")
    timestamp = request.headers[TIMESTAMP_HEADER]
    assert timestamp == str(int(T0.timestamp()))
    mac = hmac.new(KEY.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256).hexdigest()
    assert request.headers[SIGNATURE_HEADER] == f"sha256={mac}"
    # Another timestamp is another signature: a replayed body with a fresh timestamp fails.
    assert (
        _request("audit", now=datetime(2026, 3, 1, 13, 0, tzinfo=UTC)).headers[SIGNATURE_HEADER]
        != (request.headers[SIGNATURE_HEADER])
    )


def test_the_json_body_has_every_documented_field():
    body = json.loads(_request("audit").body)
    assert body == {
        "version": 1,
        "delivery_id": body["delivery_id"],
        "kind": "deploy_result",
        "status": "failed",
        "reason": "ProgressDeadlineExceeded",
        "app": "shop",
        "region": "us-west1",
        "digest": ref("v2").split("@")[1],
        "image": ref("v2"),
        "release": "6ec128e2-2f1c0a9b7d",
        "message_id": "1001",
        "time": "2026-03-01T12:05:00Z",
        "message": "rollout <stalled> & failed",
        "logs_url": body["logs_url"],
    }
    assert body["logs_url"].startswith("https://console.cloud.google.com/logs/query;query=")
    assert "geodeploy-deploy-us-west1" in body["logs_url"] and "project=geo-test-project" in body["logs_url"]


def test_the_delivery_id_survives_retries_and_redeliveries_and_differs_per_webhook_and_region():
    first, again = _request("audit"), _request("audit", now=datetime(2026, 3, 2, tzinfo=UTC))
    assert first.headers[DELIVERY_HEADER] == again.headers[DELIVERY_HEADER] == json.loads(first.body)["delivery_id"]
    assert _request("chat").headers[DELIVERY_HEADER] != first.headers[DELIVERY_HEADER]
    other_region = _request("audit", _result(region="asia-east1"))
    assert other_region.headers[DELIVERY_HEADER] != first.headers[DELIVERY_HEADER]


def test_slack_gets_blocks_with_the_facts_and_a_link_to_the_logs_escaped():
    request = _request("chat")
    assert SIGNATURE_HEADER not in request.headers
    payload = json.loads(request.body)
    header, facts, detail, context = payload["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "geodeploy: deploy failed · shop · us-west1"},
    }
    shown = [f["text"] for f in facts["fields"]]
    assert shown == [
        "*App*\nshop",
        "*Region*\nus-west1",
        "*Status*\n`failed`",
        "*Reason*\n`ProgressDeadlineExceeded`",
        f"*Digest*\n`{ref('v2').split('@')[1]}`",
        "*Release*\n6ec128e2-2f1c0a9b7d",
    ]
    assert detail["text"]["text"] == "rollout &lt;stalled&gt; &amp; failed"  # Slack's markup characters
    assert context["elements"][0]["text"].startswith("<https://console.cloud.google.com/logs/query;query=")
    assert "|Logs in Cloud Logging>" in context["elements"][0]["text"]
    assert payload["text"] == "geodeploy: deploy failed · shop · us-west1: failed (ProgressDeadlineExceeded)"


def test_an_unsigned_json_request_is_refused():
    config = _config()
    hook = next(w for w in config.notifications.webhooks if w.name == "audit")
    n = _one(config, _message(config.topics.results, _result()))
    with pytest.raises(ValueError, match="no key"):
        build_request(config, hook, n, signing_key=None, now=T0)
