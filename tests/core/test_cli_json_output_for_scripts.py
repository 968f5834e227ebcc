"""`--output json` for scripts and CI, on the commands that need no cluster: stdout is
exactly one JSON document (json.loads of all of it), in the documented envelope, with
the fields a script reads; errors are documents too, with the exit code; and the exit
codes docs/cli.md lists are the CLI's own."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cli.commands.manifests import SECRET_VALUE, hide_secret_values
from cli.exit_codes import ErrorKind, ExitCode
from cli.main import main
from cli.output import SCHEMA_VERSION, Output, OutputFormat
from shared.config import load_config
from shared.contracts import ImageRef
from shared.drift import ABSENT, compare_object
from shared.logs import register_secret
from shared.rbac import render_rbac
from shared.rendering import render_release
from tests.core.builders import CONFIG_DIR, REPO_ROOT, digest

SHOP = CONFIG_DIR / "sandbox.yaml"
SEED_TEMPLATE = CONFIG_DIR / "examples" / "seed" / "k8s.yaml"
REPOSITORY = "europe-docker.pkg.dev/image-charts-prod/app/my-app"


@pytest.fixture(autouse=True)
def no_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEODEPLOY_SANDBOX", raising=False)
    monkeypatch.delenv("GEODEPLOY_CONFIG", raising=False)


def document(capsys: pytest.CaptureFixture[str], code: int, command: str | None) -> dict[str, Any]:
    """The run's one document: all of stdout parses as one JSON object, in the envelope."""
    doc = json.loads(capsys.readouterr().out)
    assert doc["command"] == command and doc["schema_version"] == SCHEMA_VERSION
    assert doc["exit_code"] == code
    return doc


# --- results ----------------------------------------------------------------------------------


def test_render_gives_the_image_its_digest_the_manifest_hash_and_the_objects(capsys):
    config = load_config(SHOP)
    image = f"{config.apps[0].repository}@{digest('json-render')}"

    code = main(
        ["--config", str(SHOP), "render", "--region", "us-west1", "--image", digest("json-render"), "-o", "json"]
    )

    doc = document(capsys, code, "render")
    assert code == ExitCode.OK and doc["error"] is None
    expected = render_release(config, config.apps[0], config.region("us-west1"), ImageRef.parse(image))
    assert (doc["app"], doc["region"], doc["image"], doc["digest"]) == (
        "shop",
        "us-west1",
        image,
        digest("json-render"),
    )
    assert doc["digest_short"] == ImageRef.parse(image).short
    assert doc["manifest_hash"] == expected.manifest_hash
    assert doc["objects"] == json.loads(json.dumps(expected.objects))


def test_the_output_option_goes_before_or_after_the_command_and_text_stays_the_default(capsys):
    args = ["render", "--region", "europe-west1", "--image", digest("json-where")]
    before = main(["--config", str(SHOP), "--output", "json", *args])
    first = document(capsys, before, "render")
    after = main(["--config", str(SHOP), *args, "-o", "json"])
    assert document(capsys, after, "render") == first

    assert main(["--config", str(SHOP), *args]) == ExitCode.OK
    assert capsys.readouterr().out.startswith("apiVersion: v1\nkind: Namespace\n")


def test_rbac_gives_the_objects_for_the_regions_cluster(capsys):
    config = load_config(SHOP)

    code = main(["--config", str(SHOP), "-o", "json", "rbac", "--region", "asia-east1"])

    doc = document(capsys, code, "rbac")
    assert code == ExitCode.OK
    assert (doc["region"], doc["cluster"]) == ("asia-east1", "shop-asia-east1")
    assert doc["objects"] == render_rbac(config, config.region("asia-east1"))


