"""Every function runs with the permissions infra/ and `geodeploy rbac` give it, and no
more: the sandbox's Google stand-in checks the IAM grants evaluated from infra/, each
cluster authorizes the function's own Kubernetes user by RBAC. A missing grant is a
clear permission error, never an unreachable cluster, and the event is retried."""

from __future__ import annotations

import json

import pytest

from sandbox.driver import digest_for, wait_until
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


def test_a_missing_grant_is_a_permission_error_retried_until_the_last_attempt(sandbox, shop):
    """The push subscription's dead-letter policy (5 attempts) then moves the message to
    the dead-letter topic; the emulator's dead-lettering is not relied on here."""
    path, config = shop
    stack = sandbox.sandbox
    member = service_account_email(config, f"deploy-{REGION}")
    grant = ("container.clusters.get", f"projects/{config.project}")
    image = f"{config.apps[0].repository}@{digest_for('shop-least-privilege')}"
    others = [r.name for r in config.regions if r.name != REGION]
    function = f"{config.name}-deploy-{REGION}"
    mark = len(sandbox.log_events(path, function))

    def failures() -> list[dict]:
        since = sandbox.log_events(path, function)[mark:]
        return [e for e in since if e.get("message") == "transient_failure"]

    stack.google.set_grant(member, *grant, granted=False)
    try:
        # A live instance keeps the cluster endpoint it already fetched (as in production,
        # where a revoked grant shows on the next cold start): start a fresh one.
        sandbox.restart_function(path, function)
        sandbox.push_image(config, image.split("@")[1], tag="v20.0.0")
        sandbox.wait_for_image(config, others, image)  # the regions whose deployer may connect
        wait_until(lambda: len(failures()) >= MAX_DELIVERY_ATTEMPTS, 180, f"{MAX_DELIVERY_ATTEMPTS} attempts")
    finally:
        stack.google.set_grant(member, *grant, granted=True)

    found = failures()
    assert len({e["event_id"] for e in found}) == 1  # one request, delivered again and again
    for failure in found:
        assert (failure["reason"], failure["error"], failure["outcome"]) == (
            "permission_denied",
            "PermissionMissing",
            "redeliver",
        )
        assert '"container.clusters.get"' in failure["detail"] and "clusters/" in failure["detail"]
    assert sandbox.running_image(config, REGION) != image


def test_a_missing_role_binding_is_a_permission_error_and_the_deploy_lands_once_it_is_back(sandbox, shop):
    """Kubernetes authorizes every request, so a binding taken away refuses the very next
    call of a live instance; once it is back, the redelivered request deploys."""
    path, config = shop
    binding = f"{config.name}-deploy-{REGION}"
    function = f"{config.name}-deploy-{REGION}"
    image = f"{config.apps[0].repository}@{digest_for('shop-rbac-missing')}"
    saved = json.loads(sandbox.kubectl(config, REGION, "-n", "shop", "get", "rolebinding", binding, "-o", "json"))
    mark = len(sandbox.log_events(path, function))

    def refusals() -> list[dict]:
        since = sandbox.log_events(path, function)[mark:]
        return [e for e in since if e.get("message") == "transient_failure" and e.get("reason") == "permission_denied"]

    sandbox.kubectl(config, REGION, "-n", "shop", "delete", "rolebinding", binding)
    record = "configmaps/geodeploy-releases-shop"
    wait_until(
        lambda: not _kube_user_can(sandbox, config, f"deploy-{REGION}", "get", record, "shop"),
        30,
        "the binding's removal to take effect",
    )
    try:
        sandbox.push_image(config, image.split("@")[1], tag="v21.0.0")
        found = wait_until(lambda: refusals()[:2] if len(refusals()) >= 2 else [], 90, "two refused deliveries")
    finally:
        for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
            saved["metadata"].pop(key, None)
        cluster = config.region(REGION).cluster.name
        sandbox.sandbox.clusters.kubectl(cluster, "apply", "--server-side", "-f", "-", stdin=json.dumps(saved))
    assert {e["error"] for e in found} == {"PermissionMissing"}
    assert f'User "{service_account_email(config, f"deploy-{REGION}")}" cannot' in found[0]["detail"]
    sandbox.wait_for_image(config, [REGION], image, timeout=120)
