"""Every function runs with the permissions infra/ and `geodeploy rbac` give it, and no
more: the sandbox's Google stand-in checks the IAM grants evaluated from infra/, each
cluster authorizes the function's own Kubernetes user by RBAC. A missing grant is a
clear permission error, never an unreachable cluster: retried, then dead-lettered."""

from __future__ import annotations

import json

import pytest

from sandbox.driver import digest_for, wait_until
from sandbox.emulator import delete_subscription, ensure_pull_subscription, pull
from shared.topology import service_account_email

pytestmark = pytest.mark.sandbox

REGION = "us-west1"
MAX_DELIVERY_ATTEMPTS = 5  # the push subscriptions' dead-letter policy (infra/pubsub.tf, sandbox)


def _kube_user_can(sandbox, config, identity: str, verb: str, resource: str, namespace: str) -> bool:
    """`kubectl auth can-i` as the Kubernetes user GKE makes of the identity."""
    user = service_account_email(config, identity)
    done = sandbox.sandbox.clusters.kubectl(
        config.region(REGION).cluster.name,
        "auth",
        "can-i",
        verb,
        resource,
        "-n",
        namespace,
        f"--as={user}",
        check=False,
    )
    return done.stdout.strip() == "yes"


def test_each_function_user_has_only_its_rbac(sandbox, shop):
    _, config = shop
    can = lambda identity, verb, resource, ns="shop": _kube_user_can(sandbox, config, identity, verb, resource, ns)  # noqa: E731
    assert can(f"deploy-{REGION}", "patch", "deployments.apps/shop")
    assert not can(f"deploy-{REGION}", "patch", "deployments.apps/other")  # only the app's own objects
    assert not can(f"deploy-{REGION}", "create", "pods")  # no workloads beyond what it renders
    assert not can(f"deploy-{REGION}", "create", "deployments.apps", "kube-system")
    assert not can("deploy-europe-west1", "get", "configmaps/geodeploy-releases-shop")  # another region's deployer
    assert can("control", "get", "configmaps/geodeploy-releases-shop")  # `target: previous`
    assert not can("control", "update", "configmaps/geodeploy-releases-shop")
    assert can("traffic", "get", "deployments.apps/shop") and not can("traffic", "patch", "deployments.apps/shop")
    assert not can("drift", "create", "deployments.apps")  # heals what exists, creates nothing
    assert not can("image_pushed", "get", "configmaps/geodeploy-releases-shop")  # never connects


def test_a_missing_grant_is_a_permission_error_retried_then_dead_lettered(sandbox, shop):
    path, config = shop
    stack = sandbox.sandbox
    member = service_account_email(config, f"deploy-{REGION}")
    grant = ("container.clusters.get", f"projects/{config.project}")
    emulator = stack.emulator.host
    dead_letters = "observer-least-privilege-dead-letters"
    ensure_pull_subscription(emulator, config.project, dead_letters, config.topics.dead_letter)
    pull(emulator, config.project, dead_letters, 100, timeout=0.5)  # start from nothing
    image = f"{config.apps[0].repository}@{digest_for('shop-least-privilege')}"
    others = [r.name for r in config.regions if r.name != REGION]
    function = f"{config.name}-deploy-{REGION}"
    mark = len(sandbox.log_events(path, function))
    stack.google.set_grant(member, *grant, granted=False)
    try:
        sandbox.push_image(config, image.split("@")[1], tag="v20.0.0")
        sandbox.wait_for_image(config, others, image)  # the regions whose deployer may connect

        def dead_lettered() -> dict | None:
            for message in pull(emulator, config.project, dead_letters, 100, timeout=0.5):
                request = json.loads(message.data)
                if request.get("region") == REGION and request.get("image") == image:
                    return request
            return None

        wait_until(dead_lettered, 120, f"the {REGION} deploy request on the dead-letter topic")
    finally:
        stack.google.set_grant(member, *grant, granted=True)
        delete_subscription(emulator, config.project, dead_letters)

    since = sandbox.log_events(path, function)[mark:]
    failures = [e for e in since if e.get("message") == "transient_failure"]
    assert len(failures) == MAX_DELIVERY_ATTEMPTS, failures
    assert len({e["event_id"] for e in failures}) == 1  # one request, delivered five times
    for failure in failures:
        assert (failure["reason"], failure["error"], failure["outcome"]) == (
            "permission_denied",
            "PermissionMissing",
            "redeliver",
        )
        assert '"container.clusters.get"' in failure["detail"] and "clusters/" in failure["detail"]
    assert sandbox.running_image(config, REGION) != image
    assert not any("Unreachable" in str(e.get("error")) for e in since)
