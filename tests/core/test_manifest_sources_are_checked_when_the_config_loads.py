"""`apps[].source`: a template or a directory of manifests beside the config, read and
checked when the config loads. Every mistake is a config error naming the config file,
the key, the manifest file, the document (position, kind and name) and the field."""

from __future__ import annotations

import pytest

from shared.config import load_config
from shared.errors import ConfigError
from tests.core.builders import build_sourced_config, config_data

TEMPLATE = {"template": "deploy/k8s.yaml"}

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: __IMAGE__}]
"""


def config_map(name="settings", **data):
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {data or {'a': 'b'}}\n"


def template(*documents: str) -> dict[str, str]:
    return {"deploy/k8s.yaml": "---\n".join(documents)}


def load(files, source=TEMPLATE, data=None):
    return build_sourced_config(source, files, data).apps[0]


def error(files, source=TEMPLATE, data=None) -> str:
    with pytest.raises(ConfigError) as caught:
        build_sourced_config(source, files, data)
    return str(caught.value)


# --- the source key -------------------------------------------------------------------------


def test_builtin_written_out_is_the_same_as_leaving_source_out():
    assert load({}, source="builtin").source.kind == "builtin"
    assert load({}, source="builtin") == build_sourced_config("builtin", {}).apps[0]
    assert load({}, source="builtin").source.documents == ()


def test_a_template_keeps_its_documents_with_file_and_position():
    app = load(template(config_map(), DEPLOYMENT))
    assert app.source.kind == "template"
    assert [(d.file, d.index, d.kind, d.name) for d in app.source.documents] == [
        ("deploy/k8s.yaml", 1, "ConfigMap", "settings"),
        ("deploy/k8s.yaml", 2, "Deployment", "web"),
    ]
    assert app.source.notes == ()


def test_empty_documents_are_skipped_but_still_counted():
    app = load({"deploy/k8s.yaml": "---\n" + config_map() + "---\n---\n" + DEPLOYMENT + "---\n"})
    assert [(d.index, d.kind) for d in app.source.documents] == [(1, "ConfigMap"), (3, "Deployment")]


def test_a_directory_reads_its_yaml_files_sorted_by_name_and_nothing_else():
    files = {
        "deploy/b.yml": DEPLOYMENT,
        "deploy/a.yaml": config_map("first"),
        "deploy/README.md": "not yaml: [",
        "deploy/nested/c.yaml": config_map("nested"),
    }
    app = load(files, source={"directory": "deploy"})
    assert [(d.file, d.name) for d in app.source.documents] == [("deploy/a.yaml", "first"), ("deploy/b.yml", "web")]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("helm", "apps[0].source: must be `builtin`, or a mapping with `template:`, `directory:` or `kustomize:`"),
        (
            {"template": "a.yaml", "directory": "d"},
            "apps[0].source: give one of `template:`, `directory:` and `kustomize:`",
        ),
        (
            {"kustomize": "k", "directory": "d"},
            "apps[0].source: give one of `template:`, `directory:` and `kustomize:`",
        ),
        ({"templates": "a.yaml"}, "apps[0].source.templates: unknown key"),
    ],
)
def test_a_source_is_builtin_a_template_a_directory_or_a_kustomization(source, expected):
    assert expected in error({}, source=source)


@pytest.mark.parametrize("path", ["../k8s.yaml", "deploy/../../k8s.yaml", "/etc/k8s.yaml", "C:\\k8s.yaml", ""])
@pytest.mark.parametrize("key", ["template", "directory"])
def test_a_path_that_leaves_the_configs_directory_is_refused(key, path):
    assert f"apps[0].source.{key}: {path!r} must be a relative path inside the config's directory" in error(
        {}, source={key: path}
    )


def test_manifests_with_a_brought_source_is_an_error_not_silently_ignored():
    data = config_data()
    data["apps"][0]["manifests"] = {"max_replicas": 9}
    message = error(template(DEPLOYMENT), data=data)
    assert "apps[0].manifests: applies only to the builtin source; this app's objects come from its template" in message


# --- reading and parsing ----------------------------------------------------------------------


def test_a_missing_file_is_named():
    assert "test.yaml: apps[0].source: deploy/k8s.yaml: cannot read" in error({})


def test_an_empty_directory_is_named():
    assert "apps[0].source: deploy/: no *.yaml or *.yml file in it" in error(
        {"deploy/x.txt": ""}, {"directory": "deploy"}
    )


def test_invalid_yaml_and_a_key_written_twice_are_named_by_file():
    assert "apps[0].source: deploy/k8s.yaml: not valid YAML" in error(template("a: [b\n"))
    twice = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nmetadata: {name: d}\n"
    assert "apps[0].source: deploy/k8s.yaml: not valid YAML" in error(template(DEPLOYMENT, twice))
    assert "key 'metadata' appears twice" in error(template(DEPLOYMENT, twice))


def test_a_document_that_is_not_an_object_is_named_by_position():
    assert "deploy/k8s.yaml, document 2: not a mapping (a Kubernetes object)" in error(template(DEPLOYMENT, "- a\n"))


def test_an_object_without_a_name_is_named_by_position_and_kind():
    message = error(template(DEPLOYMENT, "apiVersion: v1\nkind: Service\nmetadata: {}\n"))
    assert "deploy/k8s.yaml, document 2 (Service): metadata.name: required" in message


def test_an_unquoted_date_stays_the_string_kubernetes_reads():
    app = load(
        template(DEPLOYMENT, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {since: 2020-01-01}\n")
    )
    assert app.source.documents[1].body["data"] == {"since": "2020-01-01"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("{80: x}", "data.80: a key must be a string: quote it"),
        ("{x: .nan}", "data.x: not a finite number"),
        ("{x: !!binary aGk=}", "data.x: a YAML bytes has no JSON form: write a string"),
    ],
)
def test_values_without_a_json_form_are_refused(data, expected):
    message = error(template(DEPLOYMENT, f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\ndata: {data}\n"))
    assert f"deploy/k8s.yaml, document 2 (ConfigMap c): {expected}" in message


def test_a_label_value_must_be_a_string():
    doc = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: {version: 2}}\n"
    assert "document 2 (ConfigMap c): metadata.labels.version: must be a string: quote it" in error(
        template(DEPLOYMENT, doc)
    )


# --- the image ---------------------------------------------------------------------------------


def test_a_template_with_no_image_placeholder_is_refused_naming_the_file():
    message = error(template(config_map(), DEPLOYMENT.replace("__IMAGE__", "nginx:1.27")))
    assert "test.yaml: apps[0].source: deploy/k8s.yaml: no container has `image: __IMAGE__`" in message


def test_the_placeholder_outside_a_containers_image_does_not_count():
    message = error(template(config_map(image="__IMAGE__"), DEPLOYMENT.replace("__IMAGE__", "nginx:1.27")))
    assert "deploy/k8s.yaml: no container has `image: __IMAGE__`" in message


def test_a_directory_with_no_image_placeholder_is_named():
    files = {"deploy/a.yaml": config_map(), "deploy/b.yaml": DEPLOYMENT.replace("__IMAGE__", "nginx:1.27")}
    message = error(files, source={"directory": "deploy/"})
    assert "apps[0].source: deploy/: no container has `image: __IMAGE__`" in message


def test_an_init_container_may_be_the_one_that_runs_the_image():
    doc = DEPLOYMENT.replace(
        "containers: [{name: web, image: __IMAGE__}]", "initContainers: [{name: m, image: __IMAGE__}]"
    )
    assert load(template(doc)).source.documents[0].kind == "Deployment"


def test_a_cron_jobs_container_counts():
    job = """\
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "@daily"
  jobTemplate: {spec: {template: {spec: {containers: [{name: n, image: __IMAGE__}]}}}}
