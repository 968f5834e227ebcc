"""Rendering an app that brings its own manifests: the loaded documents, in order, with
the region's values substituted, geodeploy's labels on each object and the app's
Namespace always there; the workloads to wait for are the release's health targets."""

from __future__ import annotations

import copy

from shared.rendering import HealthTarget, render_release
from tests.core.builders import build_config, build_sourced_config, image

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, labels: {labels}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: c, image: {image}}}]}}
"""


def deployment(name, image="__IMAGE__", labels="{}"):
    return DEPLOYMENT.format(name=name, image=image, labels=labels)


def render(files, source=None, region="europe-west1", img=None):
    config = build_sourced_config(source or {"template": "k8s.yaml"}, files)
    return render_release(config, config.apps[0], config.region(region), img or image("v1"))


def test_geodeploys_labels_win_over_the_users_for_geodeploys_keys():
    labels = "{app.kubernetes.io/name: other, geodeploy.dev/region: mars, team: a}"
    obj = render({"k8s.yaml": deployment("web", labels=labels)}).find("Deployment")
    assert obj["metadata"]["labels"] == {
        "app.kubernetes.io/name": "shop",
        "app.kubernetes.io/managed-by": "geodeploy",
        "geodeploy.dev/region": "europe-west1",
        "geodeploy.dev/zone": "europe-west1-b",
        "team": "a",
    }


# --- the Namespace -----------------------------------------------------------------------------


def test_the_apps_namespace_is_rendered_first_when_the_template_lacks_it():
    rendered = render({"k8s.yaml": deployment("web")})
    builtin = render_release(build_config(), build_config().apps[0], build_config().region("europe-west1"), image())
    assert rendered.objects[0] == builtin.find("Namespace")
    assert [o["kind"] for o in rendered.objects] == ["Namespace", "Deployment"]


def test_a_templates_own_namespace_keeps_its_place_and_gets_the_labels():
    files = {"k8s.yaml": deployment("web") + "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"}
    rendered = render(files)
    assert [o["kind"] for o in rendered.objects] == ["Deployment", "Namespace"]
    assert rendered.find("Namespace")["metadata"]["labels"]["geodeploy.dev/region"] == "europe-west1"


# --- a directory, and health targets ------------------------------------------------------------------


def directory_files():
    return {
        "app/10-config.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: prod}\n",
        "app/20-web.yaml": deployment("web"),
        "app/30-account.yml": "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: runner}\n",
        "app/40-worker.yaml": deployment("worker", image="__IMAGE__"),
    }


def test_a_directory_with_two_deployments_has_two_health_targets_in_order():
    rendered = render(directory_files(), source={"directory": "app"})
    assert [(o["kind"], o["metadata"]["name"]) for o in rendered.objects] == [
        ("Namespace", "shop"),
        ("ConfigMap", "settings"),
        ("Deployment", "web"),
        ("ServiceAccount", "runner"),
        ("Deployment", "worker"),
    ]
    assert rendered.health_targets == (
        HealthTarget("Deployment", "shop", "web"),
        HealthTarget("Deployment", "shop", "worker"),
    )
    assert rendered.find("Deployment")["metadata"]["name"] == "web"  # find: the first of a kind


def test_statefulsets_and_daemonsets_are_health_targets_too():
    # (A CRD's lookalike `example.com/v1 Deployment` never gets here: the config refuses
    # kinds geodeploy cannot apply, tests/core/test_only_kinds_geodeploy_can_apply_load.py.)
    def workload(kind, name):
        return deployment(name).replace("apps/v1\nkind: Deployment", f"apps/v1\nkind: {kind}")

    files = {"k8s.yaml": "---\n".join([workload("StatefulSet", "db"), workload("DaemonSet", "agent")])}
    assert render(files).health_targets == (
        HealthTarget("StatefulSet", "shop", "db"),
        HealthTarget("DaemonSet", "shop", "agent"),
    )


def test_the_builtin_release_waits_for_its_deployment():
    config = build_config()
    rendered = render_release(config, config.apps[0], config.region("europe-west1"), image())
    assert rendered.health_targets == (HealthTarget("Deployment", "shop", "shop"),)


def test_a_directory_release_is_deterministic():
    one = render(directory_files(), source={"directory": "app"})
    other = render(dict(reversed(directory_files().items())), source={"directory": "app"})
    assert one.to_yaml() == other.to_yaml()
    assert one.manifest_hash == other.manifest_hash


def test_rendering_never_changes_the_loaded_documents():
    config = build_sourced_config({"directory": "app"}, directory_files())
    app, region = config.apps[0], config.region("europe-west1")
    loaded = copy.deepcopy([d.body for d in app.source.documents])
    first = render_release(config, app, region, image("v1"))
    first.find("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"] = "tampered"
    first.find("ConfigMap")["metadata"]["labels"]["tampered"] = "yes"
    assert [d.body for d in app.source.documents] == loaded
    assert "tampered" not in str(render_release(config, app, region, image("v1")).objects)
