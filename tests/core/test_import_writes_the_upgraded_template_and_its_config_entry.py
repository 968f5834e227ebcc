"""`geodeploy import` adopts a seed-style template without a geodeploy config: it loads the
template as the functions load an app's (upgrades as notes, refusals naming file, document
and field), writes it upgraded to DIR/<app>/k8s.yaml with the placeholders kept, and prints
the `apps:` entry that, pasted into a config beside it, loads and renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.main import main
from shared.config import load_config
from shared.contracts import ImageRef
from shared.rendering import render_release
from shared.yaml_loading import load_manifest_documents
from tests.core.builders import CONFIG_DIR, digest

SEED_TEMPLATE = CONFIG_DIR / "examples" / "seed" / "k8s.yaml"
REPOSITORY = "europe-docker.pkg.dev/image-charts-prod/app/my-app"


@pytest.fixture(autouse=True)
def no_config_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A team adopting geodeploy has no config: none in the working directory, and the
    one the environment names does not exist."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("GEODEPLOY_CONFIG", str(tmp_path / "missing.yaml"))
    monkeypatch.delenv("GEODEPLOY_SANDBOX", raising=False)


def run_import(template: Path | str, out: Path, *extra: str, app: str = "my-app") -> int:
    return main(
        ["--app", app, "import", "--template", str(template), "--repository", REPOSITORY, "--out", str(out), *extra]
    )


def written(out: Path, app: str = "my-app") -> list[dict[str, Any]]:
    return load_manifest_documents((out / app / "k8s.yaml").read_text())


def template(tmp_path: Path, *documents: str) -> Path:
    path = tmp_path / "k8s.yaml"
    path.write_text("\n---\n".join(documents))
    return path


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: __IMAGE__
"""


# --- the seed article's template -------------------------------------------------------------------


def test_importing_the_seed_template_writes_it_in_current_api_versions_with_its_placeholders(tmp_path, capsys):
    assert run_import(SEED_TEMPLATE, tmp_path / "out") == 0

    documents = written(tmp_path / "out")
    assert [(d["apiVersion"], d["kind"]) for d in documents] == [
        ("v1", "Namespace"),
        ("v1", "Service"),
        ("apps/v1", "Deployment"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("policy/v1", "PodDisruptionBudget"),
    ]
    namespace, service, deployment, hpa, _ = documents
    assert namespace["metadata"]["name"] == "app-ns"
    assert service["spec"]["loadBalancerIP"] == "__IP__"
    assert service["metadata"]["labels"]["zone"] == "__ZONE__"
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "__IMAGE__"
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "my-app"}}
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    assert hpa["spec"]["scaleTargetRef"]["apiVersion"] == "apps/v1"
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 200}
    assert all(d["metadata"]["namespace"] == "app-ns" for d in documents[1:])


def test_each_upgrade_of_the_seed_template_is_a_note_on_stderr(tmp_path, capsys):
    assert run_import(SEED_TEMPLATE, tmp_path / "out") == 0

    notes = capsys.readouterr().err.splitlines()
    deployment = f"{SEED_TEMPLATE.name}, document 3 (Deployment my-app-deployment)"
    assert f"{deployment}: extensions/v1beta1 Deployment upgraded to apps/v1" in notes
    assert any(n.endswith("policy/v1beta1 PodDisruptionBudget upgraded to policy/v1") for n in notes)
    assert any(n.startswith(f"{deployment}: spec.replicas dropped") for n in notes)
    assert len(notes) == 7


