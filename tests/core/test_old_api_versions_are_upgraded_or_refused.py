"""Manifests an app brings may be in API versions clusters no longer serve: those with a
mechanical conversion are upgraded (each upgrade a note), the others refused naming the
field."""

from __future__ import annotations

import pytest

from shared.api_upgrades import REMOVED_API_VERSIONS, FieldError, upgrade_document


def deployment(api_version="extensions/v1beta1", **spec):
    spec.setdefault("template", {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}})
    return {"apiVersion": api_version, "kind": "Deployment", "metadata": {"name": "web"}, "spec": spec}


def refusal(document) -> FieldError:
    with pytest.raises(FieldError) as caught:
        upgrade_document(document)
    return caught.value


# --- Deployments ------------------------------------------------------------------------------


@pytest.mark.parametrize("old", ["extensions/v1beta1", "apps/v1beta1", "apps/v1beta2"])
def test_an_old_deployment_becomes_apps_v1_with_its_selector_filled_from_the_pod_labels(old):
    upgraded, notes = upgrade_document(deployment(old, revisionHistoryLimit=2, strategy={"type": "Recreate"}))
    assert upgraded["apiVersion"] == "apps/v1"
    assert upgraded["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert notes == [
        f"{old} Deployment upgraded to apps/v1",
        "spec.selector.matchLabels filled from spec.template.metadata.labels (required in apps/v1)",
    ]


def test_an_existing_selector_is_kept():
    selector = {"matchLabels": {"app": "web", "tier": "front"}}
    upgraded, notes = upgrade_document(deployment(selector=selector, revisionHistoryLimit=2, strategy={}))
    assert upgraded["spec"]["selector"] == selector
    assert notes == ["extensions/v1beta1 Deployment upgraded to apps/v1"]


def test_the_apps_v1_defaults_a_silent_document_now_gets_are_reported():
    _, notes = upgrade_document(deployment())
    assert (
        notes[-1]
        == "apps/v1 defaults apply where the document is silent: revisionHistoryLimit 10, rollingUpdate 25%/25%"
    )


def test_the_input_document_is_not_changed():
    original = deployment()
    upgrade_document(original)
    assert original == deployment()


def test_a_deployment_with_neither_selector_nor_pod_labels_is_refused():
    error = refusal(deployment(template={"spec": {"containers": []}}))
    assert error.path == "spec.selector"
    assert "required in apps/v1, and spec.template.metadata.labels is empty" in str(error)


def test_rollback_to_has_no_apps_v1_form():
    assert refusal(deployment(rollbackTo={"revision": 3})).path == "spec.rollbackTo"


def test_a_current_deployment_is_returned_as_it_is():
    current = deployment("apps/v1", selector={"matchLabels": {"app": "web"}})
    assert upgrade_document(current) == (current, [])


# --- autoscalers ------------------------------------------------------------------------------


def autoscaler(api_version, metrics, target_api="apps/v1"):
    return {
        "apiVersion": api_version,
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": target_api, "kind": "Deployment", "name": "web"},
            "minReplicas": 3,
            "maxReplicas": 5,
            "metrics": metrics,
        },
    }


def test_v2beta1_target_average_utilization_becomes_a_v2_utilization_target():
    metrics = [{"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": 200}}]
    upgraded, notes = upgrade_document(autoscaler("autoscaling/v2beta1", metrics))
    assert upgraded["apiVersion"] == "autoscaling/v2"
    assert upgraded["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 200}}}
    ]
    assert notes == [
        "autoscaling/v2beta1 HorizontalPodAutoscaler upgraded to autoscaling/v2",
        "spec.metrics rewritten to autoscaling/v2 targets",
    ]


@pytest.mark.parametrize(
    ("v2beta1", "v2"),
    [
        (
            {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "300Mi"}},
            {
                "type": "Resource",
                "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "300Mi"}},
            },
        ),
        (
            {
                "type": "Pods",
                "pods": {"metricName": "qps", "targetAverageValue": "10", "selector": {"matchLabels": {"a": "b"}}},
            },
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "qps", "selector": {"matchLabels": {"a": "b"}}},
                    "target": {"type": "AverageValue", "averageValue": "10"},
                },
            },
        ),
        (
            {
                "type": "Object",
                "object": {"target": {"kind": "Service", "name": "s"}, "metricName": "rps", "targetValue": "5"},
            },
            {
                "type": "Object",
                "object": {
                    "describedObject": {"kind": "Service", "name": "s"},
                    "metric": {"name": "rps"},
                    "target": {"type": "Value", "value": "5"},
                },
            },
        ),
        (
            {"type": "External", "external": {"metricName": "queue", "metricSelector": {}, "targetAverageValue": "30"}},
            {
                "type": "External",
                "external": {
                    "metric": {"name": "queue", "selector": {}},
                    "target": {"type": "AverageValue", "averageValue": "30"},
                },
            },
        ),
    ],
    ids=["resource-value", "pods", "object", "external"],
)
def test_every_v2beta1_metric_type_converts(v2beta1, v2):
    upgraded, _ = upgrade_document(autoscaler("autoscaling/v2beta1", [v2beta1]))
    assert upgraded["spec"]["metrics"] == [v2]


