"""The supply chain in infra/: the clusters admit only the apps' images (Binary
Authorization, deny by default), and the identity that builds the functions can push only
to the functions' own repositories, never to an app's, where a push is a deploy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.terraform.hcl_eval import Instance, Module, Unknown
from shared.config import load_config

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
EXAMPLE = REPO / "config" / "example.yaml"
SHIPPED = {name: REPO / "config" / f"{name}.yaml" for name in ("example", "sandbox", "sandbox-waves")}
DIGEST = "sha256:" + "ab" * 32
BUILD = Unknown('google_service_account.role["build"].member')


def _module(config_path: Path) -> Module:
    return Module(INFRA, {"config_path": str(config_path)})


def _one(module: Module, rtype: str, name: str) -> Instance:
    return module.resource(rtype, name).instances()[None]


def _dynamic(instance: Instance, label: str) -> list[dict[str, Any]]:
    """The blocks a `dynamic "<label>"` block generates, evaluated (hcl_eval does not expand them)."""
    module = instance.resource.module
    out = []
    for entry in instance.raw.get("dynamic", []):
        generator = entry.get(f'"{label}"')
        if generator is None:
            continue
        (content,) = generator["content"]
        for key, value in enumerate(module.evaluate(generator["for_each"], instance.scope)):
            scope = {**instance.scope, label: {"key": key, "value": value}}
            out.append({k: module.evaluate(v, scope) for k, v in content.items() if not k.startswith("__")})
    return out


def _admits(pattern: str, image: str) -> bool:
    """Binary Authorization's allowlist match: a trailing `*` matches within one path
    segment (not `/`), a trailing `**` across segments, anything else is the exact name."""
    if pattern.endswith("**"):
        return image.startswith(pattern[:-2])
    if pattern.endswith("*"):
        prefix = pattern[:-1]
        return image.startswith(prefix) and "/" not in image[len(prefix) :]
    return image == pattern


# --- Binary Authorization ------------------------------------------------------------------


def _patterns(module: Module) -> list[str]:
    policy = _one(module, "google_binary_authorization_policy", "apps_only")
    return [block["name_pattern"] for block in _dynamic(policy, "admission_whitelist_patterns")]


def test_the_policy_denies_by_default_and_exempts_only_googles_system_images() -> None:
    module = _module(EXAMPLE)
    policy = _one(module, "google_binary_authorization_policy", "apps_only")
    assert policy.get("default_admission_rule", 0, "evaluation_mode") == "ALWAYS_DENY"
    assert policy.get("default_admission_rule", 0, "enforcement_mode") == "ENFORCED_BLOCK_AND_AUDIT_LOG"
    assert policy.get("global_policy_evaluation_mode") == "ENABLE"
    assert policy.get("project") == load_config(EXAMPLE).project
    assert "cluster_admission_rules" not in policy.raw, "no cluster may have a looser rule"
    # Only the apps' patterns are allowlisted, nothing written by hand.
    assert "admission_whitelist_patterns" not in policy.raw


def test_every_cluster_enforces_the_project_policy() -> None:
    module = _module(EXAMPLE)
    clusters = module.resource("google_container_cluster", "region").instances()
    assert clusters
    for cluster in clusters.values():
        assert cluster.get("binary_authorization", 0, "evaluation_mode") == "PROJECT_SINGLETON_POLICY_ENFORCE"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_policy_admits_each_apps_images_by_digest_and_nothing_else(name: str) -> None:
    config = load_config(SHIPPED[name])
    patterns = _patterns(_module(SHIPPED[name]))
    assert patterns, "an empty allowlist would deny the apps themselves"
    for pattern in patterns:
        # Google accepts a wildcard only at the end, after the registry.
        assert "*" not in pattern.rstrip("*") and "/" in pattern.split("*")[0], pattern

    def admitted(image: str) -> bool:
        return any(_admits(p, image) for p in patterns)

    for app in config.apps:
        # What deploy_region applies: <repository>@<digest> (shared/contracts.py).
        assert admitted(f"{app.repository}@{DIGEST}"), f"{app.name}'s own image is refused"
        assert not admitted(f"{app.repository}-debug@{DIGEST}"), "a sibling image is admitted"
        assert not admitted(f"{app.repository}/sidecar@{DIGEST}"), "an image under the repository path is admitted"
        assert not admitted(f"{app.repository}:v1.2.3"), "a tag (which can move) is admitted"
    for image in (f"docker.io/library/nginx@{DIGEST}", f"europe-docker.pkg.dev/other-project/apps/shop@{DIGEST}"):
        assert not admitted(image), image


# --- the build identity ----------------------------------------------------------------------

# Roles that include artifactregistry.repositories.uploadArtifacts.
_PUSH_ROLES = {
    "roles/artifactregistry.writer",
    "roles/artifactregistry.repoAdmin",
    "roles/artifactregistry.admin",
    "roles/artifactregistry.createOnPushWriter",
    "roles/artifactregistry.createOnPushRepoAdmin",
    "roles/editor",
    "roles/owner",
}


def _config_with_an_app_next_to_the_functions(tmp_path: Path) -> Path:
    """An app whose repository is in the project and in a function location: the case a
    project-wide grant, or one on the wrong repository, would give the build."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["apps"].append(
        {
            "name": "shop",
            "repository": f"europe-west1-docker.pkg.dev/{data['project']}/apps/shop",
            "namespace": "shop",
        }
    )
    path = tmp_path / "geodeploy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_config(path)
    return path


