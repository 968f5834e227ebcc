"""An app that brings its own manifests gets RBAC on exactly the objects it renders in
each region: the deployer may apply each by name, watch its workloads by name and POST
only workloads; drift may read, compare and re-create the rest by name; traffic reads
the workloads. A built-in app's grants stay what they were."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.config import App, Config, Region, load_config
from shared.kinds import KINDS, kind_of
from shared.rbac import render_rbac
from shared.rendering import render_release
from shared.topology import KubeRule, Names, Rendered, Resource
from tests.core.builders import build_config, build_sourced_config, image

SEED = Path(__file__).resolve().parents[2] / "config" / "examples" / "seed.yaml"
# A prune deletes what an earlier config rendered, which the current one cannot name: the
# deployer of a brought app may delete any namespaced kind geodeploy applies, in its
# app's namespace (its Role's) only.
PRUNE = [(k.api_group, k.rbac_resource, ("delete",), ()) for k in KINDS if k.namespaced]


def _workload(kind: str, name: str) -> str:
    return f"""\
apiVersion: apps/v1
kind: {kind}
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: app, image: __IMAGE__}}]
"""


DIRECTORY = {
    "app/10-account.yaml": "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: runner}\n",
    # a per-region name: each cluster's Role names its own
    "app/20-config.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings-__REGION__}\ndata: {a: b}\n",
    "app/30-web.yaml": _workload("Deployment", "web"),
    "app/40-worker.yaml": _workload("Deployment", "worker"),
    "app/50-db.yaml": _workload("StatefulSet", "db"),
}


def _directory_config(extra: dict[str, str] | None = None) -> Config:
    return build_sourced_config({"directory": "app"}, {**DIRECTORY, **(extra or {})})


def _rules(config: Config, region: Region, identity: str, app: App) -> list[tuple[str, str, tuple[str, ...], tuple]]:
    """(apiGroup, resource, verbs, resourceNames) of `identity`'s Role in the app's namespace."""
    name = f"{config.name}-{identity}"
    [role] = [
        o
        for o in render_rbac(config, region)
        if o["kind"] == "Role" and (o["metadata"]["name"], o["metadata"]["namespace"]) == (name, app.namespace)
    ]
    return [
        (r["apiGroups"][0], r["resources"][0], tuple(r["verbs"]), tuple(r.get("resourceNames", ())))
        for r in role["rules"]
    ]


def _rendered(config: Config, app: App, region: Region) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, name) of each namespaced object the app's release renders."""
    objects: list[dict[str, Any]] = list(render_release(config, app, region, image()).objects)
    found = set()
    for obj in objects:
        kind = kind_of(obj["apiVersion"], obj["kind"])
        assert kind is not None
        if kind.namespaced:
            found.add((kind.api_group, kind.rbac_resource, obj["metadata"]["name"]))
    return found


def _named(rules: list[tuple[str, str, tuple[str, ...], tuple]], verb: str) -> set[tuple[str, str, str]]:
    """The objects (not subresources) `verb` is granted on by name."""
    return {
        (group, resource, name)
        for group, resource, verbs, names in rules
        if verb in verbs and "/" not in resource
        for name in names
    }


# --- the seed article's template ---------------------------------------------------------------


def test_the_seed_deployer_may_apply_exactly_the_objects_its_template_renders() -> None:
    config = load_config(SEED)
    app, region = config.apps[0], config.regions[0]
    rules = _rules(config, region, f"deploy-{region.name}", app)
    assert _named(rules, "patch") == _rendered(config, app, region)  # the record is `update`d, not patched
    assert rules == [
        ("", "configmaps", ("get", "update"), ("geodeploy-releases-my-app",)),
        ("", "configmaps", ("create",), ()),
        ("apps", "deployments", ("get", "patch", "watch"), ("my-app-deployment",)),
        ("apps", "deployments", ("create",), ()),
        ("apps", "deployments/scale", ("patch",), ("my-app-deployment",)),
        ("", "services", ("patch", "create"), ("my-app-service",)),
        ("autoscaling", "horizontalpodautoscalers", ("patch", "create"), ("my-app-hpa",)),
        ("policy", "poddisruptionbudgets", ("patch", "create"), ("my-app-pdb",)),
        *PRUNE,
    ]


def test_the_seed_drift_check_and_traffic_name_the_templates_objects() -> None:
    config = load_config(SEED)
    app, region = config.apps[0], config.regions[0]
    drift = _rules(config, region, "drift", app)
    own = {("", "configmaps", "geodeploy-releases-my-app"), ("", "configmaps", f"{config.name}-drift-my-app")}
    assert _named(drift, "get") - own == _rendered(config, app, region)
    assert _named(drift, "create") == {
        ("", "services", "my-app-service"),
        ("autoscaling", "horizontalpodautoscalers", "my-app-hpa"),
        ("policy", "poddisruptionbudgets", "my-app-pdb"),
        ("", "configmaps", f"{config.name}-drift-my-app"),  # its last-check mark
    }
    traffic = _rules(config, region, "traffic", app)
    assert ("apps", "deployments", ("get",), ("my-app-deployment",)) in traffic


# --- a directory of its own --------------------------------------------------------------------


