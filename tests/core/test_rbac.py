"""The Kubernetes RBAC rendered from the access table: namespace-scoped, by name, and
only for the functions that connect to that region's cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import App, Config, load_config
from shared.rbac import render_rbac, rendered_resources
from shared.topology import Names, Resource, functions_of, service_account_email

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "config").glob("*.yaml"))


@pytest.fixture(params=CONFIGS, ids=lambda p: p.stem)
def config(request: pytest.FixtureRequest) -> Config:
    return load_config(request.param)


def _bound_users(objects: list[dict]) -> set[str]:
    return {s["name"] for o in objects if o["kind"].endswith("Binding") for s in o["subjects"]}


def test_each_region_binds_its_own_deployer_and_the_central_readers_only(config: Config) -> None:
    for region in config.regions:
        users = _bound_users(render_rbac(config, region))
        expected = {
            service_account_email(config, spec.identity)
            for spec in functions_of(config)
            if region.name in spec.access.clusters and spec.access.kube
        }
        assert users == expected
        assert service_account_email(config, f"deploy-{region.name}") in users
        others = {service_account_email(config, f"deploy-{r.name}") for r in config.regions if r != region}
        assert not users & others
        assert service_account_email(config, "image_pushed") not in users  # it never connects


def test_rules_are_limited_to_the_apps_objects(config: Config) -> None:
    namespaces = {a.namespace for a in config.apps}
    for region in config.regions:
        objects = render_rbac(config, region)
        for role in (o for o in objects if o["kind"] in ("Role", "ClusterRole")):
            for rule in role["rules"]:
                assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
                if "resourceNames" not in rule and rule["verbs"] == ["delete"]:
                    # A prune deletes what an earlier config rendered (not nameable now):
                    # only the deployer of an app that brings its own manifests, in its namespace.
                    app = next(a for a in config.apps if a.namespace == role["metadata"]["namespace"])
                    assert app.source.kind != "builtin" and role["metadata"]["name"].endswith("-deploy-" + region.name)
                elif "resourceNames" not in rule:
                    # Only a POST names no object when it is authorized: the deployer's first
                    # workloads and first record. A create by server-side apply has a name.
                    assert rule["verbs"] == ["create"], rule
                    assert (rule["apiGroups"], rule["resources"]) in (
                        (["apps"], ["deployments"]),
                        (["apps"], ["statefulsets"]),
                        (["apps"], ["daemonsets"]),
                        ([""], ["configmaps"]),
                    )
                else:
                    assert rule["resourceNames"], rule
            if role["kind"] == "ClusterRole":  # the one cluster-wide grant: the apps' Namespaces
                [rule] = role["rules"]
                assert rule["resources"] == ["namespaces"] and set(rule["resourceNames"]) == namespaces
                assert set(rule["verbs"]) <= {"get", "patch"}
            else:
                assert role["metadata"]["namespace"] in namespaces
        bindings = [o for o in objects if o["kind"] == "ClusterRoleBinding"]
        assert all(b["roleRef"]["name"] in {o["metadata"]["name"] for o in objects} for b in bindings)


def test_the_bundle_creates_the_namespaces_first(config: Config) -> None:
    objects = render_rbac(config, config.regions[0])
    kinds = [o["kind"] for o in objects]
    assert kinds[: len(config.apps)] == ["Namespace"] * len(config.apps)
    assert {o["metadata"]["name"] for o in objects[: len(config.apps)]} == {a.namespace for a in config.apps}


def test_the_roles_carry_every_rule_of_the_access_table(config: Config) -> None:
    region = config.regions[0]
    objects = render_rbac(config, region)
    app = config.apps[0]
    rendered_parts = rendered_resources(config, app, region)
    for spec in functions_of(config):
        if region.name not in spec.access.clusters:
            continue
        name = f"{config.name}-{spec.identity.replace('_', '-')}"
        role = next(o for o in objects if o["kind"] == "Role" and o["metadata"] == {**o["metadata"], "name": name}
                    and o["metadata"]["namespace"] == app.namespace)  # fmt: skip
        rendered = {(r["apiGroups"][0], r["resources"][0], tuple(r["verbs"])) for r in role["rules"]}
        wanted = set()
        for rule in (r for r in spec.access.kube if r.names != Names.NAMESPACE):
            resources = [rule.on] if isinstance(rule.on, Resource) else list(rendered_parts[rule.on])
            wanted |= {(group, resource, rule.verbs) for group, resource in resources}
        assert rendered == wanted


def test_each_binding_binds_its_own_kind_of_role_by_name(config: Config) -> None:
    for region in config.regions:
        objects = render_rbac(config, region)
        roles = {
            (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in objects if "Role" in o["kind"]
        }
        for binding in (o for o in objects if o["kind"].endswith("Binding")):
            expected_kind = "Role" if binding["kind"] == "RoleBinding" else "ClusterRole"
            assert binding["roleRef"]["kind"] == expected_kind
            ref = (expected_kind, binding["roleRef"]["name"], binding["metadata"].get("namespace"))
            assert ref in roles, binding


def test_rules_name_exactly_the_apps_record_and_objects(config: Config) -> None:
    for role in (o for o in render_rbac(config, config.regions[0]) if o["kind"] == "Role"):
        app = next(a for a in config.apps if a.namespace == role["metadata"]["namespace"])
        if app.source.kind != "builtin":
            continue  # its objects' own names: test_rbac_follows_what_an_app_renders.py
        for rule in role["rules"]:
            if rule["resources"] == ["configmaps"] and "resourceNames" in rule:
                record, mark = f"geodeploy-releases-{app.name}", f"{config.name}-traffic-{app.name}"
                drift_mark = f"{config.name}-drift-{app.name}"
                assert rule["resourceNames"] in ([record], [mark], [drift_mark]), rule
                if rule["resourceNames"] == [mark]:  # only reconcile-traffic writes it, and nothing else
                    assert role["metadata"]["name"].endswith("-traffic"), role["metadata"]
                elif rule["resourceNames"] == [drift_mark]:  # check-drift writes it, the status page reads it
                    assert role["metadata"]["name"].endswith(("-drift", "-status-page")), role["metadata"]
                    if role["metadata"]["name"].endswith("-status-page"):
                        assert rule["verbs"] == ["get"], rule
                else:
                    assert set(rule["verbs"]) <= {"get", "update"}, rule
            elif "resourceNames" in rule:
                assert rule["resourceNames"] == [app.name], rule


# What each identity may do in a cluster to a built-in app, spelled out once more on
# purpose: the table in shared/topology.py renders the RBAC, so a verb added there would
# pass every test that compares the two. Widening a grant has to change this line too, in
# review. (A brought app's: tests/core/test_rbac_follows_what_an_app_renders.py.)
EXPECTED_VERBS = {
    "deploy": {
        ("", "configmaps"): {"get", "update", "create"},
        ("", "namespaces"): {"patch"},
        ("apps", "deployments"): {"get", "patch", "watch", "create"},
        ("apps", "deployments/scale"): {"patch"},
        ("", "services"): {"patch", "create"},
        ("autoscaling", "horizontalpodautoscalers"): {"patch", "create"},
        ("policy", "poddisruptionbudgets"): {"patch", "create"},
    },
    # configmaps: get the release record; get and apply its own last-check mark
    "drift": {
        ("", "configmaps"): {"get", "patch", "create"},
        ("", "namespaces"): {"get", "patch"},
        ("apps", "deployments"): {"get", "patch"},
        ("", "services"): {"get", "patch", "create"},
        ("autoscaling", "horizontalpodautoscalers"): {"get", "patch", "create"},
        ("policy", "poddisruptionbudgets"): {"get", "patch", "create"},
    },
    # configmaps: get the release record; get and apply its own coalescing mark
    "traffic": {("", "configmaps"): {"get", "patch", "create"}, ("apps", "deployments"): {"get"}},
    "control": {("", "configmaps"): {"get"}},
    "waves": {("", "configmaps"): {"get"}},
    "image_pushed": {},
    "notify": {},  # posts to webhooks: no cluster at all
    # reads only: the release record, the workloads, the last drift check
    "status_page": {("", "configmaps"): {"get"}, ("apps", "deployments"): {"get"}},
}


def _granted(config: Config, identity: str, app: App) -> dict[tuple[str, str], set[str]]:
    """What `identity` may do to `app` in its clusters: its Role in the app's namespace and
    its ClusterRole on the Namespaces, as rendered."""
    spec = next(s for s in functions_of(config) if s.identity == identity)
    if not spec.access.clusters:
        return {}
    name = f"{config.name}-{identity.replace('_', '-')}"
    granted: dict[tuple[str, str], set[str]] = {}
    for role in render_rbac(config, config.region(spec.access.clusters[0])):
        meta = role["metadata"]
        ours = role["kind"] == "Role" and (meta["name"], meta["namespace"]) == (name, app.namespace)
        if ours or (role["kind"] == "ClusterRole" and meta["name"] == f"{name}-namespaces"):
            for rule in role["rules"]:
                granted.setdefault((rule["apiGroups"][0], rule["resources"][0]), set()).update(rule["verbs"])
    return granted


def test_each_identity_has_exactly_the_verbs_its_code_uses(config: Config) -> None:
    for spec in functions_of(config):
        role = "deploy" if spec.identity.startswith("deploy-") else spec.identity
        for app in (a for a in config.apps if a.source.kind == "builtin"):
            assert _granted(config, spec.identity, app) == EXPECTED_VERBS[role], spec.identity