def _build_grants(module: Module) -> list[tuple[str, Instance]]:
    """Every IAM grant whose member is the build identity, across all *_iam_* resources."""
    grants = []
    for rtype, named in module.resources.items():
        if "_iam_" not in rtype:
            continue
        assert not rtype.endswith(("_iam_binding", "_iam_policy")), f"{rtype}: authoritative IAM is not used here"
        for name in named:
            for grant in module.resource(rtype, name).instances().values():
                if grant.get("member") == BUILD:
                    grants.append((rtype, grant))
    return grants


@pytest.mark.parametrize("variant", ["example", "app-next-to-the-functions"])
def test_the_build_identity_cannot_push_to_any_app_repository(variant: str, tmp_path: Path) -> None:
    path = EXAMPLE if variant == "example" else _config_with_an_app_next_to_the_functions(tmp_path)
    config = load_config(path)
    module = _module(path)
    app_repositories = {
        (
            a.repository.split("/")[1],
            a.repository.split("/")[0].removesuffix("-docker.pkg.dev"),
            a.repository.split("/")[2],
        )
        for a in config.apps
    }
    grants = _build_grants(module)
    assert grants
    for rtype, grant in grants:
        role = grant.get("role")
        if rtype == "google_project_iam_member":
            assert role not in _PUSH_ROLES, f"{grant.ref}: {role} on the whole project covers the apps' repositories"
        elif rtype == "google_artifact_registry_repository_iam_member":
            where = (grant.get("project"), grant.get("location"), grant.get("repository"))
            assert where not in app_repositories, f"{grant.ref}: {role} on an app's repository {where}"
        else:
            assert role not in _PUSH_ROLES, f"{grant.ref}: {role} on {rtype}"


def test_the_build_pushes_exactly_where_the_functions_images_go() -> None:
    config = load_config(EXAMPLE)
    module = _module(EXAMPLE)
    repositories = module.resource("google_artifact_registry_repository", "functions").instances()
    functions = module.resource("google_cloudfunctions2_function", "fn").instances()
    locations = {fn.get("location") for fn in functions.values()}
    assert (
        set(repositories)
        == locations
        == {config.functions_region or config.regions[0].name} | {r.name for r in config.regions}
    )
    for fn in functions.values():
        location = fn.get("location")
        assert fn.get("build_config", 0, "docker_repository") == Unknown(
            f'google_artifact_registry_repository.functions["{location}"].id'
        )
        assert repositories[location].get("format") == "DOCKER"
    writers = {
        (g.get("project"), g.get("location"), g.get("repository"))
        for rtype, g in _build_grants(module)
        if g.get("role") in _PUSH_ROLES
    }
    assert writers == {(config.project, key, r.get("repository_id")) for key, r in repositories.items()}
    # The functions wait for the grant, or their first build fails to push.
    depends = " ".join(module.resources["google_cloudfunctions2_function"]["fn"]["depends_on"])
    assert "google_artifact_registry_repository_iam_member.build_push" in depends


@pytest.mark.parametrize(("repository", "refused"), [("geodeploy-functions", True), ("apps", False)])
def test_an_app_repository_named_like_the_functions_one_is_refused(
    tmp_path: Path, repository: str, refused: bool
) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data.pop("name", None)  # the default name, geodeploy
    data["apps"][0]["repository"] = f"us-west1-docker.pkg.dev/{data['project']}/{repository}/image-charts"
    path = tmp_path / "geodeploy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    module = _module(path)
    assert module.local("functions_repository_id") == "geodeploy-functions"
    repo = module.resource("google_artifact_registry_repository", "functions").instances()["us-west1"]
    (lifecycle,) = repo.raw["lifecycle"]
    (precondition,) = lifecycle["precondition"]
    assert module.evaluate(precondition["condition"], repo.scope) is (not refused)