def test_the_printed_entry_pasted_into_a_config_beside_the_file_loads_and_renders(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_import(SEED_TEMPLATE, out) == 0
    printed = capsys.readouterr().out
    assert "geodeploy render --region R --image sha256:" in printed
    assert "geodeploy diff" in printed
    assert str(out / "my-app" / "k8s.yaml") in printed

    entry = yaml.safe_load(printed)
    assert entry["apps"] == [
        {"name": "my-app", "repository": REPOSITORY, "namespace": "app-ns", "source": {"template": "my-app/k8s.yaml"}}
    ]
    # The seed example's other fields, with the printed entry as its apps.
    data = yaml.safe_load((CONFIG_DIR / "examples" / "seed.yaml").read_text()) | entry
    (out / "geodeploy.yaml").write_text(yaml.safe_dump(data))
    config = load_config(out / "geodeploy.yaml")
    app = config.app("my-app")

    rendered = render_release(config, app, config.region("us-west1"), ImageRef(app.repository, digest("v1")))
    [container] = rendered.find("Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{REPOSITORY}@{digest('v1')}"
    assert rendered.find("Service")["spec"]["loadBalancerIP"] == "34.82.30.40"
    assert "__" not in rendered.to_yaml()


# --- what is written -----------------------------------------------------------------------------


def test_placeholders_and_yaml_like_strings_survive_verbatim(tmp_path):
    values = {
        "tricky": "a: b --- #x",
        "document_end": "...",
        "a_date": "2024-01-01",
        "a_number": "0755",
        "image": "__IMAGE__",
        "inside": "shop-__REGION__-__ZONE__",
        "unknown": "__FOO__",
    }
    config_map = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": values})
    assert run_import(template(tmp_path, DEPLOYMENT, config_map), tmp_path / "out") == 0

    deployment, loaded = written(tmp_path / "out")
    assert loaded["data"] == values
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "__IMAGE__"
    assert loaded["metadata"]["namespace"] == "shop"  # as loaded: placed in the app's namespace


def test_an_existing_output_is_not_overwritten_without_force(tmp_path, capsys):
    target = tmp_path / "out" / "my-app" / "k8s.yaml"
    target.parent.mkdir(parents=True)
    target.write_text("# the team's own edits\n")

    assert run_import(SEED_TEMPLATE, tmp_path / "out") == 2
    assert target.read_text() == "# the team's own edits\n"
    assert "already exists: pass --force" in capsys.readouterr().err

    assert run_import(SEED_TEMPLATE, tmp_path / "out", "--force") == 0
    assert written(tmp_path / "out")[2]["apiVersion"] == "apps/v1"


# --- refusals ------------------------------------------------------------------------------------

ROLE = """\
apiVersion: rbac.authorization.k8s.io/v1beta1
kind: Role
metadata: {name: reader, namespace: shop}
rules: []
"""


def test_an_old_kind_no_longer_served_exits_2_naming_file_document_and_field(tmp_path, capsys):
    assert run_import(template(tmp_path, DEPLOYMENT, ROLE), tmp_path / "out") == 2

    [error] = capsys.readouterr().err.splitlines()
    assert error.startswith("geodeploy: error: k8s.yaml, document 2 (Role reader): apiVersion: ")
    assert "rbac.authorization.k8s.io/v1beta1 Role is no longer served" in error
    assert not (tmp_path / "out").exists()


def test_a_relative_template_is_named_as_typed(tmp_path, capsys):
    (Path.cwd() / "deploy").mkdir()
    (Path.cwd() / "deploy" / "k8s.yaml").write_text(f"{DEPLOYMENT}---\n{ROLE}")
    assert run_import("deploy/k8s.yaml", tmp_path / "out") == 2
    assert "error: deploy/k8s.yaml, document 2 (Role reader): apiVersion:" in capsys.readouterr().err


def test_objects_in_several_namespaces_are_refused(tmp_path, capsys):
    other = DEPLOYMENT.replace("name: web, namespace: shop", "name: api, namespace: billing")
    assert run_import(template(tmp_path, DEPLOYMENT, other), tmp_path / "out") == 2
    assert "name several namespaces (billing, shop)" in capsys.readouterr().err


def test_without_a_namespace_in_the_template_namespace_is_required(tmp_path, capsys):
    path = template(tmp_path, DEPLOYMENT.replace(", namespace: shop", ""))
    assert run_import(path, tmp_path / "out") == 2
    assert "give --namespace NAME" in capsys.readouterr().err

    assert run_import(path, tmp_path / "out", "--namespace", "web") == 0
    assert written(tmp_path / "out")[0]["metadata"]["namespace"] == "web"


def test_a_namespace_option_the_template_contradicts_is_refused_where_it_is_written(tmp_path, capsys):
    assert run_import(template(tmp_path, DEPLOYMENT), tmp_path / "out", "--namespace", "web") == 2
    assert "document 1 (Deployment web): metadata.namespace: 'shop' is not the app's namespace 'web'" in (
        capsys.readouterr().err
    )


def test_an_entry_the_config_would_refuse_is_refused_before_writing(tmp_path, capsys):
    assert run_import(SEED_TEMPLATE, tmp_path / "out", app="My_App") == 2
    assert "--app 'My_App'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_import_needs_an_app_name(tmp_path, capsys):
    code = main(["import", "--template", str(SEED_TEMPLATE), "--repository", REPOSITORY, "--out", str(tmp_path)])
    assert code == 2
    assert "import needs --app NAME" in capsys.readouterr().err


def test_a_deployments_own_progress_deadline_is_called_out_for_the_rollout(tmp_path, capsys):
    with_deadline = DEPLOYMENT.replace("spec:\n  selector:", "spec:\n  progressDeadlineSeconds: 300\n  selector:")
    assert run_import(template(tmp_path, with_deadline), tmp_path / "out") == 0
    assert "set rollout.progress_deadline_seconds: 300 too" in capsys.readouterr().out


def test_a_template_that_is_not_yaml_is_refused_as_the_config_would_refuse_it(tmp_path, capsys):
    assert run_import(template(tmp_path, "kind: [Deployment"), tmp_path / "out") == 2
    [error] = capsys.readouterr().err.splitlines()
    assert error.startswith("geodeploy: error: k8s.yaml: not valid YAML: ")
