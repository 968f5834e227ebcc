"""A Cloudflare token secret that is missing or whose version is disabled is something an
operator fixes: reconcile_traffic must keep the event (a transient failure, redelivered,
naming the secret but never its value) and finish the job once the secret is readable.

A function instance keeps the token it read, so these tests run a reconcile_traffic
instance of their own that has not read its secret yet: functions-framework serving
main.py, pushed to by the emulator, with a config of its own (its own topics, secret,
load balancer and pools) on the sandbox's clusters and stand-ins.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.driver import digest_for, wait_until
from sandbox.emulator import delete_subscription, ensure_push_subscription, ensure_topic, publish
from sandbox.functions_host import FunctionsHost, FunctionSpec
from shared.config import Config, load_config

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[2]
FUNCTION = "fresh-reconcile-traffic"
SECRET = "cloudflare-api-token-fresh"


class FreshInstance:
    def __init__(self, sandbox: Any, config: Config, host: FunctionsHost) -> None:
        self.sandbox, self.config, self.host = sandbox, config, host
        self.subscription = f"{FUNCTION}--{config.topics.results}"

    @property
    def secret(self) -> str:
        return f"projects/{self.config.project}/secrets/{SECRET}"

    def start(self) -> None:
        """Starts the function (a new instance: nothing cached) and points the push at it."""
        self.host.start([FunctionSpec(FUNCTION, "reconcile_traffic", threads=1)], timeout=60)
        emulator = self.sandbox.sandbox.emulator.host
        ensure_topic(emulator, self.config.project, self.config.topics.results)
        ensure_push_subscription(
            emulator,
            self.config.project,
            self.subscription,
            self.config.topics.results,
            self.host.push_endpoint(FUNCTION, self.config.project, self.config.topics.results),
            min_backoff_seconds=1,
            max_backoff_seconds=2,
            dead_letter_topic=self.config.topics.dead_letter,
            max_delivery_attempts=5,
        )

    def stop(self) -> None:
        delete_subscription(self.sandbox.sandbox.emulator.host, self.config.project, self.subscription)
        self.host.stop()

    def publish_result(self) -> str:
        """A deploy result on this config's results topic, as deploy_region publishes one."""
        result = {
            "version": 1, "release_id": "secret-outage", "app": "shop", "region": "europe-west1",
            "kind": "deploy", "status": "succeeded", "trigger": {"type": "manual", "event_id": "secret-outage"},
            "issued_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:00Z",
        }  # fmt: skip
        emulator = self.sandbox.sandbox.emulator.host
        return publish(emulator, self.config.project, self.config.topics.results, json.dumps(result).encode())

    def events(self, event_id: str) -> list[dict[str, Any]]:
        lines = self.host.log_path(FUNCTION).read_text().splitlines()
        found = [json.loads(line) for line in lines if line.startswith("{")]
        return [e for e in found if e.get("event_id") == event_id]

    def pools(self) -> dict[str, list[dict[str, Any]]]:
        names = {r.cloudflare.pool for r in self.config.regions}
        pools: dict[str, list[dict[str, Any]]] = {}
        for pool in self.sandbox.sandbox.cloudflare.state()["pools"]:
            if pool["name"] in names:
                pools.setdefault(pool["name"], []).append(pool)
        return pools


@pytest.fixture(scope="module")
def fresh(sandbox, shop, tmp_path_factory) -> Iterator[FreshInstance]:
    shop_path, shop_config = shop
    # Every region serving, so that the health the pools must follow is known.
    digest = digest_for("shop-secret-outage")
    sandbox.push_image(shop_config, digest, tag="v12.0.0")
    sandbox.wait_for_image(
        shop_config, [r.name for r in shop_config.regions], f"{shop_config.apps[0].repository}@{digest}"
    )
    data = yaml.safe_load(shop_path.read_text())
    data["name"] = "fresh"
    data["topics"] = {key: f"fresh-{key.replace('_', '-')}" for key in ("results", "control", "drift", "dead_letter")}
    data["topics"].update(deploy_prefix="fresh-deploy", drift_reports="fresh-drift-reports")
    data["cloudflare"].update(hostname="fresh.example.test", api_token_secret=SECRET)
    for region in data["regions"]:
        region["cloudflare"]["pool"] = region["cloudflare"]["pool"].replace("shop-", "fresh-")
    path = tmp_path_factory.mktemp("fresh") / "fresh.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    config = load_config(path)

    stack = sandbox.sandbox
    # Never inherit CLOUDFLARE_* (the SDK would prefer them to the token), as the stack does.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDFLARE_")}
    host = FunctionsHost(
        REPO / "main.py", state_dir=stack.state_dir / "fresh", base_env={**inherited, **stack.env_for(path)}
    )
    instance = FreshInstance(sandbox, config, host)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def _transient_failures(fresh: FreshInstance, event_id: str) -> list[dict[str, Any]]:
    return [e for e in fresh.events(event_id) if e.get("event") == "transient_failure"]