"""
    assert load(template(job, DEPLOYMENT)).source.documents[0].kind == "CronJob"


def test_an_image_only_a_cron_job_runs_is_refused_it_would_never_be_watched():
    job = """\
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "@daily"
  jobTemplate: {spec: {template: {spec: {containers: [{name: n, image: __IMAGE__}]}}}}
"""
    web = DEPLOYMENT.replace("image: __IMAGE__", "image: nginx:1.27")
    assert "no container has `image: __IMAGE__` in a Deployment, StatefulSet, DaemonSet" in error(template(job, web))


def test_a_job_may_not_run_the_pushed_image_its_template_cannot_change():
    job = (
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\n"
        "spec:\n  template: {spec: {containers: [{name: m, image: __IMAGE__}]}}\n"
    )
    message = error(template(job, DEPLOYMENT))
    assert (
        "deploy/k8s.yaml, document 1 (Job migrate): spec.template.spec.containers: a Job's pod template cannot change"
        in message
    )


def test_a_statefulset_that_rolls_out_on_delete_only_is_refused():
    sts = DEPLOYMENT.replace("kind: Deployment", "kind: StatefulSet").replace(
        "spec:\n", "spec:\n  updateStrategy: {type: OnDelete}\n", 1
    )
    message = error(template(sts))
    assert "(StatefulSet web): spec.updateStrategy.type: only RollingUpdate" in message


@pytest.mark.parametrize("value", ["50.5%", "-1", "half", "true"])
def test_a_disruption_budget_with_a_minimum_kubernetes_would_not_read_is_refused(value):
    pdb = (
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\n"
        f"spec:\n  minAvailable: {value}\n  selector: {{matchLabels: {{app: web}}}}\n"
    )
    assert "document 2 (PodDisruptionBudget web): spec.minAvailable:" in error(template(DEPLOYMENT, pdb))


def test_a_config_map_named_like_a_release_record_is_refused():
    record = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: geodeploy-releases-shop}\ndata: {a: b}\n"
    message = error(template(record, DEPLOYMENT))
    assert "(ConfigMap geodeploy-releases-shop): metadata.name: names starting 'geodeploy-releases-'" in message


def test_a_source_with_no_workload_to_watch_is_refused():
    job = """\
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "@daily"
  jobTemplate: {spec: {template: {spec: {containers: [{name: n, image: __IMAGE__}]}}}}
