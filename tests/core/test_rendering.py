"""Rendering: the seed article's app, per region, in current API versions; deterministic
so that a rollback to a digest reproduces its release byte for byte."""

from __future__ import annotations

import copy

import pytest
import yaml

from shared.rendering import object_key, render_release
from tests.core.builders import (
    WORKER_REPO,
    build_config,
    changed,
    config_data,
    image,
    shipped_config,
)


def render(config=None, app="shop", region="europe-west1", img=None):
    config = config or build_config()
    return render_release(config, config.app(app), config.region(region), img or image("v1"))


def container(rendered):
    return rendered.find("Deployment")["spec"]["template"]["spec"]["containers"][0]


# --- determinism and the manifest hash ----------------------------------------------------------


def test_rendering_twice_gives_byte_identical_yaml_and_the_same_hash():
    first, second = render(), render()
    assert first.to_yaml() == second.to_yaml()
    assert first.manifest_hash == second.manifest_hash


def test_rendering_from_a_reparsed_config_gives_the_same_release():
    text = yaml.safe_dump(config_data(), sort_keys=False)
    from shared.config import parse_config

    one = render(parse_config(text))
    other = render(parse_config(text))
    assert one.to_yaml() == other.to_yaml()
    assert one.manifest_hash == other.manifest_hash


def test_the_order_of_keys_in_the_config_file_does_not_change_the_release():
    data = config_data()
    data["apps"][0]["manifests"] = {"env": {"B_VAR": "2", "A_VAR": "1"}, "max_replicas": 7}
    shuffled = copy.deepcopy(data)
    shuffled["apps"][0]["manifests"] = {"max_replicas": 7, "env": {"A_VAR": "1", "B_VAR": "2"}}
    shuffled = dict(reversed(list(shuffled.items())))
    assert render(build_config(data)).manifest_hash == render(build_config(shuffled)).manifest_hash


def test_the_manifest_hash_is_a_sha256():
    assert render().manifest_hash.startswith("sha256:")
    assert len(render().manifest_hash) == len("sha256:") + 64


def test_the_yaml_artifact_holds_every_object():
    docs = list(yaml.safe_load_all(render().to_yaml()))
    assert [d["kind"] for d in docs] == [
        "Namespace",
        "Service",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]
    assert docs == list(render().objects)


def test_a_new_digest_changes_the_hash():
    assert render(img=image("v1")).manifest_hash != render(img=image("v2")).manifest_hash


def test_each_region_has_its_own_hash():
    assert render(region="europe-west1").manifest_hash != render(region="us-west1").manifest_hash


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("apps[0].manifests", {"max_replicas": 6}),
        (
            "apps[0].manifests",
            {
                "readiness": {
                    "path": "/ready",
                    "initial_delay_seconds": 20,
                    "timeout_seconds": 4,
                    "period_seconds": 5,
                    "failure_threshold": 1,
                    "success_threshold": 2,
                }
            },
        ),
        ("apps[0].manifests", {"env": {"MODE": "prod"}}),
        ("apps[0].manifests", {"resources": {"limits_memory": "512Mi"}}),
        ("apps[0].namespace", "shop-prod"),
        ("rollout.progress_deadline_seconds", 600),
        ("regions[0].static_ip.address", "192.0.2.99"),
        ("regions[0].cluster.location", "europe-west1-c"),
    ],
)
def test_a_config_change_that_reaches_the_objects_changes_the_hash(path, value):
    assert render(build_config(changed(config_data(), path, value))).manifest_hash != render().manifest_hash


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("drift.schedule", "0 3 * * *"),
        ("drift.heal", True),
        ("rollout.call_budget_seconds", 300),
        ("rollout.history_limit", 20),
        ("cloudflare.monitor", {"interval": 30}),
        ("topics.results", "other-results"),
        ("regions[1].static_ip.address", "192.0.2.99"),  # another region's
        ("apps[0].tag_filter", "v.*"),
        ("apps[0].deploy_untagged", False),
    ],
)
def test_a_config_change_that_does_not_reach_the_objects_keeps_the_hash(path, value):
    assert render(build_config(changed(config_data(), path, value))).manifest_hash == render().manifest_hash


