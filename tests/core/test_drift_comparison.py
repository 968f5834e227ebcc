"""Drift: a hand edit to a released object is reported at its own path; server defaults
and HPA-driven replicas never are; hand-altered lists are repaired whole."""

from __future__ import annotations

import copy

import pytest

from shared.drift import ABSENT, compare_object, list_repairs
from shared.rendering import object_key, render_release
from tests.core.builders import build_config, changed, config_data, image

CONTAINERS = "spec.template.spec.containers[name=app]"


def rendered(config=None):
    config = config or build_config()
    return render_release(config, config.app("shop"), config.region("europe-west1"), image("v1"))


def desired(kind, config=None):
    return copy.deepcopy(rendered(config).find(kind))


def as_served(obj):
    """The object as the API server returns it: with ids, defaults, HPA replicas and status."""
    live = copy.deepcopy(obj)
    live["metadata"].update(
        uid="5f1c",
        resourceVersion="4711",
        generation=3,
        creationTimestamp="2026-03-01T12:00:00Z",
        managedFields=[{"manager": "geodeploy", "operation": "Apply"}],
    )
    live["metadata"]["labels"]["added-by-gke"] = "true"
    kind = live["kind"]
    if kind == "Deployment":
        live["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "3"}
        spec = live["spec"]
        spec["replicas"] = 5  # the HPA scaled it
        pod = spec["template"]["spec"]
        pod.update(
            restartPolicy="Always",
            dnsPolicy="ClusterFirst",
            schedulerName="default-scheduler",
            securityContext={},
            terminationGracePeriodSeconds=30,
        )
        spec["template"]["metadata"]["creationTimestamp"] = None
        for c in pod["containers"]:
            c.update(
                imagePullPolicy="IfNotPresent",
                terminationMessagePath="/dev/termination-log",
                terminationMessagePolicy="File",
            )
            for probe in ("readinessProbe", "livenessProbe"):
                c[probe]["httpGet"]["scheme"] = "HTTP"
        live["status"] = {"replicas": 5, "availableReplicas": 5, "observedGeneration": 3}
    elif kind == "Service":
        live["spec"].update(
            clusterIP="10.0.0.7",
            clusterIPs=["10.0.0.7"],
            sessionAffinity="None",
            ipFamilies=["IPv4"],
            externalTrafficPolicy="Cluster",
            internalTrafficPolicy="Cluster",
            allocateLoadBalancerNodePorts=True,
        )
        live["spec"]["ports"][0]["nodePort"] = 31234
        live["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}
    elif kind == "HorizontalPodAutoscaler":
        live["spec"]["behavior"] = {"scaleDown": {"stabilizationWindowSeconds": 300}}
        live["status"] = {"currentReplicas": 5, "desiredReplicas": 5}
    elif kind == "PodDisruptionBudget":
        live["status"] = {"disruptionsAllowed": 3}
    return live


def compare(obj, live, dry_run=None):
    return compare_object(object_key(obj), obj, live, dry_run)


# --- no drift ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["Namespace", "Service", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget"]
)
def test_a_live_object_equal_to_the_release_plus_server_defaults_has_no_drift(kind):
    obj = desired(kind)
    assert compare(obj, as_served(obj)) == []


def test_replicas_set_by_the_hpa_are_never_drift():
    obj = desired("Deployment")
    for replicas in (1, 3, 5, 50):
        live = as_served(obj)
        live["spec"]["replicas"] = replicas
        assert compare(obj, live) == []


def test_compare_does_not_modify_its_inputs():
    obj = desired("Service")
    live = as_served(obj)
    live["spec"]["ports"][0]["port"] = 8081
    before_obj, before_live = copy.deepcopy(obj), copy.deepcopy(live)
    compare(obj, live)
    assert (obj, live) == (before_obj, before_live)


# --- hand edits ----------------------------------------------------------------------------------------


def test_kubectl_set_image_is_one_difference_at_the_container_image():
    obj = desired("Deployment")
    live = as_served(obj)
    by_hand = image("hotfix-by-hand").reference
    live["spec"]["template"]["spec"]["containers"][0]["image"] = by_hand
    [difference] = compare(obj, live)
    assert difference.path == f"{CONTAINERS}.image"
    assert difference.expected == image("v1").reference
    assert difference.live == by_hand
    assert difference.object == "Deployment/shop/shop"
    assert difference.as_dict() == {
        "object": "Deployment/shop/shop",
        "path": f"{CONTAINERS}.image",
        "expected": image("v1").reference,
        "live": by_hand,
    }


@pytest.mark.parametrize(
    ("probe", "field", "value"),
    [
        ("readinessProbe", "periodSeconds", 30),
        ("livenessProbe", "failureThreshold", 1),
        ("readinessProbe", "initialDelaySeconds", 0),
    ],
)
def test_a_changed_probe_field_is_reported_at_its_path(probe, field, value):
    obj = desired("Deployment")
    live = as_served(obj)
    expected = live["spec"]["template"]["spec"]["containers"][0][probe][field]
    live["spec"]["template"]["spec"]["containers"][0][probe][field] = value
    [difference] = compare(obj, live)
    assert difference.path == f"{CONTAINERS}.{probe}.{field}"
    assert (difference.expected, difference.live) == (expected, value)


def test_a_probe_path_changed_by_hand_is_reported():
    obj = desired("Deployment")
    live = as_served(obj)
    live["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["path"] = "/"
    assert [d.path for d in compare(obj, live)] == [f"{CONTAINERS}.livenessProbe.httpGet.path"]


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda s: s["spec"].update(minReplicas=1), "spec.minReplicas"),
        (lambda s: s["spec"]["metrics"][0]["resource"]["target"].update(averageUtilization=80), "spec.metrics"),
    ],
)
def test_autoscaler_edits_are_reported(edit, path):
    obj = desired("HorizontalPodAutoscaler")
    live = as_served(obj)
    edit(live)
    assert [d.path for d in compare(obj, live)] == [path]


