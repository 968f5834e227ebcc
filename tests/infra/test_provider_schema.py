"""infra/ against the Google provider's real schema: every resource and data source type,
argument and nested block used in infra/*.tf exists in provider 6.50.0, and every
required one is there. The schema is the one the prebuilt CDKTF bindings ship
(scripts/provider_schema.py builds it once into the cache; `make tools` runs it). A
missing cache FAILS these tests, it never skips them: CI must build it.

The checker itself (tests/infra/schema_check.py) is shown failing on small snippets
written here, and the extraction on a small hand-made jsii assembly.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from sandbox.terraform.hcl_parse import parse_tf
from scripts import provider_schema
from tests.infra.schema_check import Report, check

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
BUILD_COMMAND = "`make tools` (or `.venv/bin/python scripts/provider_schema.py`)"


def _load_schema() -> dict[str, Any]:
    path = provider_schema.cache_file()
    if not provider_schema.is_current(path):
        pytest.fail(
            f"the Google provider schema is not built: {path} is missing or stale. Build it with {BUILD_COMMAND}; "
            f"it downloads {provider_schema.PACKAGE}=={provider_schema.PACKAGE_VERSION} from PyPI once."
        )
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return _load_schema()


def _check_snippet(tmp_path: Path, schema: dict[str, Any], text: str) -> Report:
    path = tmp_path / "snippet.tf"
    path.write_text(text)
    return check({path.name: parse_tf(path)}, schema)


def _messages(report: Report) -> list[str]:
    return [str(f) for f in report.findings]


# --- the cache ----------------------------------------------------------------------------


def test_a_missing_schema_fails_and_says_how_to_build_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEODEPLOY_CACHE", str(tmp_path / "empty"))
    with pytest.raises(pytest.fail.Exception, match=r"`make tools` .*scripts/provider_schema\.py"):
        _load_schema()


def test_the_schema_is_the_pinned_package_and_looks_like_the_provider(schema: dict[str, Any]) -> None:
    assert schema["package"] == f"@cdktf/provider-google@{provider_schema.PACKAGE_VERSION}"
    assert schema["provider_source"] == "hashicorp/google"
    assert len(schema["resource"]) > 1000 and len(schema["data"]) > 300
    subscription = schema["resource"]["google_pubsub_subscription"]
    assert subscription["arguments"]["topic"] is True and subscription["arguments"]["ack_deadline_seconds"] is False
    push = subscription["blocks"]["push_config"]
    assert (push["nesting"], push["required"], push["arguments"]["push_endpoint"]) == ("single", False, True)
    assert schema["resource"]["google_compute_subnetwork"]["blocks"]["secondary_ip_range"]["nesting"] == "list"
    assert schema["resource"]["google_secret_manager_secret"]["blocks"]["replication"]["required"] is True
    # Names come from the registry links, not from the bindings' camelCase: cdktf calls
    # network_policy.provider `provider` but renames clashes (e.g. geth_details → fetchhDetails).
    assert "provider" in schema["resource"]["google_container_cluster"]["blocks"]["network_policy"]["arguments"]
    assert "data" in schema and "google_pubsub_topic" in schema["data"]


# --- infra/ ------------------------------------------------------------------------------


def test_infra_uses_only_what_the_provider_schema_has(schema: dict[str, Any]) -> None:
    files = {p.name: parse_tf(p) for p in sorted(INFRA.glob("*.tf"))}
    report = check(files, schema)
    assert not report.findings, (
        "infra/ does not match google provider " + schema["provider_version"] + ":\n" + ("\n".join(_messages(report)))
    )
    # Every resource and data source was looked at: checked, or of another declared provider.
    declared = {
        f"{kind} {rtype.strip(chr(34))}.{name.strip(chr(34))}"
        for parsed in files.values()
        for kind in ("resource", "data")
        for entry in parsed.get(kind, [])
        for rtype, named in entry.items()
        for name in named
        if not name.startswith("__")
    }
    assert report.checked | report.unchecked == declared
    assert report.unchecked == {"data archive_file.source"}, "only the archive provider's types go unchecked"


def test_the_google_provider_pin_is_the_schema_version(schema: dict[str, Any]) -> None:
    providers = parse_tf(INFRA / "versions.tf")["terraform"][0]["required_providers"][0]
    pin = json.loads(providers["google"]["version"])
    major, minor, _ = schema["provider_version"].split(".")
    # ~> X.Y: X.Y or any later X.*, which only add to the schema checked here.
    assert pin == f"~> {major}.{minor}", f"infra pins google {pin!r}, the schema is {schema['provider_version']}"


# --- the checker fails where Terraform would -------------------------------------------------

_SUBSCRIPTION = """
resource "google_pubsub_subscription" "push" {
  name  = "s"
  topic = "t"
%s
}
"""


def test_a_misspelt_argument_fails(tmp_path: Path, schema: dict[str, Any]) -> None:
    report = _check_snippet(tmp_path, schema, _SUBSCRIPTION % "  ack_deadline_second = 60")
    assert _messages(report) == [
        "snippet.tf: resource google_pubsub_subscription.push: ack_deadline_second: unknown argument or block "
        "(did you mean 'ack_deadline_seconds'?)"
    ]


def test_a_missing_required_argument_fails(tmp_path: Path, schema: dict[str, Any]) -> None:
    text = """
