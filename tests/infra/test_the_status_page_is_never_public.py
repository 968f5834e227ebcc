"""The status page is IAM-protected: Cloud Run lets in exactly the config's
status_page.viewers (roles/run.invoker on its service, nothing more), never the public,
and Pub/Sub's push identity may not call it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sandbox.terraform.hcl_eval import Module, Unknown
from shared.config import load_config
from shared.topology import functions_of

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
EXAMPLE = REPO / "config" / "example.yaml"


def _module(config: Path) -> Module:
    return Module(INFRA, {"config_path": str(config)})


def _with_viewers(tmp_path: Path, viewers: list[str] | None) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    if viewers is None:
        data.pop("status_page", None)
    else:
        data["status_page"] = {"viewers": viewers}
    path = tmp_path / "geodeploy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _every_invoker(module: Module) -> list[tuple[str, object, object]]:
    """(resource name, service, member) of every Cloud Run invoker grant in infra/."""
    found = []
    for name in module.resources.get("google_cloud_run_service_iam_member", {}):
        for grant in module.resource("google_cloud_run_service_iam_member", name).instances().values():
            found.append((name, grant.get("service"), grant.get("member")))
    return found


@pytest.mark.parametrize(
    "viewers",
    [None, [], ["user:ana@example.com"], ["group:sre@example.com", "serviceAccount:b@p.iam.gserviceaccount.com"]],
)
def test_only_the_configured_viewers_may_invoke_the_status_page(tmp_path: Path, viewers: list[str] | None) -> None:
    config_path = _with_viewers(tmp_path, viewers)
    config = load_config(config_path)
    [page] = [f for f in functions_of(config) if f.http]
    service = Unknown(f'google_cloudfunctions2_function.fn["{page.name}"].service_config[0].service')
    grants = [(name, member) for name, svc, member in _every_invoker(_module(config_path)) if svc == service]
    assert sorted(grants) == sorted(("status_page_viewer", m) for m in viewers or [])
    for name, grant in (
        _module(config_path).resource("google_cloud_run_service_iam_member", "status_page_viewer").instances().items()
    ):
        assert grant.get("role") == "roles/run.invoker", name


def test_no_grant_in_infra_names_the_public() -> None:
    module = _module(EXAMPLE)
    members = [member for _, _, member in _every_invoker(module)]
    assert members and not {"allUsers", "allAuthenticatedUsers"} & {str(m) for m in members}
    text = "\n".join(p.read_text() for p in INFRA.glob("*.tf"))
    assert "allUsers" not in text and "allAuthenticatedUsers" not in text


def test_the_status_page_runs_as_its_own_identity_with_reads_only() -> None:
    config = load_config(EXAMPLE)
    [page] = [f for f in functions_of(config) if f.http]
    module = _module(EXAMPLE)
    fn = module.local("functions")[page.name]
    assert fn["identity"] == "status_page" and fn["topics"] == []
    access = module.local("access")["status_page"]
    assert access["publishes"] == [] and access["clusters"] is True
    assert access["secrets"] == [config.cloudflare.api_token_secret]  # the pools' state at Cloudflare
    assert not any(s["function"] == page.name for s in module.local("subscriptions").values())
