"""One-message rollback, rejected rollbacks, and drift checks that report hand edits with
their field paths, heal them on request (Cloudflare's through reconcile_traffic, its one
writer), and never count HPA scaling as drift."""

from __future__ import annotations

import pytest

from sandbox.driver import digest_for, wait_until
from shared.topology import service_account_email

pytestmark = pytest.mark.sandbox


def _image(config, label: str) -> str:
    return f"{config.apps[0].repository}@{digest_for(label)}"


def _push(sandbox, config, label: str, tag: str) -> str:
    image = _image(config, label)
    sandbox.push_image(config, image.split("@")[1], tag=tag)
    sandbox.wait_for_image(config, [r.name for r in config.regions], image)
    return image


def _logged(sandbox, path, function: str, **fields) -> list[dict]:
    return [e for e in sandbox.log_events(path, function) if all(e.get(k) == v for k, v in fields.items())]


def _check_drift(sandbox, config, **request) -> dict:
    event_id = sandbox.publish(config, config.topics.drift, {"version": 1, **request})
    return wait_until(
        lambda: next((r for r in sandbox.drift_reports(config) if r["trigger_event_id"] == event_id), None),
        90,
        f"the drift report for event {event_id}",
    )


def _region_report(report: dict, region: str) -> dict:
    return next(r for r in report["regions"] if r["region"] == region)


def test_a_rollback_message_returns_every_region_to_the_previous_release(sandbox, shop):
    _path, config = shop
    v1 = _push(sandbox, config, "shop-rollback-v1", "v7.0.0")
    _push(sandbox, config, "shop-rollback-v2", "v7.1.0")

    # What an operator publishes with `gcloud pubsub topics publish geodeploy-control --message=...`
    sandbox.publish(
        config,
        config.topics.control,
        {"version": 1, "action": "rollback", "app": "shop", "target": "previous", "requested_by": "ana"},
    )

    sandbox.wait_for_image(config, [r.name for r in config.regions], v1)
    for region in config.regions:
        current = sandbox.release_record(config, region.name).current
        assert (current.kind, current.image, current.status) == ("rollback", v1, "succeeded")
        assert current.trigger.type == "rollback" and current.trigger.requested_by == "ana"
    # A drift check does not undo the rollback: the rollback is the release now.
    report = _check_drift(sandbox, config, apps=["shop"])
    assert {r["region"]: r["status"] for r in report["regions"]} == {r.name: "in_sync" for r in config.regions}
    assert all(sandbox.running_image(config, r.name) == v1 for r in config.regions)
    # And a newer push after the rollback deploys as usual.
    _push(sandbox, config, "shop-rollback-v3", "v7.2.0")


def test_a_rollback_to_an_image_of_another_repository_applies_nothing(sandbox, shop):
    path, config = shop
    running = _push(sandbox, config, "shop-guarded", "v8.0.0")
    record_before = sandbox.get(config, "europe-west1", "configmap", "geodeploy-releases-shop", "shop")
    foreign = f"europe-docker.pkg.dev/someone-else/apps/miner@{digest_for('miner')}"

    event_id = sandbox.publish(
        config, config.topics.control, {"version": 1, "action": "rollback", "app": "shop", "target": foreign}
    )

    for region in config.regions:
        result = sandbox.wait_for_result(
            config,
            lambda r, region=region.name: r["region"] == region and r["trigger"]["event_id"] == event_id,
            what=f"{region.name}'s answer",
        )
        assert (result["status"], result["reason"]) == ("rejected", "image_not_allowed")
        logged = _logged(sandbox, path, f"{config.name}-deploy-{region.name}", event="request_rejected", image=foreign)
        assert logged and logged[0]["severity"] == "WARNING"
        assert sandbox.running_image(config, region.name) == running
    record_after = sandbox.get(config, "europe-west1", "configmap", "geodeploy-releases-shop", "shop")
    assert record_after["metadata"]["resourceVersion"] == record_before["metadata"]["resourceVersion"]


def test_a_rollback_of_an_unknown_app_is_rejected_with_its_reason(sandbox, shop):
    path, config = shop
    event_id = sandbox.publish(
        config, config.topics.control, {"version": 1, "action": "rollback", "app": "shopp", "target": "previous"}
    )
    logged = wait_until(
        lambda: _logged(sandbox, path, f"{config.name}-on-control", event="event_rejected", event_id=event_id),
        30,
        "the rejection",
    )
    assert logged[0]["reason"] == "unknown_app" and "shopp" in logged[0]["detail"]
    assert not _logged(sandbox, path, f"{config.name}-on-control", event="rollback_requested", event_id=event_id)