resource "google_pubsub_subscription" "push" {
  name = "s"
  push_config {
    oidc_token {
      audience = "a"
    }
  }
}
"""
    assert _messages(_check_snippet(tmp_path, schema, text)) == [
        "snippet.tf: resource google_pubsub_subscription.push: push_config.oidc_token.service_account_email: "
        "required argument is missing",
        "snippet.tf: resource google_pubsub_subscription.push: push_config.push_endpoint: required argument is missing",
        "snippet.tf: resource google_pubsub_subscription.push: topic: required argument is missing",
    ]


_FAILING = [
    pytest.param(
        'resource "google_pubsub_subscriptions" "x" {\n  name = "s"\n}',
        r"unknown resource type.*'google_pubsub_subscription'",
        id="unknown-resource-type",
    ),
    pytest.param(
        'data "google_pubsub_topics" "x" {\n  name = "t"\n}',
        r"data google_pubsub_topics\.x: unknown data type",
        id="unknown-data-source",
    ),
    pytest.param(
        'resource "cloudflare_record" "x" {\n  name = "r"\n}',
        r"no provider 'cloudflare' in required_providers",
        id="undeclared-provider",
    ),
    pytest.param(
        _SUBSCRIPTION % '  push_config = { push_endpoint = "u" }',
        r"push_config: is a block, not an argument",
        id="block-as-argument",
    ),
    pytest.param(
        _SUBSCRIPTION % '  labels {\n    a = "b"\n  }', r"labels: is an argument, not a block", id="argument-as-block"
    ),
    pytest.param(
        _SUBSCRIPTION % "  retry_policy {\n  }\n  retry_policy {\n  }",
        r"at most one `retry_policy` block",
        id="repeated-single-block",
    ),
    pytest.param(
        'resource "google_secret_manager_secret" "x" {\n  secret_id = "s"\n}',
        r"replication: required block is missing",
        id="missing-required-block",
    ),
    pytest.param(
        _SUBSCRIPTION % '  dynamic "push_configs" {\n    for_each = []\n    content {\n    }\n  }',
        r"dynamic\.push_configs: generates an unknown block",
        id="dynamic-unknown-block",
    ),
    pytest.param(
        _SUBSCRIPTION % '  dynamic "push_config" {\n    for_each = []\n    content {\n'
        '      push_endpoint = "u"\n      attributs = {}\n    }\n  }',
        r"push_config\.attributs: unknown argument or block \(did you mean 'attributes'\?\)",
        id="dynamic-content-misspelt",
    ),
    pytest.param(
        _SUBSCRIPTION % "  lifecycle {\n    ignore_change = [labels]\n  }",
        r"lifecycle\.ignore_change: unknown lifecycle",
        id="lifecycle-misspelt",
    ),
    pytest.param(
        _SUBSCRIPTION % "  lifecycle {\n    ignore_changes = [lables]\n  }",
        r"'lables' is no argument.*'labels'",
        id="ignore-changes-unknown",
    ),
    pytest.param(
        _SUBSCRIPTION % "  provider = google-beta",
        r"provider: google-beta is not the google provider",
        id="other-provider",
    ),
]


@pytest.mark.parametrize(("text", "expected"), _FAILING)
def test_the_checker_reports(tmp_path: Path, schema: dict[str, Any], text: str, expected: str) -> None:
    messages = _messages(_check_snippet(tmp_path, schema, text))
    assert len(messages) == 1 and re.search(expected, messages[0]), messages
    assert messages[0].startswith("snippet.tf: "), "a finding names the file"


def test_meta_arguments_and_dynamic_blocks_are_understood(tmp_path: Path, schema: dict[str, Any]) -> None:
    text = """
resource "google_pubsub_subscription" "push" {
  for_each   = toset(["a"])
  provider   = google.other
  depends_on = [google_pubsub_topic.t]

  name  = each.key
  topic = google_pubsub_topic.t.id

  dynamic "push_config" {
    for_each = [1]
    iterator = p
    content {
      push_endpoint = "https://x/${p.value}"
    }
  }

  lifecycle {
    create_before_destroy = true
    ignore_changes        = [labels, push_config[0].attributes]
    precondition {
      condition     = true
      error_message = "never"
    }
  }
}