"""
    assert "deploy/k8s.yaml: no apps/v1 Deployment, StatefulSet, DaemonSet; a release needs one to watch" in error(
        template(job)
    )


def test_the_image_placeholder_with_text_around_it_is_refused_at_its_field():
    doc = DEPLOYMENT.replace("image: __IMAGE__", "image: __IMAGE__-debug")
    message = error(template(config_map(), doc))
    assert (
        "deploy/k8s.yaml, document 2 (Deployment web): spec.template.spec.containers[0].image: write __IMAGE__ alone"
        in message
    )


# --- API versions ------------------------------------------------------------------------------


def test_upgrades_happen_at_load_and_are_notes():
    old = DEPLOYMENT.replace("apps/v1", "apps/v1beta2").replace("  selector: {matchLabels: {app: web}}\n", "")
    [document] = load(template(old)).source.documents
    assert document.body["apiVersion"] == "apps/v1"
    assert document.body["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert load(template(old)).source.notes[:2] == (
        "deploy/k8s.yaml, document 1 (Deployment web): apps/v1beta2 Deployment upgraded to apps/v1",
        "deploy/k8s.yaml, document 1 (Deployment web): spec.selector.matchLabels filled from "
        "spec.template.metadata.labels (required in apps/v1)",
    )


def test_a_deployment_that_cannot_be_upgraded_is_named_with_its_field():
    old = (
        DEPLOYMENT.replace("apps/v1", "extensions/v1beta1")
        .replace("web}\n", "my-app-deployment}\n", 1)
        .replace("  selector: {matchLabels: {app: web}}\n", "")
        .replace("    metadata: {labels: {app: web}}\n", "")
    )
    message = error(template(config_map("a"), config_map("b"), old))
    assert "deploy/k8s.yaml, document 3 (Deployment my-app-deployment): spec.selector: required in apps/v1" in message


def test_an_old_ingress_is_refused_naming_its_document():
    ingress = "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: web}\nspec: {}\n"
    message = error(template(DEPLOYMENT, ingress))
    assert (
        "deploy/k8s.yaml, document 2 (Ingress web): apiVersion: extensions/v1beta1 Ingress cannot be upgraded"
        in message
    )


# --- namespaces -------------------------------------------------------------------------------


def test_objects_without_a_namespace_are_placed_in_the_apps():
    app = load(template(DEPLOYMENT, config_map()))
    assert [d.body["metadata"]["namespace"] for d in app.source.documents] == ["shop", "shop"]


def test_the_namespace_placeholder_means_the_apps_namespace():
    doc = "apiVersion: v1\nkind: Namespace\nmetadata: {name: __NAMESPACE__}\n"
    app = load(template(doc, DEPLOYMENT.replace("{name: web}", "{name: web, namespace: __NAMESPACE__}")))
    assert app.source.documents[0].body["metadata"] == {"name": "shop"}
    assert app.source.documents[1].body["metadata"]["namespace"] == "shop"


def test_an_object_in_another_namespace_is_refused():
    message = error(template(DEPLOYMENT.replace("{name: web}", "{name: web, namespace: other}")))
    assert (
        "deploy/k8s.yaml, document 1 (Deployment web): metadata.namespace: 'other' is not the app's namespace 'shop'"
        in message
    )


def test_a_namespace_document_must_be_the_apps():
    message = error(template("apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n", DEPLOYMENT))
    assert "deploy/k8s.yaml, document 1 (Namespace other): metadata.name: 'other' is not the app's namespace" in message


def test_a_cluster_scoped_object_is_refused():
    role = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: reader}\n"
    message = error(template(DEPLOYMENT, role))
    assert "document 2 (ClusterRole reader): kind: ClusterRole is cluster-scoped" in message


def test_the_same_object_twice_is_refused():
    message = error(template(DEPLOYMENT, config_map("c"), config_map("c")))
    assert (
        "deploy/k8s.yaml, document 3 (ConfigMap c): metadata.name: the same object as deploy/k8s.yaml, document 2 "
        "(ConfigMap c)" in message
    )


# --- what the rollout relies on ---------------------------------------------------------------


def test_a_progress_deadline_other_than_the_rollouts_is_refused():
    doc = DEPLOYMENT.replace("spec:\n  selector", "spec:\n  progressDeadlineSeconds: 600\n  selector")
    message = error(template(doc))
    assert (
        "apps[0].source: deploy/k8s.yaml, document 1 (Deployment web): spec.progressDeadlineSeconds: 600 is not "
        "rollout.progress_deadline_seconds (240)" in message
    )


def test_the_rollouts_own_progress_deadline_is_accepted():
    doc = DEPLOYMENT.replace("spec:\n  selector", "spec:\n  progressDeadlineSeconds: 240\n  selector")
    assert load(template(doc)).source.documents[0].body["spec"]["progressDeadlineSeconds"] == 240


def test_replicas_an_autoscaler_owns_are_dropped_with_a_note():
    hpa = """\
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web-hpa}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 3
  maxReplicas: 5