def test_hand_edits_are_reported_with_their_paths_and_healed_but_hpa_scaling_is_not_drift(sandbox, shop):
    path, config = shop
    image = _push(sandbox, config, "shop-drift", "v9.0.0")
    region = "us-west1"
    kubectl = lambda *args: sandbox.kubectl(config, region, "-n", "shop", *args)  # noqa: E731
    kubectl("set", "image", "deployment/shop", f"app={_image(config, 'hand-picked')}")
    kubectl(
        "patch",
        "deployment",
        "shop",
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/template/spec/containers/0/readinessProbe/periodSeconds","value":9}]',
    )
    kubectl(
        "patch", "service", "shop", "--type=json", "-p", '[{"op":"replace","path":"/spec/ports/0/port","value":8081}]'
    )
    kubectl("scale", "deployment", "shop", "--replicas=4")  # what the HPA does under load
    sandbox.wait_for_traffic_settled(config)  # the push's own reconciles are done
    sandbox.edit_cloudflare_pool(config, "shop-us-west1", {"description": "edited in the dashboard"})

    report = _check_drift(sandbox, config, apps=["shop"], heal=False)

    us = _region_report(report, region)
    assert us["status"] == "drifted" and not us["healed"]
    found = {(d["object"], d["path"]): d for d in us["differences"]}
    container = "spec.template.spec.containers[name=app]"
    assert found[("Deployment/shop/shop", f"{container}.image")]["expected"] == image
    assert found[("Deployment/shop/shop", f"{container}.image")]["live"] == _image(config, "hand-picked")
    probe = found[("Deployment/shop/shop", f"{container}.readinessProbe.periodSeconds")]
    assert (probe["expected"], probe["live"]) == (5, 9)
    port = found[("Service/shop/shop", "spec.ports[name=http].port")]
    assert (port["expected"], port["live"]) == (80, 8081)
    assert not any("replicas" in p for _, p in found), "HPA-owned replicas reported as drift"
    assert len(found) == 3
    assert {_region_report(report, r)["status"] for r in ("europe-west1", "asia-east1")} == {"in_sync"}
    assert {
        "object": "pool/shop-us-west1",
        "path": "description",
        "expected": "geodeploy us-west1",
        "live": "edited in the dashboard",
    } in report["cloudflare"]["differences"]
    assert report["cloudflare"]["heal_requested"] is False

    healed = _check_drift(sandbox, config, apps=["shop"], heal=True)

    assert _region_report(healed, region)["healed"] and healed["cloudflare"]["heal_requested"]
    # Nothing rewrote the pool before this check read it: the tick's own reconcile only drains and restores.
    assert [(d["object"], d["path"]) for d in healed["cloudflare"]["differences"]] == [
        ("pool/shop-us-west1", "description")
    ]
    # Cloudflare has one writer: check_drift asks, reconcile_traffic rewrites the pool.
    check = healed["trigger_event_id"]
    [reconciled] = wait_until(
        lambda: _logged(
            sandbox, path, f"{config.name}-reconcile-traffic", event="traffic_reconciled", trigger_event_id=check
        ),
        60,
        "reconcile_traffic's heal of Cloudflare",
    )
    assert "updated pool shop-us-west1: description" in reconciled["changes"]
    wait_until(  # check_drift gets its own request too, and acks it without acting
        lambda: _logged(
            sandbox, path, f"{config.name}-check-drift", event="traffic_heal_request_ignored", trigger_event_id=check
        ),
        30,
        "check_drift's ack of its own heal request",
    )
    assert not _logged(sandbox, path, f"{config.name}-check-drift", event="traffic_reconciled"), (
        "check_drift wrote Cloudflare"
    )
    sandbox.wait_for_image(config, [region], image)
    service = sandbox.get(config, region, "service", "shop", "shop")
    assert [p["port"] for p in service["spec"]["ports"]] == [80]
    deployment = sandbox.deployment(config, region)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSeconds"] == 5
    assert deployment["spec"]["replicas"] == 4, "healing must not touch what the HPA owns"
    after = _check_drift(sandbox, config, apps=["shop"], heal=False)
    assert _region_report(after, region)["status"] == "in_sync" and after["cloudflare"]["differences"] == []


def test_an_unreachable_region_is_reported_as_such_not_as_drift(sandbox, shop):
    _, config = shop
    sandbox.stop_region(config, "asia-east1")
    try:
        report = _check_drift(sandbox, config, apps=["shop"], regions=["asia-east1"])
    finally:
        sandbox.start_region(config, "asia-east1")
    [asia] = report["regions"]
    assert asia["status"] == "unreachable" and asia["differences"] == []
    assert report["drifted"] is False