resource "google_pubsub_topic" "t" {
  count = 1
  name  = "t"
}

data "google_pubsub_topic" "t" {
  name = "t"
}

provider "google" {
  alias   = "other"
  project = "p"
}
"""
    report = _check_snippet(tmp_path, schema, text)
    assert _messages(report) == []
    assert report.checked == {
        "resource google_pubsub_subscription.push", "resource google_pubsub_topic.t", "data google_pubsub_topic.t",
    }  # fmt: skip


# --- the extraction from a jsii assembly ------------------------------------------------------

_DOCS = "https://registry.terraform.io/providers/hashicorp/google/6.50.0/docs"


def _prop(name: str, anchor: str | None, type_: dict[str, Any], optional: bool = True, where: str = "remarks") -> Any:
    docs: dict[str, Any] = {"summary": "x"}
    if anchor:
        link = f"Docs at Terraform Registry: {{@link {_DOCS}/resources/thing#{anchor} Thing#{anchor}}}"
        docs.update({"custom": {"pattern": link}} if where == "custom" else {where: link})
    return {"name": name, "docs": docs, "type": type_, **({"optional": True} if optional else {})}


def _assembly() -> dict[str, Any]:
    ns = "@cdktf/provider-google"
    string = {"primitive": "string"}
    rules = {"collection": {"kind": "array", "elementtype": {"fqn": f"{ns}.thing.ThingRule"}}}
    return {
        "name": ns,
        "version": provider_schema.PACKAGE_VERSION,
        "types": {
            f"{ns}.thing.Thing": {
                "kind": "class",
                "base": "cdktf.TerraformResource",
                "docs": {"summary": f"Represents a {{@link {_DOCS}/resources/thing google_thing}}."},
                "initializer": {"parameters": [{"name": "config", "type": {"fqn": f"{ns}.thing.ThingConfig"}}]},
            },
            f"{ns}.thing.ThingConfig": {
                "kind": "interface",
                "datatype": True,
                "interfaces": ["cdktf.TerraformMetaArguments"],
                "properties": [
                    _prop("name", "name", string, optional=False),
                    _prop("fetchhDetails", "geth_details", {"fqn": f"{ns}.thing.ThingGethDetails"}),
                    _prop("pattern", "pattern", string, where="custom"),
                    _prop("portRange", None, string),
                    _prop(
                        "rule",
                        "rule",
                        {"union": {"types": [{"fqn": "cdktf.IResolvable"}, rules]}},
                        optional=False,
                    ),
                ],
            },
            f"{ns}.thing.ThingGethDetails": {
                "kind": "interface",
                "datatype": True,
                "properties": [_prop("flag", "flag", {"primitive": "boolean"}, optional=False)],
            },
            f"{ns}.thing.ThingRule": {"kind": "interface", "datatype": True, "properties": []},
            f"{ns}.provider.GoogleProvider": {
                "kind": "class",
                "base": "cdktf.TerraformProvider",
                "docs": {"summary": f"Represents a {{@link {_DOCS} google}}."},
                "initializer": {"parameters": [{"name": "config", "type": {"fqn": f"{ns}.provider.Config"}}]},
            },
            f"{ns}.provider.Config": {"kind": "interface", "datatype": True, "properties": []},
        },
    }


def test_the_extraction_reads_names_from_the_links_and_required_from_optional() -> None:
    schema = provider_schema.build_schema(_assembly())
    assert schema["provider_version"] == "6.50.0"
    assert schema["resource"] == {
        "google_thing": {
            "arguments": {"name": True, "pattern": False, "port_range": False},
            "blocks": {
                "geth_details": {"required": False, "nesting": "single", "arguments": {"flag": True}, "blocks": {}},
                "rule": {"required": True, "nesting": "list", "arguments": {}, "blocks": {}},
            },
        }
    }
    assert schema["derived_names"] == ["@cdktf/provider-google.thing.ThingConfig.portRange"]
    assert schema["provider"] == {"arguments": {}, "blocks": {}}


def test_the_extraction_reads_the_assembly_out_of_the_wheel(tmp_path: Path) -> None:
    assembly = json.dumps(_assembly()).encode()
    redirect = json.dumps({"schema": "jsii/file-redirect", "filename": ".jsii.gz", "compression": "gzip"}).encode()
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tar:
        for name, data in ((".jsii", redirect), (".jsii.gz", gzip.compress(assembly))):
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    wheel = tmp_path / "cdktf_cdktf_provider_google-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as whl:
        whl.writestr("cdktf_cdktf_provider_google/_jsii/provider-google@0.jsii.tgz", tgz.getvalue())
    assert provider_schema.read_assembly(wheel) == _assembly()