def _redelivered(fresh: FreshInstance, event_id: str) -> list[dict[str, Any]]:
    """The failed deliveries of the event, once there were at least two."""

    def failed_twice() -> list[dict[str, Any]]:
        failures = _transient_failures(fresh, event_id)
        return failures if len(failures) >= 2 else []

    return wait_until(failed_twice, 30, f"two failed deliveries of event {event_id}")


def _reconciled(fresh: FreshInstance, event_id: str) -> dict[str, Any] | None:
    return next((e for e in fresh.events(event_id) if e.get("event") == "traffic_reconciled"), None)


def test_a_missing_secret_keeps_the_event_until_the_secret_exists(sandbox, fresh):
    google, token = sandbox.sandbox.google, sandbox.sandbox.cloudflare_token
    assert fresh.secret not in google.state()["secrets"], "the secret must not exist yet"

    event_id = fresh.publish_result()

    # Redelivered, not acknowledged: two deliveries failed, each saying which secret is missing.
    for failure in _redelivered(fresh, event_id):
        assert failure["severity"] == "ERROR" and failure["outcome"] == "redeliver"
        assert (failure["error"], failure["reason"]) == ("SecretUnavailable", "secret_unavailable")
        assert f"{fresh.secret}/versions/latest" in failure["detail"] and "NotFound" in failure["detail"]
    assert not [e for e in fresh.events(event_id) if e.get("event") in ("event_rejected", "unexpected_error")]
    assert fresh.pools() == {}, "nothing may reach Cloudflare without the token"

    google.add_secret_version(fresh.secret, token)  # what the operator does

    logged = wait_until(lambda: _reconciled(fresh, event_id), 30, "the redelivered event's reconcile")
    assert logged["health"] == {r.name: "healthy:serving" for r in fresh.config.regions}
    pools = fresh.pools()
    assert {name: [p["enabled"] for p in found] for name, found in pools.items()} == {
        r.cloudflare.pool: [True] for r in fresh.config.regions
    }
    assert token not in fresh.host.log_path(FUNCTION).read_text()


def test_a_disabled_secret_version_keeps_the_event_until_it_is_enabled_again(sandbox, fresh):
    """A new instance (as after a cold start) whose secret's only version is disabled."""
    google = sandbox.sandbox.google
    [version] = [v["version"] for v in google.state()["secrets"][fresh.secret]]
    version_name = f"{fresh.secret}/versions/{version}"
    google.set_secret_version_enabled(version_name, False)
    fresh.stop()
    fresh.start()
    # Meanwhile someone drained a healthy region's pool by hand: the event's reconcile restores it.
    us_pool = fresh.config.region("us-west1").cloudflare.pool
    sandbox.edit_cloudflare_pool(fresh.config, us_pool, {"enabled": False})
    try:
        event_id = fresh.publish_result()

        failures = _redelivered(fresh, event_id)
        assert all(f["reason"] == "secret_unavailable" and fresh.secret in f["detail"] for f in failures)
        assert _reconciled(fresh, event_id) is None
        assert [p["enabled"] for p in fresh.pools()[us_pool]] == [False]
    finally:
        google.set_secret_version_enabled(version_name, True)

    logged = wait_until(lambda: _reconciled(fresh, event_id), 30, "the redelivered event's reconcile")
    assert logged["changes"] == [f"updated pool {us_pool}: enabled"]
    assert [p["enabled"] for p in fresh.pools()[us_pool]] == [True]