def test_a_lowered_disruption_budget_is_reported():
    obj = desired("PodDisruptionBudget")
    live = as_served(obj)
    live["spec"]["minAvailable"] = 0
    [difference] = compare(obj, live)
    assert (difference.path, difference.expected, difference.live) == ("spec.minAvailable", 2, 0)


def test_a_removed_label_is_reported():
    obj = desired("Deployment")
    live = as_served(obj)
    del live["metadata"]["labels"]["geodeploy.dev/region"]
    [difference] = compare(obj, live)
    assert difference.path == "metadata.labels.geodeploy.dev/region"
    assert difference.live == ABSENT


def test_a_switched_service_type_is_reported():
    obj = desired("Service")
    live = as_served(obj)
    live["spec"]["type"] = "NodePort"
    del live["spec"]["loadBalancerIP"]
    assert {(d.path, d.live) for d in compare(obj, live)} == {
        ("spec.type", "NodePort"),
        ("spec.loadBalancerIP", ABSENT),
    }


# --- lists ----------------------------------------------------------------------------------------------


def test_a_port_added_by_hand_is_repaired_by_replacing_the_whole_list():
    obj = desired("Service")
    live = as_served(obj)
    live["spec"]["ports"].append({"name": "debug", "port": 9000, "targetPort": 9000, "protocol": "TCP"})
    [difference] = compare(obj, live)
    assert difference.path == "spec.ports[name=debug]"
    assert (difference.expected, difference.live["port"]) == (ABSENT, 9000)
    assert difference.list_pointer == "/spec/ports"
    assert list_repairs([difference], obj) == [{"op": "replace", "path": "/spec/ports", "value": obj["spec"]["ports"]}]


def test_a_port_changed_in_place_and_another_added_are_both_reported_and_the_list_is_replaced():
    obj = desired("Service")
    live = as_served(obj)
    live["spec"]["ports"][0]["port"] = 8081
    live["spec"]["ports"].append({"name": "debug", "port": 9000, "targetPort": 9000, "protocol": "TCP"})
    differences = compare(obj, live)
    assert {d.path for d in differences} == {"spec.ports[name=http].port", "spec.ports[name=debug]"}
    port = next(d for d in differences if d.path.endswith(".port"))
    assert (port.expected, port.live) == (80, 8081)
    assert list_repairs(differences, obj) == [
        {
            "op": "replace",
            "path": "/spec/ports",
            "value": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        }
    ]