def test_another_apps_settings_do_not_change_this_apps_release():
    base = build_config(config_data(worker=True))
    edited = build_config(changed(config_data(worker=True), "apps[1].manifests", {"max_replicas": 9}))
    assert render(base).manifest_hash == render(edited).manifest_hash


# --- API versions and object shapes -------------------------------------------------------------


def test_objects_are_in_current_api_versions():
    assert [(o["apiVersion"], o["kind"]) for o in render().objects] == [
        ("v1", "Namespace"),
        ("v1", "Service"),
        ("apps/v1", "Deployment"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("policy/v1", "PodDisruptionBudget"),
    ]


def test_every_namespaced_object_lives_in_the_apps_namespace():
    rendered = render()
    assert rendered.find("Namespace")["metadata"]["name"] == "shop"
    for obj in rendered.objects[1:]:
        assert obj["metadata"]["namespace"] == "shop"
        assert obj["metadata"]["name"] == "shop"


@pytest.mark.parametrize("name", ["example", "sandbox", "sandbox-waves"])
def test_the_deployment_never_sets_replicas(name):
    config = shipped_config(name)
    for app in config.apps:
        for region in config.regions:
            rendered = render_release(config, app, region, image("v1", app.repository))
            assert "replicas" not in rendered.find("Deployment")["spec"]


def test_the_image_is_pinned_by_digest():
    img = image("v1")
    assert container(render(img=img))["image"] == f"{img.repository}@{img.digest}"


def test_object_keys_name_kind_namespace_and_name():
    keys = [object_key(o) for o in render().objects]
    assert keys == [
        "Namespace/shop",
        "Service/shop/shop",
        "Deployment/shop/shop",
        "HorizontalPodAutoscaler/shop/shop",
        "PodDisruptionBudget/shop/shop",
    ]


# --- the seed's values in the right fields -----------------------------------------------------


def test_probes_use_the_monitoring_port_and_the_seeds_timings():
    c = container(render())
    assert c["readinessProbe"] == {
        "httpGet": {"path": "/_ready", "port": "monitoring"},
        "initialDelaySeconds": 20,
        "timeoutSeconds": 4,
        "periodSeconds": 5,
        "failureThreshold": 1,
        "successThreshold": 2,
    }
    assert c["livenessProbe"] == {
        "httpGet": {"path": "/healthz", "port": "monitoring"},
        "initialDelaySeconds": 20,
        "timeoutSeconds": 2,
        "periodSeconds": 2,
        "failureThreshold": 5,
        "successThreshold": 1,
    }


def test_container_ports_are_named_http_8080_and_monitoring_8081():
    assert container(render())["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "monitoring", "containerPort": 8081, "protocol": "TCP"},
    ]


def test_resources_are_the_seeds():
    assert container(render())["resources"] == {
        "requests": {"cpu": "1", "memory": "100Mi"},
        "limits": {"cpu": "2", "memory": "380Mi"},
    }


def test_rolling_update_strategy_and_history_are_the_seeds():
    spec = render().find("Deployment")["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "200%"}}
    assert spec["revisionHistoryLimit"] == 2


def test_progress_deadline_comes_from_the_config():
    config = build_config(changed(config_data(), "rollout.progress_deadline_seconds", 321))
    assert render(config).find("Deployment")["spec"]["progressDeadlineSeconds"] == 321


def test_pods_prefer_different_nodes():
    affinity = render().find("Deployment")["spec"]["template"]["spec"]["affinity"]
    assert "podAffinity" not in affinity
    terms = affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in affinity["podAntiAffinity"]
    assert len(terms) == 1
    term = terms[0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"] == {
        "matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In", "values": ["shop"]}]
    }


def test_the_container_is_named_from_the_config():
    config = shipped_config("example")
    rendered = render_release(config, config.apps[0], config.regions[0], image("v1", config.apps[0].repository))
    assert container(rendered)["name"] == "image-charts"


