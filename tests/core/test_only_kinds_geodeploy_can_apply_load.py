"""A brought document must be a kind geodeploy can apply (shared/kinds.py): the adapter
reaches each by a fixed REST path and the deployer is granted each by name, so any other
kind is refused when the config loads, naming the file, the document and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.kinds import KINDS
from tests.core.builders import build_sourced_config

SOURCE = {"template": "deploy/k8s.yaml"}

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


def _error(*documents: str) -> str:
    with pytest.raises(ConfigError) as caught:
        build_sourced_config(SOURCE, {"deploy/k8s.yaml": "---\n".join(documents)})
    return str(caught.value)


def test_a_custom_resource_is_refused_at_its_kind_listing_what_is_supported():
    certificate = "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: web-tls}\n"
    message = _error(DEPLOYMENT, certificate)
    assert (
        "test.yaml: apps[0].source: deploy/k8s.yaml, document 2 (Certificate web-tls): "
        "kind: cert-manager.io/v1 Certificate is not a kind geodeploy can apply; geodeploy can apply v1 Namespace, "
    ) in message
    assert all(f"{k.api_version} {k.kind}" in message for k in KINDS)


def test_a_known_kind_in_another_api_group_is_refused_at_its_api_version():
    lookalike = DEPLOYMENT.replace("apps/v1", "example.com/v1").replace("{name: web}", "{name: x}")
    message = _error(DEPLOYMENT, lookalike)
    assert (
        "deploy/k8s.yaml, document 2 (Deployment x): apiVersion: Deployment is applied as apps/v1, not example.com/v1"
        in message
    )


def test_a_replica_set_is_refused_though_it_has_a_pod_template():
    replica_set = DEPLOYMENT.replace("kind: Deployment", "kind: ReplicaSet")
    assert "document 1 (ReplicaSet web): kind: apps/v1 ReplicaSet is not a kind geodeploy can apply" in _error(
        replica_set
    )


def test_an_old_version_is_checked_after_its_upgrade():
    # policy/v1beta1 is not in the table; its upgrade to policy/v1 is.
    budget = "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: web}\n"
    budget += "spec: {minAvailable: 1, selector: {matchLabels: {app: web}}}\n"
    app = build_sourced_config(SOURCE, {"deploy/k8s.yaml": "---\n".join([DEPLOYMENT, budget])}).apps[0]
    assert [d.body["apiVersion"] for d in app.source.documents] == ["apps/v1", "policy/v1"]


@pytest.mark.parametrize("kind", [k for k in KINDS if k.namespaced], ids=lambda k: k.kind)
def test_every_namespaced_kind_of_the_table_loads(kind):
    document = f"apiVersion: {kind.api_version}\nkind: {kind.kind}\nmetadata: {{name: extra}}\n"
    if kind.kind == "Deployment":
        document = DEPLOYMENT.replace("{name: web}", "{name: extra}")
    app = build_sourced_config(SOURCE, {"deploy/k8s.yaml": "---\n".join([DEPLOYMENT, document])}).apps[0]
    assert (app.source.documents[-1].body["apiVersion"], app.source.documents[-1].kind) == (
        kind.api_version,
        kind.kind,
    )


def test_the_configuration_reference_lists_every_kind():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    listed = doc[doc.index("**accepts only the kinds geodeploy can apply**") :].split("\n- ")[0]
    assert all(f"`{k.api_version}`" in listed and k.kind in listed for k in KINDS)