def test_a_v2beta1_metric_field_with_no_v2_form_is_refused_not_dropped():
    metrics = [{"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": 80, "window": "1m"}}]
    error = refusal(autoscaler("autoscaling/v2beta1", metrics))
    assert error.path == "spec.metrics[0].resource.window"


def test_a_v2beta1_metric_with_two_targets_is_refused():
    metrics = [
        {"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": 80, "targetAverageValue": "1"}}
    ]
    assert refusal(autoscaler("autoscaling/v2beta1", metrics)).path == "spec.metrics[0].resource"


def test_v2beta2_has_the_v2_schema_and_only_changes_version():
    metrics = [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
    ]
    upgraded, notes = upgrade_document(autoscaler("autoscaling/v2beta2", metrics))
    assert upgraded == {**autoscaler("autoscaling/v2", metrics)}
    assert notes == ["autoscaling/v2beta2 HorizontalPodAutoscaler upgraded to autoscaling/v2"]


def test_an_autoscaler_still_pointing_at_an_old_deployment_version_points_at_apps_v1():
    upgraded, notes = upgrade_document(autoscaler("autoscaling/v1", [], target_api="extensions/v1beta1"))
    assert upgraded["apiVersion"] == "autoscaling/v1"
    assert upgraded["spec"]["scaleTargetRef"]["apiVersion"] == "apps/v1"
    assert notes == ["spec.scaleTargetRef.apiVersion extensions/v1beta1 upgraded to apps/v1"]


# --- disruption budgets, cron jobs, ingresses, the rest --------------------------------------------


def budget(selector):
    spec = {"minAvailable": 2} | ({"selector": selector} if selector is not None else {})
    return {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"}, "spec": spec}


def test_a_policy_v1beta1_budget_becomes_policy_v1():
    upgraded, notes = upgrade_document(budget({"matchLabels": {"app": "web"}}))
    assert upgraded["apiVersion"] == "policy/v1"
    assert upgraded["spec"] == {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}
    assert notes == ["policy/v1beta1 PodDisruptionBudget upgraded to policy/v1"]


@pytest.mark.parametrize("selector", [None, {}], ids=["missing", "empty"])
def test_a_budget_whose_empty_selector_would_change_meaning_is_refused(selector):
    # Empty: no pod in policy/v1beta1, every pod of the namespace in policy/v1.
    error = refusal(budget(selector))
    assert error.path == "spec.selector"
    assert "every pod of the namespace in policy/v1" in str(error)


def test_a_batch_v1beta1_cron_job_becomes_batch_v1():
    job = {
        "apiVersion": "batch/v1beta1",
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "@daily"},
    }
    upgraded, notes = upgrade_document(job)
    assert upgraded == {**job, "apiVersion": "batch/v1"}
    assert notes == ["batch/v1beta1 CronJob upgraded to batch/v1"]


@pytest.mark.parametrize("api_version", ["extensions/v1beta1", "networking.k8s.io/v1beta1"])
def test_an_old_ingress_is_refused_naming_the_fields_whose_shape_changed(api_version):
    error = refusal({"apiVersion": api_version, "kind": "Ingress", "metadata": {"name": "web"}, "spec": {}})
    assert error.path == "apiVersion"
    for field in ("spec.backend", "spec.defaultBackend", "serviceName/servicePort", "service.port.number", "pathType"):
        assert field in str(error)


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("extensions/v1beta1", "DaemonSet"),
        ("extensions/v1beta1", "NetworkPolicy"),
        ("apps/v1beta2", "StatefulSet"),
        ("rbac.authorization.k8s.io/v1beta1", "Role"),
        ("policy/v1beta1", "PodSecurityPolicy"),
        ("storage.k8s.io/v1beta1", "StorageClass"),
    ],
)
def test_anything_else_in_a_removed_api_version_is_refused(api_version, kind):
    error = refusal({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}})
    assert error.path == "apiVersion"
    assert (
        f"{api_version} {kind} is no longer served (removed in Kubernetes {REMOVED_API_VERSIONS[api_version]})"
        in str(error)
    )


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("v1", "ConfigMap"),
        ("autoscaling/v1", "HorizontalPodAutoscaler"),
        ("networking.k8s.io/v1", "Ingress"),
        ("example.com/v1beta1", "Widget"),
    ],
)
def test_served_and_unknown_versions_pass_unchanged(api_version, kind):
    document = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}}
    assert upgrade_document(document) == (document, [])