def test_env_is_rendered_sorted_and_absent_when_empty():
    assert "env" not in container(render())
    config = build_config(changed(config_data(), "apps[0].manifests", {"env": {"ZED": "1", "ALPHA": "2"}}))
    assert container(render(config))["env"] == [{"name": "ALPHA", "value": "2"}, {"name": "ZED", "value": "1"}]


# --- the Service -------------------------------------------------------------------------------


@pytest.mark.parametrize(("region", "address"), [("europe-west1", "192.0.2.10"), ("us-west1", "192.0.2.20")])
def test_the_steered_apps_service_is_a_load_balancer_on_the_regions_static_ip(region, address):
    spec = render(region=region).find("Service")["spec"]
    assert spec["type"] == "LoadBalancer"
    assert spec["loadBalancerIP"] == address
    assert spec["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]


def test_the_service_port_targets_the_containers_traffic_port_by_name():
    rendered = render()
    target = rendered.find("Service")["spec"]["ports"][0]["targetPort"]
    by_name = {p["name"]: p["containerPort"] for p in container(rendered)["ports"]}
    assert by_name[target] == 8080


def test_other_apps_services_are_cluster_internal():
    config = build_config(config_data(worker=True))
    spec = render(config, app="worker", img=image("w1", WORKER_REPO)).find("Service")["spec"]
    assert spec["type"] == "ClusterIP"
    assert "loadBalancerIP" not in spec


def test_the_service_port_comes_from_the_config():
    config = build_config(changed(config_data(), "apps[0].manifests", {"service_port": 8000}))
    assert render(config).find("Service")["spec"]["ports"][0]["port"] == 8000


# --- labels and selectors ---------------------------------------------------------------------


def test_every_object_carries_region_and_zone_labels():
    for obj in render(region="us-west1").objects:
        labels = obj["metadata"]["labels"]
        assert labels["geodeploy.dev/region"] == "us-west1"
        assert labels["geodeploy.dev/zone"] == "us-west1-a"
        assert labels["app.kubernetes.io/name"] == "shop"
        assert labels["app.kubernetes.io/managed-by"] == "geodeploy"


def test_pods_carry_the_labels_too():
    labels = render().find("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels["geodeploy.dev/region"] == "europe-west1"
    assert labels["app.kubernetes.io/name"] == "shop"


def test_selectors_contain_only_the_app_name_label():
    rendered = render()
    only_name = {"app.kubernetes.io/name": "shop"}
    assert rendered.find("Deployment")["spec"]["selector"] == {"matchLabels": only_name}
    assert rendered.find("PodDisruptionBudget")["spec"]["selector"] == {"matchLabels": only_name}
    assert rendered.find("Service")["spec"]["selector"] == only_name


def test_selectors_do_not_change_across_regions_digests_or_zones():
    a = render(region="europe-west1", img=image("v1"))
    b = render(region="asia-east1", img=image("v2"))
    for kind in ("Deployment", "PodDisruptionBudget", "Service"):
        assert a.find(kind)["spec"]["selector"] == b.find(kind)["spec"]["selector"]


def test_the_pod_template_labels_satisfy_the_selector():
    deployment = render().find("Deployment")["spec"]
    labels = deployment["template"]["metadata"]["labels"]
    assert deployment["selector"]["matchLabels"].items() <= labels.items()


# --- HPA and PDB ----------------------------------------------------------------------------


def test_the_autoscaler_scales_the_deployment_3_to_5_at_200_percent_cpu():
    spec = render().find("HorizontalPodAutoscaler")["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 5)
    assert spec["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 200}}}
    ]


def test_the_disruption_budget_keeps_two_pods():
    assert render().find("PodDisruptionBudget")["spec"]["minAvailable"] == 2


def test_rendering_does_not_share_mutable_state_between_releases():
    first = render()
    first.find("Deployment")["metadata"]["labels"]["tampered"] = "yes"
    first.find("Service")["metadata"]["labels"]["tampered"] = "yes"
    assert "tampered" not in render().find("Deployment")["metadata"]["labels"]
    assert "tampered" not in first.find("Namespace")["metadata"]["labels"]