def test_import_gives_the_written_file_and_the_apps_entry(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "deploy"
    imported = ["import", "--template", str(SEED_TEMPLATE), "--repository", REPOSITORY, "--out", str(out)]

    code = main(["--app", "my-app", "-o", "json", *imported])

    doc = document(capsys, code, "import")
    assert code == ExitCode.OK
    assert Path(doc["written"]) == out / "my-app" / "k8s.yaml" and Path(doc["written"]).is_file()
    assert doc["entry"] == {
        "name": "my-app",
        "repository": REPOSITORY,
        "namespace": "app-ns",
        "source": {"template": "my-app/k8s.yaml"},
    }
    assert doc["objects"] == 5
    assert any("upgraded to apps/v1" in note for note in doc["notes"])


# --- errors -----------------------------------------------------------------------------------


def test_a_usage_error_is_a_document_with_exit_code_2(capsys):
    code = main(["--config", str(SHOP), "-o", "json", "deploy", "--image", "shop:v2"])

    doc = document(capsys, code, "deploy")
    assert code == ExitCode.USAGE
    assert doc["error"]["kind"] == ErrorKind.USAGE
    assert "pin the digest" in doc["error"]["message"]


def test_an_argument_argparse_refuses_is_a_document_too(capsys):
    code = main(["--config", str(SHOP), "diff", "--region", "us-west1", "--output", "json"])

    doc = document(capsys, code, "diff")
    assert code == ExitCode.USAGE
    assert doc["error"] == {
        "kind": "usage",
        "message": "the following arguments are required: --image (see geodeploy diff --help)",
    }


def test_a_missing_config_is_a_document_and_json_is_an_alias_of_output_json(tmp_path, capsys):
    code = main(["--config", str(tmp_path / "missing.yaml"), "status", "--json"])

    doc = document(capsys, code, "status")
    assert code == ExitCode.USAGE
    assert doc["error"]["kind"] == "usage" and "cannot read config" in doc["error"]["message"]


def test_in_text_mode_an_error_is_one_line_on_stderr_and_nothing_on_stdout(tmp_path, capsys):
    code = main(["--config", str(tmp_path / "missing.yaml"), "history"])

    captured = capsys.readouterr()
    assert code == ExitCode.USAGE and captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("geodeploy: error: cannot read config")


def test_a_secret_the_process_has_read_never_reaches_a_document(capsys):
    token = "cf-token-" + digest("json-secret")[7:31]
    register_secret(token)  # as the Secret Manager adapter does when it reads one
    out = Output("status", OutputFormat.JSON)
    out.result({"cloudflare": {"error": f"403 for token {token}"}})

    out.finish(ExitCode.UNAVAILABLE, (ErrorKind.UNAVAILABLE, f"refused {token}"))

    text = capsys.readouterr().out
    assert token not in text
    doc = json.loads(text)
    assert doc["cloudflare"]["error"] == "403 for token [redacted]"
    assert doc["error"] == {"kind": "unavailable", "message": "refused [redacted]"}


# --- the documented table -----------------------------------------------------------------------


def test_the_exit_codes_docs_cli_md_lists_are_the_clis():
    text = (REPO_ROOT / "docs" / "cli.md").read_text()
    section = text.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", section, flags=re.MULTILINE)}
    assert documented == {int(code) for code in ExitCode}
    for kind in ErrorKind:
        assert f"`{kind}`" in section, f"error kind {kind} is not documented"


def test_diff_shows_that_a_secrets_values_change_never_the_values():
    def secret(data: dict[str, str]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"}, "data": data}

    live, desired = secret({"password": "b2xkLXB3"}), secret({"password": "bmV3LXB3", "user": "YXBw"})
    changes = [
        {"path": d.path, "live": d.live, "expected": d.expected}
        for d in compare_object("Secret/shop/db", desired, live)
    ]

    shown = hide_secret_values("Secret", changes)

    assert shown == [
        {"path": "data.password", "live": SECRET_VALUE, "expected": SECRET_VALUE},
        {"path": "data.user", "live": ABSENT, "expected": SECRET_VALUE},
    ]
    assert "b2xkLXB3" not in json.dumps(shown) and "bmV3LXB3" not in json.dumps(shown)
    assert hide_secret_values("ConfigMap", changes) == changes  # only a Secret's values are secret
