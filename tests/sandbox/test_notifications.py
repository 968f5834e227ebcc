"""Notifications reach people: a deploy, an automatic rollback, a drift finding and a
dead-lettered message each reach the webhook receiver with their region, app, digest,
status and reason; the JSON webhook's signature verifies with the key kept in Secret
Manager; and a receiver that keeps failing never fails a deploy.

The signature is checked here the way a receiver would check it, from the documented
scheme (docs/messages.md), not with geodeploy's own code."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from sandbox.driver import digest_for, wait_until
from sandbox.kwok_stages import broken_digest

pytestmark = pytest.mark.sandbox

AUDIT, CHAT = "audit", "team-chat"  # config/sandbox.yaml: the json webhook, the slack one


def _header(request: dict[str, Any], name: str) -> str | None:
    return next((v for k, v in request["headers"].items() if k.lower() == name.lower()), None)


def _verified(sandbox, config, request: dict[str, Any]) -> dict[str, Any]:
    """The JSON webhook's body, once its signature verified: HMAC-SHA256, keyed with the
    signing secret's value, of "<timestamp>.<body>", sent as `sha256=<hex>`."""
    webhook = next(w for w in config.notifications.webhooks if w.name == AUDIT)
    key = sandbox.secret_value(config, webhook.signing_secret)
    timestamp = _header(request, "X-Geodeploy-Timestamp")
    assert timestamp and timestamp.isdigit()
    signed = f"{timestamp}.".encode() + request["body"].encode()
    expected = "sha256=" + hmac.new(key.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(_header(request, "X-Geodeploy-Signature") or "", expected), "bad signature"
    body = json.loads(request["body"])
    assert _header(request, "X-Geodeploy-Delivery") == body["delivery_id"]
    assert key not in request["body"]
    return body


def _audit(sandbox, config, match, count: int, what: str, timeout: float = 120) -> list[dict[str, Any]]:
    """The first `count` verified JSON notifications that `match`, by region."""

    def found() -> list[dict[str, Any]]:
        bodies = [_verified(sandbox, config, r) for r in sandbox.webhook_requests(config, AUDIT)]
        matching = {b["delivery_id"]: b for b in bodies if match(b)}  # a retried post is one notification
        return list(matching.values()) if len(matching) >= count else []

    return wait_until(found, timeout, what)


def _each_region(sandbox, config, digest: str, status: str, what: str, timeout: float = 120) -> list[dict[str, Any]]:
    """One verified JSON notification per region of the config, of that digest and status."""
    return _audit(
        sandbox, config, lambda b: b["digest"] == digest and b["status"] == status, len(config.regions), what, timeout
    )


def _slack(sandbox, config, *shown: str, what: str, timeout: float = 120) -> list[dict[str, Any]]:
    """The chat's Slack payloads whose blocks show every one of `shown`."""

    def found() -> list[dict[str, Any]]:
        payloads = [json.loads(r["body"]) for r in sandbox.webhook_requests(config, CHAT)]
        return [p for p in payloads if all(text in _slack_text(p) for text in shown)]

    return wait_until(found, timeout, what)


def _slack_text(payload: dict[str, Any]) -> str:
    """Everything the blocks show, as one string."""
    return json.dumps(payload["blocks"])


def _push(sandbox, config, digest: str, tag: str) -> str:
    image = f"{config.apps[0].repository}@{digest}"
    sandbox.push_image(config, digest, tag=tag)
    return image


def _published(sandbox, config, image: str, status: str, region: str) -> dict[str, Any]:
    """The deploy result that region published about the image, with that status."""
    return sandbox.wait_for_result(
        config,
        lambda r: (r.get("image"), r["status"], r["region"]) == (image, status, region),
        what=f"{region}'s {status} result",
    )


def _notify_log(sandbox, path, config, **fields) -> list[dict[str, Any]]:
    events = sandbox.log_events(path, f"{config.name}-notify")
    return [e for e in events if all(e.get(k) == v for k, v in fields.items())]


def test_a_deploy_reaches_the_json_webhook_signed_and_the_chat_only_hears_what_needs_a_person(sandbox, shop):
    path, config = shop
    digest = digest_for("shop-notify-deploy")
    image = _push(sandbox, config, digest, "v30.0.0")
    regions = [r.name for r in config.regions]
    sandbox.wait_for_image(config, regions, image)

    found = _each_region(sandbox, config, digest, "succeeded", "a signed notification of each region's success")
    assert sorted(b["region"] for b in found) == sorted(regions)
    for body in found:
        result = _published(sandbox, config, image, "succeeded", body["region"])
        assert (body["kind"], body["app"], body["image"]) == ("deploy_result", "shop", image)
        assert (body["status"], body["reason"], body["release"]) == (
            "succeeded",
            result["reason"],
            result["release_id"],
        )
        assert body["release"] and body["message_id"] and body["time"].endswith("Z")
        assert f"geodeploy-deploy-{body['region']}" in body["logs_url"]
        assert body["logs_url"].startswith("https://console.cloud.google.com/logs/query;query=")
    # The chat's filter takes failures only: the notify function never posted it a success.
    for body in found:
        handled = lambda b=body: _notify_log(sandbox, path, config, event_id=b["message_id"], event="event_handled")  # noqa: E731
        wait_until(handled, 30, "the notify function done with the result")
        delivered = _notify_log(sandbox, path, config, event_id=body["message_id"], event="notification_delivered")
        assert [e["webhook"] for e in delivered] == [AUDIT]


def test_an_automatic_rollback_reaches_both_webhooks(sandbox, shop):
    _path, config = shop
    regions = [r.name for r in config.regions]
    good = _push(sandbox, config, digest_for("shop-notify-good"), "v31.0.0")
    sandbox.wait_for_image(config, regions, good)
    bad_digest = broken_digest("shop-notify")
    bad = _push(sandbox, config, bad_digest, "v31.1.0")

    rolled_back = _each_region(
        sandbox, config, bad_digest, "rolled_back", "a notification of each region's rollback", timeout=180
    )
    published = {region: _published(sandbox, config, bad, "rolled_back", region) for region in regions}
    for body in rolled_back:
        result = published[body["region"]]
        assert (body["app"], body["image"], body["reason"]) == ("shop", bad, result["reason"])
        assert body["release"] == result["release_id"]
    sandbox.wait_for_image(config, regions, good, timeout=60)

    # The chat gets Slack blocks naming region, app, digest, status and reason, with a link to the logs.
    for region in regions:
        [payload] = _slack(
            sandbox, config, bad_digest, region, "`rolled_back`", what=f"the chat's message about {region}'s rollback"
        )
        shown = _slack_text(payload)
        assert "shop" in shown and f"`{published[region]['reason']}`" in shown
        assert payload["text"] and payload["blocks"][0]["type"] == "header"
        assert "https://console.cloud.google.com/logs/query;query=" in shown and "|Logs in Cloud Logging>" in shown


def test_a_drift_finding_reaches_both_webhooks(sandbox, shop):
    _path, config = shop
    region = "us-west1"
    digest = digest_for("shop-notify-drift")
    image = _push(sandbox, config, digest, "v32.0.0")
    sandbox.wait_for_image(config, [r.name for r in config.regions], image)
    sandbox.kubectl(
        config,
        region,
        *("-n", "shop", "patch", "deployment", "shop", "--type=json", "-p"),
        '[{"op":"replace","path":"/spec/template/spec/containers/0/readinessProbe/periodSeconds","value":9}]',
    )

    check = sandbox.publish(config, config.topics.drift, {"version": 1, "apps": ["shop"], "regions": [region]})

    [finding] = _audit(
        sandbox,
        config,
        lambda b: b["kind"] == "drift_finding" and b["digest"] == digest and b["region"] == region,
        1,
        "the drift finding",
    )
    assert (finding["app"], finding["status"], finding["reason"], finding["image"]) == (
        "shop",
        "drifted",
        "not_healed",
        image,
    )
    assert "readinessProbe.periodSeconds" in finding["message"]
    assert "check-drift" in finding["logs_url"] and check in finding["logs_url"]
    [payload] = _slack(sandbox, config, digest, "`drifted`", what="the chat's drift message")
    assert region in _slack_text(payload) and "`not_healed`" in _slack_text(payload)

    # Healed: told too, with the reason saying so.
    sandbox.publish(config, config.topics.drift, {"version": 1, "apps": ["shop"], "regions": [region], "heal": True})
    _audit(
        sandbox,
        config,
        lambda b: b["kind"] == "drift_finding" and b["digest"] == digest and b["reason"] == "healed",
        1,
        "the healed drift finding",
    )


def test_a_dead_lettered_message_reaches_both_webhooks(sandbox, shop):
    path, config = shop
    function = f"{config.name}-on-control"
    digest = digest_for("shop-notify-dead-letter")
    target = f"{config.apps[0].repository}@{digest}"
    # on-control is down: every delivery of the message fails, and after the fifth
    # Pub/Sub moves it to the dead-letter topic.
    sandbox.down_function(path, function)
    try:
        sandbox.publish(
            config,
            config.topics.control,
            {"version": 1, "action": "rollback", "app": "shop", "target": target, "requested_by": "notify-test"},
        )
        [dead] = _audit(
            sandbox,
            config,
            lambda b: b["kind"] == "dead_letter" and b["digest"] == digest,
            1,
            "the dead letter's notification",
            timeout=180,
        )
    finally:
        sandbox.restart_function(path, function)
    assert (dead["status"], dead["reason"], dead["app"], dead["image"], dead["region"]) == (
        "dead_lettered",
        "delivery_attempts_exhausted",
        "shop",
        target,
        None,
    )
    assert function in dead["message"] and config.topics.control in dead["message"] and "5 attempts" in dead["message"]
    assert function in dead["logs_url"]
    [payload] = _slack(sandbox, config, digest, "`dead_lettered`", what="the chat's message")
    assert "`delivery_attempts_exhausted`" in _slack_text(payload)


def test_a_failing_webhook_does_not_fail_the_deploy_and_notify_gives_up_after_its_attempts(sandbox, shop):
    path, config = shop
    regions = [r.name for r in config.regions]
    digest = digest_for("shop-notify-receiver-down")
    sandbox.set_webhook_answer(config, AUDIT, status=500)
    try:
        image = _push(sandbox, config, digest, "v33.0.0")
        sandbox.wait_for_image(config, regions, image)
        results = [
            sandbox.wait_for_result(
                config,
                lambda r, region=region: r.get("image") == image and r["region"] == region,
                what=f"{region}'s result",
            )
            for region in regions
        ]
        assert {r["region"]: r["status"] for r in results} == {region: "succeeded" for region in regions}

        def gave_up() -> list[dict[str, Any]]:
            failed = [
                e
                for e in _notify_log(sandbox, path, config, event="notification_failed", webhook=AUDIT)
                if e.get("region") in regions and e.get("status") == "succeeded"
            ]
            ids = {b["delivery_id"] for b in _bodies(sandbox, config, digest)}
            return [e for e in failed if e.get("delivery_id") in ids]

        failures = wait_until(lambda: gave_up() if len(gave_up()) >= len(regions) else [], 120, "notify giving up")
    finally:
        sandbox.set_webhook_answer(config, AUDIT, status=200)
    for failure in failures:
        assert (failure["reason"], failure["attempts"], failure["http_status"], failure["severity"]) == (
            "server_error",
            3,
            500,
            "WARNING",
        )
        # ... and acked: given up, not redelivered.
        handled = wait_until(
            lambda f=failure: _notify_log(sandbox, path, config, event="event_handled", event_id=f["event_id"]),
            30,
            "the notify function done with the result",
        )
        assert [e["outcome"] for e in handled] == ["acked"]
    posts: dict[str, int] = {}
    for body in _bodies(sandbox, config, digest):
        posts[body["delivery_id"]] = posts.get(body["delivery_id"], 0) + 1
    assert [posts[f["delivery_id"]] for f in failures] == [3] * len(failures), "three attempts, then given up"


def _bodies(sandbox, config, digest: str) -> list[dict[str, Any]]:
    """Every JSON post about the digest (retries included), each with a valid signature."""
    return [
        body
        for body in (_verified(sandbox, config, r) for r in sandbox.webhook_requests(config, AUDIT))
        if body["digest"] == digest
    ]