"""
    app = load(template(DEPLOYMENT.replace("spec:\n  selector", "spec:\n  replicas: 3\n  selector"), hpa))
    assert "replicas" not in app.source.documents[0].body["spec"]
    assert app.source.notes == (
        "deploy/k8s.yaml, document 1 (Deployment web): spec.replicas dropped: "
        "deploy/k8s.yaml, document 2 (HorizontalPodAutoscaler web-hpa) scales it",
    )


def test_replicas_without_an_autoscaler_are_kept():
    app = load(template(DEPLOYMENT.replace("spec:\n  selector", "spec:\n  replicas: 3\n  selector")))
    assert app.source.documents[0].body["spec"]["replicas"] == 3


# --- from the disk ------------------------------------------------------------------------------


def test_files_are_read_relative_to_the_configs_directory(tmp_path):
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "k8s.yaml").write_text(DEPLOYMENT)
    (tmp_path / "geodeploy.yaml").write_text(_config_text(TEMPLATE))
    assert load_config(tmp_path / "geodeploy.yaml").apps[0].source.documents[0].name == "web"


def test_a_symlink_out_of_the_configs_directory_is_refused(tmp_path):
    outside = tmp_path / "outside.yaml"
    outside.write_text(DEPLOYMENT)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "k8s.yaml").symlink_to(outside)
    (tmp_path / "config" / "geodeploy.yaml").write_text(_config_text({"template": "k8s.yaml"}))
    with pytest.raises(ConfigError, match=r"apps\[0\]\.source: k8s.yaml: resolves outside the config's directory"):
        load_config(tmp_path / "config" / "geodeploy.yaml")


def _config_text(source) -> str:
    import yaml

    data = config_data()
    data["apps"][0]["source"] = source
    return yaml.safe_dump(data, sort_keys=False)