def test_a_port_changed_in_place_is_repaired_by_replacing_the_whole_list():
    obj = desired("Service")
    live = as_served(obj)
    live["spec"]["ports"][0]["port"] = 8081
    differences = compare(obj, live)
    assert [d.path for d in differences] == ["spec.ports[name=http].port"]
    assert differences[0].list_pointer == "/spec/ports"
    assert list_repairs(differences, obj) == [{"op": "replace", "path": "/spec/ports", "value": obj["spec"]["ports"]}]


def test_a_removed_port_is_reported_with_its_list():
    obj = desired("Deployment")
    live = as_served(obj)
    del live["spec"]["template"]["spec"]["containers"][0]["ports"][1]
    [difference] = compare(obj, live)
    assert difference.path == f"{CONTAINERS}.ports[name=monitoring]"
    assert difference.live == ABSENT
    assert difference.list_pointer == "/spec/template/spec/containers/0/ports"


def test_a_sidecar_added_by_hand_is_repaired_by_replacing_the_containers():
    obj = desired("Deployment")
    live = as_served(obj)
    live["spec"]["template"]["spec"]["containers"].insert(0, {"name": "sidecar", "image": "busybox"})
    differences = compare(obj, live)
    assert [d.path for d in differences] == ["spec.template.spec.containers[name=sidecar]"]
    [repair] = list_repairs(differences, obj)
    assert repair["path"] == "/spec/template/spec/containers"
    assert [c["name"] for c in repair["value"]] == ["app"]


def test_a_change_inside_a_moved_list_item_points_at_its_live_index():
    obj = desired("Deployment")
    live = as_served(obj)
    containers = live["spec"]["template"]["spec"]["containers"]
    containers.insert(0, {"name": "sidecar", "image": "busybox"})
    containers[1]["image"] = image("other").reference
    paths = {d.path for d in compare(obj, live)}
    assert paths == {"spec.template.spec.containers[name=sidecar]", f"{CONTAINERS}.image"}


def test_repairs_replace_each_list_once():
    obj = desired("Service")
    live = as_served(obj)
    live["spec"]["ports"] += [{"name": "a", "port": 1}, {"name": "b", "port": 2}]
    differences = compare(obj, live)
    assert len(differences) == 2
    assert len(list_repairs(differences, obj)) == 1


def test_an_anti_affinity_changed_by_hand_is_reported():
    obj = desired("Deployment")
    live = as_served(obj)
    affinity = live["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] = 1
    [difference] = compare(obj, live)
    assert (
        difference.path == "spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution"
    )


# --- missing objects and dry-run values ------------------------------------------------------------------


def test_a_missing_object_is_one_difference():
    obj = desired("PodDisruptionBudget")
    [difference] = compare(obj, None)
    assert (difference.object, difference.path, difference.expected, difference.live) == (
        "PodDisruptionBudget/shop/shop",
        "",
        "present",
        ABSENT,
    )


def cpu_config(cpu):
    return build_config(changed(config_data(), "apps[0].manifests", {"resources": {"requests_cpu": cpu}}))


def test_expected_values_come_from_the_dry_run_when_given():
    obj = desired("Deployment", cpu_config("0.5"))
    dry_run = copy.deepcopy(obj)
    dry_run["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "500m"
    live = as_served(dry_run)
    assert compare(obj, live, dry_run) == []


def test_a_hand_edit_is_reported_against_the_servers_normal_form():
    obj = desired("Deployment", cpu_config("0.5"))
    dry_run = copy.deepcopy(obj)
    dry_run["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "500m"
    live = as_served(dry_run)
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "2"
    [difference] = compare(obj, live, dry_run)
    assert difference.path == f"{CONTAINERS}.resources.requests.cpu"
    assert (difference.expected, difference.live) == ("500m", "2")


def test_numbers_and_their_string_form_are_the_same_value():
    obj = desired("PodDisruptionBudget")
    live = as_served(obj)
    live["spec"]["minAvailable"] = "2"
    assert compare(obj, live) == []


def test_without_a_dry_run_a_quantity_the_server_rewrote_is_not_drift():
    obj = desired("Deployment", cpu_config("0.5"))
    live = as_served(obj)
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "500m"
    assert compare(obj, live) == []