def test_a_directory_apps_deployer_role_names_exactly_its_rendered_objects() -> None:
    config = _directory_config()
    app = config.apps[0]
    for region in config.regions:
        rules = _rules(config, region, f"deploy-{region.name}", app)
        assert _named(rules, "patch") == _rendered(config, app, region)
        assert rules == [
            ("", "configmaps", ("get", "update"), ("geodeploy-releases-shop",)),
            ("", "configmaps", ("create",), ()),
            ("apps", "deployments", ("get", "patch", "watch"), ("web", "worker")),
            ("apps", "statefulsets", ("get", "patch", "watch"), ("db",)),
            # a first release POSTs each workload: only workloads may be created unnamed
            ("apps", "deployments", ("create",), ()),
            ("apps", "statefulsets", ("create",), ()),
            # no HPA scales any of them: no initial scale, no scale grant
            ("", "serviceaccounts", ("patch", "create"), ("runner",)),
            ("", "configmaps", ("patch", "create"), (f"settings-{region.name}",)),
            *PRUNE,
        ]


def test_a_directory_apps_drift_check_may_recreate_only_what_is_not_a_workload() -> None:
    config = _directory_config()
    app, region = config.apps[0], config.region("us-west1")
    assert _rules(config, region, "drift", app) == [
        ("", "configmaps", ("get",), ("geodeploy-releases-shop",)),
        ("apps", "deployments", ("get", "patch"), ("web", "worker")),
        ("apps", "statefulsets", ("get", "patch"), ("db",)),
        ("", "serviceaccounts", ("get", "patch", "create"), ("runner",)),
        ("", "configmaps", ("get", "patch", "create"), ("settings-us-west1",)),
        ("", "configmaps", ("get", "patch", "create"), (f"{config.name}-drift-shop",)),
    ]
    assert ("apps", "deployments", ("get",), ("web", "worker")) in _rules(config, region, "traffic", app)
    assert ("apps", "statefulsets", ("get",), ("db",)) in _rules(config, region, "traffic", app)


def test_a_workload_an_hpa_scales_may_be_scaled_by_name() -> None:
    autoscaler = """\
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: db}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: StatefulSet, name: db}
  minReplicas: 2
  maxReplicas: 4
"""
    config = _directory_config({"app/60-autoscaler.yaml": autoscaler})
    app, region = config.apps[0], config.regions[0]
    rules = _rules(config, region, f"deploy-{region.name}", app)
    assert ("apps", "statefulsets/scale", ("patch",), ("db",)) in rules
    assert ("autoscaling", "horizontalpodautoscalers", ("patch", "create"), ("db",)) in rules


def test_the_namespace_stays_a_cluster_wide_grant_by_name() -> None:
    config = _directory_config()
    region = config.regions[0]
    name = f"{config.name}-deploy-{region.name}-namespaces"
    objects = render_rbac(config, region)
    [cluster_role] = [o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"] == name]
    assert cluster_role["rules"] == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["patch"], "resourceNames": ["shop"]}
    ]
    assert not [r for r in _rules(config, region, f"deploy-{region.name}", config.apps[0]) if r[1] == "namespaces"]


# --- the built-in source ---------------------------------------------------------------------


def test_a_builtin_apps_deployer_role_is_what_it_always_was() -> None:
    config = build_config()
    region = config.regions[0]
    assert _rules(config, region, f"deploy-{region.name}", config.apps[0]) == [
        ("", "configmaps", ("get", "update"), ("geodeploy-releases-shop",)),
        ("", "configmaps", ("create",), ()),
        ("apps", "deployments", ("get", "patch", "watch"), ("shop",)),
        ("apps", "deployments", ("create",), ()),
        ("apps", "deployments/scale", ("patch",), ("shop",)),
        ("", "services", ("patch", "create"), ("shop",)),
        ("autoscaling", "horizontalpodautoscalers", ("patch", "create"), ("shop",)),
        ("policy", "poddisruptionbudgets", ("patch", "create"), ("shop",)),
    ]
    assert _rules(config, region, "drift", config.apps[0]) == [
        ("", "configmaps", ("get",), ("geodeploy-releases-shop",)),
        ("apps", "deployments", ("get", "patch"), ("shop",)),
        ("", "services", ("get", "patch", "create"), ("shop",)),
        ("autoscaling", "horizontalpodautoscalers", ("get", "patch", "create"), ("shop",)),
        ("policy", "poddisruptionbudgets", ("get", "patch", "create"), ("shop",)),
        ("", "configmaps", ("get", "patch", "create"), ("geodeploy-drift-shop",)),
    ]
    assert _rules(config, region, "traffic", config.apps[0]) == [
        ("", "configmaps", ("get",), ("geodeploy-releases-shop",)),
        ("apps", "deployments", ("get",), ("shop",)),
        ("", "configmaps", ("get", "patch", "create"), ("geodeploy-traffic-shop",)),
    ]


def test_a_rule_is_limited_only_to_names_its_target_has() -> None:
    with pytest.raises(ValueError, match="cannot be limited"):
        KubeRule(Rendered.OBJECTS, ("get",), Names.RECORD)
    with pytest.raises(ValueError, match="cannot be limited"):
        KubeRule(Resource("", "configmaps"), ("get",), Names.RENDERED)
