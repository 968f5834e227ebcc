"""The seed article's own k8s.yaml (config/examples/seed/k8s.yaml, a reconstruction in
the API versions of its time) loads with its upgrades reported and renders, per region,
in current API versions with the pinned image, the zone and the static IP."""

from __future__ import annotations

import pytest

from shared.config import load_config
from shared.contracts import ImageRef
from shared.rendering import HealthTarget, render_release
from tests.core.builders import CONFIG_DIR, digest, shipped_config


def test_the_shipped_seed_example_loads_with_its_upgrades_reported():
    app = load_config(CONFIG_DIR / "examples" / "seed.yaml").app("my-app")
    assert app.source.template == "seed/k8s.yaml"
    assert [d.body["apiVersion"] for d in app.source.documents] == [
        "v1",
        "v1",
        "apps/v1",
        "autoscaling/v2",
        "policy/v1",
    ]
    deployment, hpa = (
        "seed/k8s.yaml, document 3 (Deployment my-app-deployment)",
        "seed/k8s.yaml, document 4 (HorizontalPodAutoscaler my-app-hpa)",
    )
    assert app.source.notes == (
        f"{deployment}: extensions/v1beta1 Deployment upgraded to apps/v1",
        f"{deployment}: spec.selector.matchLabels filled from spec.template.metadata.labels (required in apps/v1)",
        f"{hpa}: autoscaling/v2beta1 HorizontalPodAutoscaler upgraded to autoscaling/v2",
        f"{hpa}: spec.metrics rewritten to autoscaling/v2 targets",
        f"{hpa}: spec.scaleTargetRef.apiVersion extensions/v1beta1 upgraded to apps/v1",
        "seed/k8s.yaml, document 5 (PodDisruptionBudget my-app-pdb): "
        "policy/v1beta1 PodDisruptionBudget upgraded to policy/v1",
        f"{deployment}: spec.replicas dropped: {hpa} scales it",
    )


SEED_LABELS = {"app": "my-app"}


def seed(region="europe-west1", digest_seed="v1"):
    config = shipped_config("examples/seed")
    app = config.app("my-app")
    return render_release(config, app, config.region(region), ImageRef(app.repository, digest(digest_seed)))


# --- the seed article's k8s.yaml ------------------------------------------------------------------


def test_the_seed_template_renders_in_current_api_versions_and_document_order():
    assert [(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in seed().objects] == [
        ("v1", "Namespace", "app-ns"),
        ("v1", "Service", "my-app-service"),
        ("apps/v1", "Deployment", "my-app-deployment"),
        ("autoscaling/v2", "HorizontalPodAutoscaler", "my-app-hpa"),
        ("policy/v1", "PodDisruptionBudget", "my-app-pdb"),
    ]


@pytest.mark.parametrize(
    ("region", "zone", "address"),
    [("europe-west1", "europe-west1-b", "35.205.10.20"), ("us-west1", "us-west1-a", "34.82.30.40")],
)
def test_the_seed_service_gets_the_regions_zone_and_static_ip(region, zone, address):
    service = seed(region).find("Service")
    assert service["spec"]["loadBalancerIP"] == address
    assert service["metadata"]["labels"]["zone"] == zone
    assert service["spec"]["type"] == "LoadBalancer"


def test_the_seed_deployment_runs_the_pushed_image_pinned_by_digest():
    [container] = seed().find("Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"europe-docker.pkg.dev/image-charts-prod/app/my-app@{digest('v1')}"
    assert [p["containerPort"] for p in container["ports"]] == [8080, 8081]
    assert container["readinessProbe"]["httpGet"] == {"path": "/_ready", "port": "monitoring"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "monitoring"}


def test_the_seed_deployment_keeps_its_strategy_gets_a_selector_and_leaves_replicas_to_the_autoscaler():
    spec = seed().find("Deployment")["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "200%"}}
    assert spec["revisionHistoryLimit"] == 2
    assert spec["selector"] == {"matchLabels": SEED_LABELS}
    assert "replicas" not in spec
    assert spec["progressDeadlineSeconds"] == 240  # the config's rollout deadline


def test_the_seed_autoscaler_and_budget_are_upgraded():
    hpa = seed().find("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "my-app-deployment"}
    assert hpa["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 200}}}
    ]
    assert seed().find("PodDisruptionBudget")["spec"] == {"minAvailable": 2, "selector": {"matchLabels": SEED_LABELS}}


def test_the_seed_release_waits_for_its_one_deployment():
    assert seed().health_targets == (HealthTarget("Deployment", "app-ns", "my-app-deployment"),)


def test_the_seed_release_is_deterministic_and_changes_with_region_and_digest():
    assert seed().to_yaml() == seed().to_yaml()
    assert seed().manifest_hash == seed().manifest_hash
    assert seed("us-west1").manifest_hash != seed().manifest_hash
    assert seed(digest_seed="v2").manifest_hash != seed().manifest_hash


# --- labels ---------------------------------------------------------------------------------------


def test_every_object_carries_geodeploys_labels_beside_the_users():
    for obj in seed("us-west1").objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "my-app"
        assert labels["app.kubernetes.io/managed-by"] == "geodeploy"
        assert labels["geodeploy.dev/region"] == "us-west1"
        assert labels["geodeploy.dev/zone"] == "us-west1-a"
    assert seed().find("Deployment")["metadata"]["labels"]["app"] == "my-app"


def test_selectors_and_pod_templates_are_left_as_written():
    rendered = seed()
    assert rendered.find("Service")["spec"]["selector"] == SEED_LABELS
    assert rendered.find("Deployment")["spec"]["template"]["metadata"]["labels"] == SEED_LABELS