# A change freeze the cluster enforces: updates of the shop Deployment by geodeploy's user
# are denied (dry runs pass, so the comparison still gets the server's view).
FREEZE = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: geodeploy-test-freeze}
spec:
  failurePolicy: Fail
  matchConstraints:
    namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: shop}}
    resourceRules:
      - {apiGroups: [apps], apiVersions: [v1], operations: [UPDATE], resources: [deployments], resourceNames: [shop]}
  validations:
    - expression: "request.userInfo.username != '{user}' || (has(request.dryRun) && request.dryRun)"
      message: "change freeze: the shop Deployment may not be changed"
      reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: geodeploy-test-freeze}
spec:
  policyName: geodeploy-test-freeze
  validationActions: [Deny]
"""


def _drift_user(config) -> str:
    """The Kubernetes user check-drift is in the clusters: its service account's email."""
    return service_account_email(config, "drift")


def _freeze_in_effect(sandbox, config, region: str, probe: int) -> bool:
    """Whether an update by check-drift's user is denied now (policies take a moment to load)."""
    annotate = sandbox.sandbox.clusters.kubectl(
        config.region(region).cluster.name,
        *(f"--as={_drift_user(config)}", "-n", "shop", "annotate", "deployment", "shop"),
        *(f"geodeploy-test/probe={probe}", "--overwrite"),
        check=False,
    )
    return "change freeze" in annotate.stderr


def test_a_heal_the_api_server_refuses_is_reported_as_drift_with_the_refusal(sandbox, shop, tmp_path):
    _path, config = shop
    image = _push(sandbox, config, "shop-frozen", "v9.1.0")
    region = "asia-east1"
    sandbox.kubectl(config, region, "-n", "shop", "set", "image", "deployment/shop", f"app={_image(config, 'hot-fix')}")
    policy = tmp_path / "freeze.yaml"
    policy.write_text(FREEZE.replace("{user}", _drift_user(config)))
    sandbox.kubectl(config, region, "apply", "-f", str(policy))
    try:
        probes = iter(range(1000))
        wait_until(lambda: _freeze_in_effect(sandbox, config, region, next(probes)), 30, "the freeze in effect")

        report = _check_drift(sandbox, config, apps=["shop"], regions=[region], heal=True)
    finally:
        sandbox.kubectl(config, region, "delete", "-f", str(policy))

    [asia] = report["regions"]
    assert asia["status"] == "drifted" and asia["healed"] is False
    [difference] = asia["differences"]
    assert difference["path"] == "spec.template.spec.containers[name=app].image"
    assert (difference["expected"], difference["live"]) == (image, _image(config, "hot-fix"))
    [failure] = asia["heal_failures"]
    assert (failure["object"], failure["reason"]) == ("Deployment/shop/shop", "kube_403")
    assert "change freeze" in failure["detail"]
    assert report["drifted"] is True
    assert sandbox.running_image(config, region) != image, "the refused heal changed nothing"

    probes = iter(range(1000, 2000))
    wait_until(lambda: not _freeze_in_effect(sandbox, config, region, next(probes)), 30, "the freeze lifted")
    healed = _check_drift(sandbox, config, apps=["shop"], regions=[region], heal=True)
    [asia] = healed["regions"]
    assert asia["healed"] is True and asia["heal_failures"] == []
    sandbox.wait_for_image(config, [region], image)


def test_a_heal_recreates_a_deleted_hpa_and_pdb_under_the_checks_own_rbac(sandbox, shop):
    """check-drift's identity may create only the app's own Service, HPA and PDB, by name:
    an apply that creates is authorized as a create of that name."""
    _path, config = shop
    region = "us-west1"
    _push(sandbox, config, "shop-heal-deleted", "v9.5.0")
    sandbox.kubectl(config, region, "-n", "shop", "delete", "hpa", "shop")
    sandbox.kubectl(config, region, "-n", "shop", "delete", "pdb", "shop")

    report = _region_report(_check_drift(sandbox, config, apps=["shop"], regions=[region], heal=True), region)

    assert report["status"] == "drifted" and report["healed"], report
    assert {d["object"] for d in report["differences"]} >= {
        "HorizontalPodAutoscaler/shop/shop",
        "PodDisruptionBudget/shop/shop",
    }
    hpa = sandbox.get(config, region, "horizontalpodautoscaler", "shop", "shop")
    assert hpa is not None and hpa["spec"]["minReplicas"] == config.app("shop").manifests.min_replicas
    assert sandbox.get(config, region, "poddisruptionbudget", "shop", "shop") is not None
