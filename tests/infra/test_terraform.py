"""infra/ reads the same config file as the functions and deploys exactly what
shared/topology.py lists: every region gets its cluster, spot node pool, address and
deploy function; every function gets one push subscription per trigger topic, with
retries and a dead-letter topic; the IAM is per resource; checkov finds nothing.

The HCL is evaluated by sandbox/terraform/hcl_eval.py (a small evaluator for the subset infra/
is written in). Where a terraform binary is on PATH, Terraform itself evaluates the
locals too and must agree; it needs no providers for that.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.terraform.hcl_eval import Instance, Module, Unknown, parse_tf
from shared.config import (
    PUSH_DELIVERY_ATTEMPTS,
    PUSH_MAX_BACKOFF_SECONDS,
    PUSH_MIN_BACKOFF_SECONDS,
    Cloudflare,
    Config,
    Drift,
    Region,
    Rollout,
    Topics,
    load_config,
)
from shared.topology import (
    Access,
    FunctionSpec,
    dead_letter_topic_for,
    functions_of,
    service_account_id,
    subscription_name,
)

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
EXAMPLE = REPO / "config" / "example.yaml"
SEED = REPO / "config" / "examples" / "seed.yaml"
INSTALL_CHECKOV = REPO / "scripts" / "install-checkov.sh"

EXPECTED_FILES = {
    "versions.tf", "variables.tf", "locals.tf", "outputs.tf",
    "clusters.tf", "pubsub.tf", "functions.tf", "iam.tf", "scheduler.tf", "secrets.tf", "binauthz.tf", "notify.tf",
}  # fmt: skip


# --- configs ------------------------------------------------------------------------------


def _example_data() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def _variant_defaults(data: dict[str, Any]) -> None:
    """Leaves out every key that has a default."""
    for key in ("rollout", "drift", "topics", "name", "functions_region", "alerts"):
        data.pop(key, None)
    data["cloudflare"].pop("api_token_secret", None)
    for region in data["regions"]:
        region.pop("wave", None)


def _variant_overrides(data: dict[str, Any]) -> None:
    """Sets every key the infrastructure reads to a non-default value."""
    data["name"] = "imgcharts"
    data["functions_region"] = "us-west1"
    data["topics"] = {
        "images": "my-images",
        "deploy_prefix": "ic-deploy",
        "results": "ic-results",
        "control": "ic-control",
        "drift": "ic-drift",
        "drift_reports": "ic-drift-reports",
        "dead_letter": "ic-dead",
    }
    data["rollout"] = {"call_budget_seconds": 500}  # + 60 is capped at 540
    data["drift"] = {"schedule": "15 3 * * *", "time_zone": "Europe/Paris", "heal": True}
    data["alerts"] = {
        "notification_channels": ["projects/image-charts-prod/notificationChannels/42"],
        "drained_minutes": 12,
        "dead_letter_messages": 3,
        "failed_rollouts": 2,
        "drift_check_slack_minutes": 5,
        "drift_check_overdue_minutes": 0,
    }
    data["cloudflare"]["api_token_secret"] = "cf-token"


def _variant_null_functions_region(data: dict[str, Any]) -> None:
    data["functions_region"] = None


def _variant_long_region(data: dict[str, Any]) -> None:
    """A region whose readable deployer account id would exceed 30 characters."""
    data["name"] = "fifteen-chars-x"
    data["regions"].append(
        {
            "name": "northamerica-northeast1",
            "cluster": {"location": "northamerica-northeast1-a", "name": "image-charts-montreal"},
            "static_ip": {"name": "image-charts-montreal", "address": "34.95.1.2"},
            "cloudflare": {"pool": "image-charts-montreal", "geo_regions": ["NEAS"]},
            "wave": 3,
        }
    )


VARIANTS = {
    "example": None,
    "defaults": _variant_defaults,
    "overrides": _variant_overrides,
    "null-functions-region": _variant_null_functions_region,
    "long-region": _variant_long_region,
}


@pytest.fixture(scope="module")
def config_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every variant as a config file; each is valid for shared.config."""
    directory = tmp_path_factory.mktemp("configs")
    files: dict[str, Path] = {}
    for name, change in VARIANTS.items():
        if change is None:
            files[name] = EXAMPLE
            continue
        data = _example_data()
        change(data)
        files[name] = directory / f"{name}.yaml"
        files[name].write_text(yaml.safe_dump(data, sort_keys=False))
        load_config(files[name])  # the variant itself must be a valid config
    for shipped in ("sandbox", "sandbox-waves", "sandbox-brought", "sandbox-gates"):
        files[shipped] = REPO / "config" / f"{shipped}.yaml"
    files["seed"] = SEED
    files["storefront"] = REPO / "config" / "examples" / "storefront.yaml"
    files["directory"] = _directory_app_config(directory / "with-directory")
    return files


def _directory_app_config(directory: Path) -> Path:
    """The example with its first app's objects from a directory beside it: two manifests
    the loader reads (.yaml, .yml) and two it does not (another suffix, a subdirectory)."""
    deploy = directory / "deploy"
    (deploy / "old").mkdir(parents=True)
    for name, text in DIRECTORY_SOURCE.items():
        (deploy / name).write_text(text)
    data = _example_data()
    data["apps"][0].pop("manifests", None)
    data["apps"][0]["source"] = {"directory": "deploy/"}
    path = directory / "geodeploy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_config(path)
    return path


DIRECTORY_SOURCE = {
    "web.yaml": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n"
        "  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n"
        "    spec: {containers: [{name: web, image: __IMAGE__}]}\n"
    ),
    "settings.yml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n",
    "README.md": "not a manifest\n",
    "old/ignored.yaml": "not read: in a subdirectory\n",
}
CONFIG_NAMES = [*VARIANTS, "sandbox", "sandbox-waves", "sandbox-brought", "seed", "directory", "storefront"]


def _module(config_path: Path, **variables: Any) -> Module:
    return Module(INFRA, {"config_path": str(config_path), **variables})


@pytest.fixture(scope="module")
def example() -> tuple[Config, Module]:
    return load_config(EXAMPLE), _module(EXAMPLE)


def _instances(module: Module, rtype: str, name: str) -> dict[Any, Instance]:
    return module.resource(rtype, name).instances()


def _resource_types(module: Module) -> set[str]:
    return set(module.resources)


# --- 1. the files parse -------------------------------------------------------------------


def test_infra_has_the_expected_files() -> None:
    assert {p.name for p in INFRA.glob("*.tf")} >= EXPECTED_FILES


@pytest.mark.parametrize("path", sorted(INFRA.glob("*.tf")), ids=lambda p: p.name)
def test_every_tf_file_parses(path: Path) -> None:
    parsed = parse_tf(path)
    assert parsed, f"{path.name} parsed to nothing"


def test_providers_and_terraform_version_are_pinned() -> None:
    terraform = parse_tf(INFRA / "versions.tf")["terraform"][0]
    providers = terraform["required_providers"][0]
    assert json.loads(providers["google"]["source"]) == "hashicorp/google"
    assert json.loads(providers["google"]["version"]).startswith("~> 6.")
    assert json.loads(providers["archive"]["source"]) == "hashicorp/archive"
    assert "required_version" in terraform


# --- 2. the same functions as shared/topology.py -------------------------------------------


def test_defaults_block_mirrors_the_python_model() -> None:
    defaults = _module(EXAMPLE).local("defaults")
    assert defaults["name"] == Config.model_fields["name"].default
    assert defaults["topics"] == Topics().model_dump()
    assert defaults["call_budget_seconds"] == Rollout.model_fields["call_budget_seconds"].default
    assert defaults["drift_schedule"] == Drift.model_fields["schedule"].default
    assert defaults["drift_time_zone"] == Drift.model_fields["time_zone"].default
    assert defaults["api_token_secret"] == Cloudflare.model_fields["api_token_secret"].default
    assert defaults["wave"] == Region.model_fields["wave"].default


@pytest.mark.parametrize("variant", CONFIG_NAMES)
def test_derived_locals_match_the_python_model(variant: str, config_files: dict[str, Path]) -> None:
    config = load_config(config_files[variant])
    module = _module(config_files[variant])
    assert module.local("project") == config.project
    assert module.local("name") == config.name
    assert module.local("functions_region") == (config.functions_region or config.regions[0].name)
    assert module.local("topics") == config.topics.model_dump()
    assert module.local("call_budget_seconds") == config.rollout.call_budget_seconds
    assert module.local("drift_schedule") == config.drift.schedule
    assert module.local("drift_time_zone") == config.drift.time_zone
    assert module.local("cloudflare_api_token_secret") == config.cloudflare.api_token_secret
    assert [(r["name"], r["wave"]) for r in module.local("regions")] == [(r.name, r.wave) for r in config.regions]


def _as_spec(name: str, fn: dict[str, Any]) -> FunctionSpec:
    return FunctionSpec(
        name=name,
        entry_point=fn["entry_point"],
        topics=tuple(fn["topics"]),
        location=fn["location"],
        region=fn["region"],
        serialized=fn["serialized"],
        timeout_seconds=fn["timeout_seconds"],
        memory=fn["memory"],
        identity=fn["identity"],
    )


@pytest.mark.parametrize("variant", CONFIG_NAMES)
def test_terraform_functions_are_the_topology(variant: str, config_files: dict[str, Path]) -> None:
    config = load_config(config_files[variant])
    expected = {spec.name: spec for spec in functions_of(config)}
    actual = {name: _as_spec(name, fn) for name, fn in _module(config_files[variant]).local("functions").items()}
    assert sorted(actual) == sorted(expected)
    for name, spec in expected.items():
        # compared grant by grant in the IAM tests (viewers: test_the_status_page_is_never_public.py)
        spec = replace(spec, access=Access(), viewers=())
        assert actual[name] == spec, f"{name}: Terraform has {actual[name]}, topology has {spec}"


@pytest.mark.parametrize("variant", CONFIG_NAMES)
def test_one_subscription_per_function_and_topic(variant: str, config_files: dict[str, Path]) -> None:
    config = load_config(config_files[variant])
    expected = {
        subscription_name(spec, topic): {"function": spec.name, "topic": topic}
        for spec in functions_of(config)
        for topic in spec.topics
    }
    assert _module(config_files[variant]).local("subscriptions") == expected


@pytest.mark.parametrize("variant", CONFIG_NAMES)
def test_service_account_ids_are_valid_unique_and_cover_every_function(
    variant: str, config_files: dict[str, Path]
) -> None:
    module = _module(config_files[variant])
    accounts = module.local("service_accounts")
    ids = [a["account_id"] for a in accounts.values()]
    for account_id in ids:
        assert re.fullmatch(r"[a-z]([-a-z0-9]{4,28}[a-z0-9])", account_id), f"invalid account id {account_id!r}"
    assert len(set(ids)) == len(ids)
    for name, fn in module.local("functions").items():
        assert fn["identity"] in accounts, f"{name} runs as {fn['identity']!r}, which is not a service account"
    config = load_config(config_files[variant])
    for spec in functions_of(config):  # RBAC names these accounts by email: same ids in Python
        assert accounts[spec.identity]["account_id"] == service_account_id(config, spec.identity)
    regional = {fn["identity"] for fn in module.local("functions").values() if fn["region"]}
    assert len(regional) == len(load_config(config_files[variant]).regions), "one deployer identity per region"


# --- 2b. Terraform itself agrees (when a terraform binary is available) ---------------------


def _terraform() -> str:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("no terraform binary on PATH: the locals are checked by sandbox/terraform/hcl_eval.py only")
    return binary


def _terraform_console(binary: str, workdir: Path, config_path: Path, expression: str) -> Any:
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    done = subprocess.run(
        [binary, "console", f"-var=config_path={config_path}"],
        input=f"jsonencode({expression})\n",
        capture_output=True,
        text=True,
        cwd=workdir,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"terraform console failed on {expression}:\n{done.stderr}"
    line = done.stdout.strip().splitlines()[-1]
    # The console prints the JSON as an HCL string: unescape it, then parse the JSON.
    return json.loads(json.loads(line.replace("$${", "${").replace("%%{", "%{")))


@pytest.mark.parametrize("variant", CONFIG_NAMES)
def test_terraform_evaluates_the_locals_the_same_way(
    variant: str, config_files: dict[str, Path], tmp_path: Path
) -> None:
    binary = _terraform()
    # locals.tf only reads var.config_path, so it evaluates without providers or state.
    for name in ("variables.tf", "locals.tf"):
        shutil.copy(INFRA / name, tmp_path / name)
    module = _module(config_files[variant])
    for local in (
        "defaults",
        "functions",
        "subscriptions",
        "service_accounts",
        "regions_by_name",
        "app_repositories",
        "manifest_files",
    ):
        by_terraform = _terraform_console(binary, tmp_path, config_files[variant], f"local.{local}")
        assert by_terraform == module.local(local), f"local.{local} differs between Terraform and hcl_eval"


def test_terraform_fmt_is_clean() -> None:
    binary = _terraform()
    done = subprocess.run(
        [binary, "fmt", "-check", "-diff", "-recursive", str(INFRA)],
        capture_output=True,
        text=True,
        env={**os.environ, "CHECKPOINT_DISABLE": "1"},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"terraform fmt would change infra/:\n{done.stdout}"


# --- 3. every region, every function, every trigger -----------------------------------------


def test_every_region_gets_a_cluster_with_a_spot_pool(example: tuple[Config, Module]) -> None:
    config, module = example
    clusters = _instances(module, "google_container_cluster", "region")
    pools = _instances(module, "google_container_node_pool", "spot")
    assert sorted(clusters) == sorted(pools) == sorted(r.name for r in config.regions)
    for region in config.regions:
        cluster = clusters[region.name]
        assert cluster.get("name") == region.cluster.name
        assert cluster.get("location") == region.cluster.location
        assert cluster.get("remove_default_node_pool") is True
        assert cluster.get("private_cluster_config", 0, "enable_private_nodes") is True
        assert cluster.get("workload_identity_config", 0, "workload_pool") == f"{config.project}.svc.id.goog"
        assert cluster.get("network_policy", 0, "enabled") is True
        assert cluster.get("enable_shielded_nodes") is True
        assert cluster.get("release_channel", 0, "channel")

        pool = pools[region.name]
        assert pool.get("cluster") == Unknown(f'google_container_cluster.region["{region.name}"].id')
        assert pool.get("location") == region.cluster.location
        assert pool.get("node_config", 0, "spot") is True
        assert pool.get("node_config", 0, "workload_metadata_config", 0, "mode") == "GKE_METADATA"
        assert pool.get("node_config", 0, "service_account") == Unknown('google_service_account.role["nodes"].email')


def test_every_region_gets_its_static_address(example: tuple[Config, Module]) -> None:
    config, module = example
    addresses = _instances(module, "google_compute_address", "region")
    assert {k: (a.get("name"), a.get("region"), a.get("address")) for k, a in addresses.items()} == {
        r.name: (r.static_ip.name, r.name, r.static_ip.address) for r in config.regions
    }


def _functions(module: Module) -> dict[Any, Instance]:
    return _instances(module, "google_cloudfunctions2_function", "fn")


@pytest.mark.parametrize("variant", ["example", "overrides", "long-region"])
def test_function_resources_follow_the_topology(variant: str, config_files: dict[str, Path]) -> None:
    config = load_config(config_files[variant])
    module = _module(config_files[variant])
    functions = _functions(module)
    assert sorted(functions) == sorted(spec.name for spec in functions_of(config))
    for spec in functions_of(config):
        fn = functions[spec.name]
        assert fn.get("name") == spec.name
        assert fn.get("location") == spec.location
        # The runtime the tests (and the sandbox's functions) run on.
        assert fn.get("build_config", 0, "runtime") == f"python{sys.version_info.major}{sys.version_info.minor}"
        assert fn.get("build_config", 0, "entry_point") == spec.entry_point
        service = fn.get("service_config", 0)
        assert service.get("timeout_seconds") == spec.timeout_seconds
        assert service.get("available_memory") == spec.memory
        # Pub/Sub push is internal; the status page is opened from operators' machines (IAM).
        assert service.get("ingress_settings") == ("ALLOW_ALL" if spec.http else "ALLOW_INTERNAL_ONLY")
        assert service.get("max_instance_request_concurrency") == 1
        if spec.serialized:
            assert service.get("max_instance_count") == 1
        else:
            assert 1 <= service.get("max_instance_count") <= 100
        env = service.get("environment_variables")
        assert env["GEODEPLOY_CONFIG"] == "/workspace/geodeploy.yaml"
        assert env.get("GEODEPLOY_REGION") == spec.region
        identity = module.local("functions")[spec.name]["identity"]
        assert service.get("service_account_email") == Unknown(f'google_service_account.role["{identity}"].email')


def test_every_region_gets_a_deploy_function_in_that_region(example: tuple[Config, Module]) -> None:
    config, module = example
    functions = _functions(module)
    for region in config.regions:
        fn = functions[f"{config.name}-deploy-{region.name}"]
        assert fn.get("location") == region.name
        assert fn.get("service_config", 0, "environment_variables")["GEODEPLOY_REGION"] == region.name
        assert fn.get("build_config", 0, "entry_point") == "deploy_region"


def test_functions_have_no_event_trigger_and_no_public_invoker(example: tuple[Config, Module]) -> None:
    _, module = example
    for fn in module.resources["google_cloudfunctions2_function"].values():
        assert "event_trigger" not in fn, "triggers are the explicit push subscriptions in pubsub.tf"
    text = "\n".join(p.read_text() for p in INFRA.glob("*.tf"))
    assert "allUsers" not in text
    assert "allAuthenticatedUsers" not in text


def _topic_name_of(module: Module, ref: Any) -> str:
    """The name of the topic a `<topic resource>.id` reference points at."""
    assert isinstance(ref, Unknown), ref
    m = re.fullmatch(r'(data\.)?google_pubsub_topic\.(\w+)\[("[^"]+"|\d+)\]\.id', ref.ref)
    assert m, f"not a topic id: {ref.ref}"
    is_data, name, key = m.groups()
    resource = (
        module.data_source("google_pubsub_topic", name) if is_data else module.resource("google_pubsub_topic", name)
    )
    return resource.instances()[json.loads(key)].get("name")


@pytest.mark.parametrize("variant", ["example", "overrides", "sandbox"])
def test_every_push_subscription_retries_and_dead_letters(variant: str, config_files: dict[str, Path]) -> None:
    config = load_config(config_files[variant])
    module = _module(config_files[variant])
    subscriptions = _instances(module, "google_pubsub_subscription", "push")
    specs = {spec.name: spec for spec in functions_of(config)}
    expected = {subscription_name(spec, topic): (spec, topic) for spec in specs.values() for topic in spec.topics}
    assert sorted(subscriptions) == sorted(expected)
    for name, (spec, topic) in expected.items():
        sub = subscriptions[name]
        uri = f'google_cloudfunctions2_function.fn["{spec.name}"].service_config[0].uri'
        assert sub.get("name") == name
        assert _topic_name_of(module, sub.get("topic")) == topic
        assert sub.get("ack_deadline_seconds") == min(600, spec.timeout_seconds + 30)
        push = sub.get("push_config", 0)
        # functions-framework derives the CloudEvent source from this path.
        assert push.get("push_endpoint") == f"<{uri}>/projects/{config.project}/topics/{topic}"
        assert push.get("oidc_token", 0, "service_account_email") == Unknown(
            'google_service_account.role["push"].email'
        )
        assert push.get("oidc_token", 0, "audience") == Unknown(uri)
        # The config's rollout rules (shared/config.py) are computed from these very values.
        assert sub.get("retry_policy", 0, "minimum_backoff") == f"{PUSH_MIN_BACKOFF_SECONDS}s" == "10s"
        assert sub.get("retry_policy", 0, "maximum_backoff") == f"{PUSH_MAX_BACKOFF_SECONDS}s" == "600s"
        if dead_letter_topic_for(config, topic) is None:
            # notify's own, on the dead-letter topic: a dead letter never goes round again
            assert topic == config.topics.dead_letter and sub.get("dead_letter_policy") == []
            continue
        assert (
            _topic_name_of(module, sub.get("dead_letter_policy", 0, "dead_letter_topic")) == config.topics.dead_letter
        )
        assert sub.get("dead_letter_policy", 0, "max_delivery_attempts") == PUSH_DELIVERY_ATTEMPTS == 5


@pytest.mark.parametrize("create", [False, True])
def test_images_topic_is_looked_up_unless_asked_to_create_it(create: bool) -> None:
    config = load_config(EXAMPLE)
    module = _module(EXAMPLE, create_images_topic=create)
    created = _instances(module, "google_pubsub_topic", "images")
    looked_up = module.data_source("google_pubsub_topic", "images").instances()
    assert (len(created), len(looked_up)) == ((1, 0) if create else (0, 1))
    images_ref = module.local("topic_ids")[config.topics.images]
    assert images_ref.ref.startswith("google_pubsub_topic.images" if create else "data.google_pubsub_topic.images")
    assert _topic_name_of(module, images_ref) == config.topics.images


def test_geodeploy_creates_every_other_topic(example: tuple[Config, Module]) -> None:
    config, module = example
    created = {t.get("name") for t in _instances(module, "google_pubsub_topic", "deploy").values()}
    created |= {t.get("name") for t in _instances(module, "google_pubsub_topic", "central").values()}
    topics = config.topics
    expected = {config.deploy_topic(r.name) for r in config.regions}
    expected |= {topics.results, topics.control, topics.drift, topics.drift_reports, topics.dead_letter}
    assert created == expected


def test_dead_letters_and_drift_reports_are_kept(example: tuple[Config, Module]) -> None:
    config, module = example
    kept = {
        _topic_name_of(module, s.get("topic"))
        for s in _instances(module, "google_pubsub_subscription", "keep").values()
    }
    assert kept == {config.topics.dead_letter, config.topics.drift_reports}


@pytest.mark.parametrize("variant", ["example", "overrides"])
def test_scheduler_publishes_a_drift_check_to_the_drift_topic(variant: str, config_files: dict[str, Path]) -> None:
    config = load_config(config_files[variant])
    module = _module(config_files[variant])
    job = _instances(module, "google_cloud_scheduler_job", "drift")[None]
    assert _topic_name_of(module, job.get("pubsub_target", 0, "topic_name")) == config.topics.drift
    assert json.loads(base64.b64decode(job.get("pubsub_target", 0, "data"))) == {"version": 1}
    assert job.get("schedule") == config.drift.schedule
    assert job.get("time_zone") == config.drift.time_zone
    assert job.get("region") == (config.functions_region or config.regions[0].name)


def test_cloudflare_token_secret_is_created_without_a_version(example: tuple[Config, Module]) -> None:
    config, module = example
    secret = _instances(module, "google_secret_manager_secret", "cloudflare_token")[None]
    assert secret.get("secret_id") == config.cloudflare.api_token_secret
    assert secret.blocks("replication")
    assert "google_secret_manager_secret_version" not in _resource_types(module), "the token is added by hand"


def test_no_cloudflare_objects_are_managed_by_terraform(example: tuple[Config, Module]) -> None:
    _, module = example
    assert not [t for t in _resource_types(module) if t.startswith("cloudflare_")], "reconcile_traffic owns them"
    assert "cloudflare" not in parse_tf(INFRA / "versions.tf")["terraform"][0]["required_providers"][0]


# --- the source archive ----------------------------------------------------------------------


def test_source_archive_bundles_the_code_and_the_config(example: tuple[Config, Module]) -> None:
    _, module = example
    archive = module.data_source("archive_file", "source").instances()[None]
    files = module.local("source_files")
    code = {p.relative_to(REPO).as_posix() for d in ("functions", "shared") for p in (REPO / d).rglob("*.py")}
    code = {f for f in code if "__pycache__" not in f}
    assert {"main.py", "requirements.txt"} | code <= set(files)
    assert not [f for f in files if not f.endswith(".py") and f != "requirements.txt"]
    dynamic = archive.raw["dynamic"][0]['"source"']
    assert module.evaluate(dynamic["for_each"]) == files
    (config_entry,) = archive.blocks("source")
    assert config_entry.get("filename") == "geodeploy.yaml"
    assert config_entry.get("content") == EXAMPLE.read_text()


def _bundled_manifests(module: Module) -> dict[str, str]:
    """filename → content of the archive's entries besides the code and the config."""
    archive = module.data_source("archive_file", "source").instances()[None]
    [manifests] = [d['"source"'] for d in archive.raw["dynamic"][1:]]
    return {
        entry["filename"]: entry["content"]
        for name in module.evaluate(manifests["for_each"])
        for entry in module.evaluate(manifests["content"], {"source": {"value": name}})
    }


def test_the_seed_examples_template_is_bundled_beside_the_config(config_files: dict[str, Path]) -> None:
    bundled = _bundled_manifests(_module(config_files["seed"]))
    assert bundled == {"seed/k8s.yaml": (SEED.parent / "seed" / "k8s.yaml").read_text()}


def test_a_kustomize_source_bundles_each_regions_rendering(config_files: dict[str, Path]) -> None:
    bundled = _bundled_manifests(_module(config_files["storefront"]))
    overlays = REPO / "config" / "examples" / "storefront" / "overlays"
    assert bundled == {
        f"storefront/overlays/{region}/geodeploy-rendered.yaml": (
            overlays / region / "geodeploy-rendered.yaml"
        ).read_text()
        for region in ("europe-west1", "us-west1")
    }


def test_a_directory_source_bundles_the_files_the_loader_reads(config_files: dict[str, Path]) -> None:
    bundled = _bundled_manifests(_module(config_files["directory"]))
    assert bundled == {f"deploy/{name}": DIRECTORY_SOURCE[name] for name in ("settings.yml", "web.yaml")}


@pytest.mark.parametrize("variant", CONFIG_NAMES)
def test_the_bundled_config_loads_from_the_bundle_alone(
    variant: str, config_files: dict[str, Path], tmp_path: Path
) -> None:
    # What the functions see in /workspace: geodeploy.yaml with the manifests beside it.
    module = _module(config_files[variant])
    (tmp_path / "geodeploy.yaml").write_text(config_files[variant].read_text())
    for filename, content in _bundled_manifests(module).items():
        (tmp_path / filename).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / filename).write_text(content)
    bundled, original = load_config(tmp_path / "geodeploy.yaml"), load_config(config_files[variant])
    assert [a.source.documents for a in bundled.apps] == [a.source.documents for a in original.apps]


def test_source_bucket_is_private_versioned_and_uniform(example: tuple[Config, Module]) -> None:
    _, module = example
    bucket = _instances(module, "google_storage_bucket", "source")[None]
    assert bucket.get("uniform_bucket_level_access") is True
    assert bucket.get("public_access_prevention") == "enforced"
    assert bucket.get("versioning", 0, "enabled") is True
    obj = _instances(module, "google_storage_bucket_object", "source")[None]
    assert "output_md5" in obj.get("name"), "a changed archive must get a new name, so the functions redeploy"


# --- IAM ---------------------------------------------------------------------------------------


def _members(module: Module, rtype: str, name: str, *, key: str = "member") -> dict[Any, Any]:
    return {k: i.get(key) for k, i in _instances(module, rtype, name).items()}


def _sa(identity: str) -> Unknown:
    return Unknown(f'google_service_account.role["{identity}"].member')


def test_push_invoker_may_invoke_every_function_and_nothing_more(example: tuple[Config, Module]) -> None:
    config, module = example
    invokers = _instances(module, "google_cloud_run_service_iam_member", "push_invoker")
    assert sorted(invokers) == sorted(spec.name for spec in functions_of(config) if not spec.http)
    for name, grant in invokers.items():
        assert grant.get("role") == "roles/run.invoker"
        assert grant.get("member") == _sa("push")
        assert grant.get("service") == Unknown(
            f'google_cloudfunctions2_function.fn["{name}"].service_config[0].service'
        )


@pytest.mark.parametrize("variant", ["example", "sandbox"])
def test_pubsub_service_agent_can_dead_letter_and_mint_push_tokens(variant: str, config_files: dict[str, Path]) -> None:
    config, module = load_config(config_files[variant]), _module(config_files[variant])
    agent = module.local("pubsub_service_agent")
    dlq = _instances(module, "google_pubsub_topic_iam_member", "dead_letter_publisher")[None]
    assert _topic_name_of(module, dlq.get("topic")) == config.topics.dead_letter
    assert (dlq.get("role"), dlq.get("member")) == ("roles/pubsub.publisher", agent)
    subscribers = _instances(module, "google_pubsub_subscription_iam_member", "dead_letter_subscriber")
    assert sorted(subscribers) == sorted(
        name for name, s in module.local("subscriptions").items() if dead_letter_topic_for(config, s["topic"])
    )
    for key, grant in subscribers.items():
        assert grant.get("subscription") == Unknown(f'google_pubsub_subscription.push["{key}"].id')
        assert (grant.get("role"), grant.get("member")) == ("roles/pubsub.subscriber", agent)
    minting = _instances(module, "google_service_account_iam_member", "pubsub_mints_push_tokens")[None]
    assert minting.get("member") == agent
    assert minting.get("service_account_id") == Unknown('google_service_account.role["push"].name')


@pytest.mark.parametrize("variant", CONFIG_NAMES)
def test_function_grants_are_the_access_table(variant: str, config_files: dict[str, Path]) -> None:
    """Every IAM grant of a function's identity is in shared/topology.py's access table,
    and every entry of the table is granted: the RBAC rendered from the same table and
    the sandbox that enforces both can then not disagree with what Terraform creates."""
    config = load_config(config_files[variant])
    module = _module(config_files[variant])
    specs = functions_of(config)
    publishers = _instances(module, "google_pubsub_topic_iam_member", "publisher")
    assert {g.get("role") for g in publishers.values()} == {"roles/pubsub.publisher"}
    assert {(_topic_name_of(module, g.get("topic")), g.get("member")) for g in publishers.values()} == {
        (topic, _sa(spec.identity)) for spec in specs for topic in spec.access.publishes
    }
    role = _instances(module, "google_project_iam_custom_role", "cluster_getter")[None]
    assert role.get("permissions") == ["container.clusters.get"]
    getters = set(_members(module, "google_project_iam_member", "cluster_getter").values())
    assert getters == {_sa(spec.identity) for spec in specs if spec.access.clusters}
    readers = _instances(module, "google_secret_manager_secret_iam_member", "secret_reader")
    secret = module.resource("google_secret_manager_secret", "cloudflare_token").instances()[None]
    for grant in readers.values():
        assert grant.get("role") == "roles/secretmanager.secretAccessor"
        assert grant.get("secret_id") == Unknown("google_secret_manager_secret.cloudflare_token.id")
    webhook_readers = _instances(module, "google_secret_manager_secret_iam_member", "webhook_reader")
    webhook_secrets = _instances(module, "google_secret_manager_secret", "webhook")
    granted = {(secret.get("secret_id"), g.get("member")) for g in readers.values()}
    for grant in webhook_readers.values():
        assert grant.get("role") == "roles/secretmanager.secretAccessor"
        ref = re.fullmatch(r'google_secret_manager_secret\.webhook\["([^"]+)"\]\.id', grant.get("secret_id").ref)
        assert ref, grant.get("secret_id")
        granted.add((webhook_secrets[ref.group(1)].get("secret_id"), grant.get("member")))
    assert granted == {(name, _sa(spec.identity)) for spec in specs for name in spec.access.secrets}


@pytest.mark.parametrize("variant", CONFIG_NAMES)
def test_notify_exists_with_webhooks_and_reads_exactly_their_secrets(
    variant: str, config_files: dict[str, Path]
) -> None:
    config = load_config(config_files[variant])
    module = _module(config_files[variant])
    notify = [name for name, fn in module.local("functions").items() if fn["entry_point"] == "notify"]
    assert len(notify) == (1 if config.notifications.webhooks else 0)
    assert ("notify" in module.local("service_accounts")) == bool(config.notifications.webhooks)
    created = _instances(module, "google_secret_manager_secret", "webhook")
    # Created empty: the URLs and keys are added by hand, never through Terraform's state.
    assert sorted(s.get("secret_id") for s in created.values()) == sorted(config.notifications.secrets)


def test_the_control_function_can_read_the_records_it_resolves_previous_from(
    example: tuple[Config, Module],
) -> None:
    # `geodeploy rollback` (target: previous) reads every region's record as `control`.
    config, module = example
    getters = set(_members(module, "google_project_iam_member", "cluster_getter").values())
    assert _sa("control") in getters
    control = next(s for s in functions_of(config) if s.entry_point == "on_control")
    assert set(control.access.clusters) == {r.name for r in config.regions}


def test_only_the_first_wave_is_published_by_a_push(config_files: dict[str, Path]) -> None:
    config = load_config(config_files["sandbox-waves"])
    module = _module(config_files["sandbox-waves"])
    assert len(config.waves) > 1
    pushed = {
        _topic_name_of(module, g.get("topic"))
        for g in _instances(module, "google_pubsub_topic_iam_member", "publisher").values()
        if g.get("member") == _sa("image_pushed")
    }
    assert pushed == {config.deploy_topic(r.name) for r in config.regions_in_wave(config.waves[0])}


def test_project_level_roles_are_only_those_without_a_resource_level_grant(example: tuple[Config, Module]) -> None:
    _, module = example
    allowed = {
        "roles/logging.logWriter", "roles/monitoring.metricWriter", "roles/monitoring.viewer",
        "roles/stackdriver.resourceMetadata.writer", "roles/storage.objectViewer",
    }  # fmt: skip
    for name in module.resources["google_project_iam_member"]:
        for grant in _instances(module, "google_project_iam_member", name).values():
            role = grant.get("role")
            assert role in allowed or role == Unknown("google_project_iam_custom_role.cluster_getter.id"), role


# --- 4. checkov --------------------------------------------------------------------------------


def _checkov() -> str:
    try:
        done = subprocess.run(["bash", str(INSTALL_CHECKOV)], capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.fail(f"checkov is missing and scripts/install-checkov.sh could not run: {e}")
    executable = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not Path(executable).is_file():
        pytest.fail(
            "checkov is missing: scripts/install-checkov.sh failed to install it "
            f"(exit {done.returncode}).\nstderr:\n{done.stderr[-3000:]}"
        )
    return executable


_REPORT: list[dict[str, Any]] = []  # the one scan, shared by the checkov tests


def _checkov_report() -> dict[str, Any]:
    """Runs checkov once; called from the tests themselves, so a missing checkov FAILS them."""
    if not _REPORT:
        _REPORT.append(_scan(_checkov()))
    return _REPORT[0]


def _scan(executable: str) -> dict[str, Any]:
    done = subprocess.run(
        [executable, "--directory", str(INFRA), "--framework", "terraform", "--skip-download", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov printed no JSON report (exit {done.returncode}):\n{done.stderr[-3000:]}")
    reports = report if isinstance(report, list) else [report]
    terraform = [r for r in reports if r.get("check_type") == "terraform"]
    assert terraform, f"checkov scanned no Terraform: {[r.get('check_type') for r in reports]}"
    return terraform[0]


def test_checkov_finds_no_failed_check() -> None:
    checkov_report = _checkov_report()
    summary = checkov_report["summary"]
    failed = [
        f"{c['check_id']} {c['check_name']} — {c['resource']} ({c['file_path']}:{c['file_line_range']})"
        for c in checkov_report["results"]["failed_checks"]
    ]
    assert summary["failed"] == 0 and not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 0


def test_install_checkov_is_idempotent_and_quiet_on_reuse() -> None:
    executable = _checkov()
    again = subprocess.run(["bash", str(INSTALL_CHECKOV)], capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0
    assert again.stdout == executable + "\n", "on reuse it prints only the path"
    assert again.stderr == ""
    assert re.search(r"checkov-\d+\.\d+\.\d+/bin/checkov$", executable), "a pinned version, in its own virtualenv"


def test_every_checkov_skip_has_a_reason() -> None:
    checkov_report = _checkov_report()
    for check in checkov_report["results"]["skipped_checks"]:
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason.strip()) >= 20, f"{check['check_id']} on {check['resource']} is skipped without a reason"


def test_every_inline_skip_is_still_needed() -> None:
    checkov_report = _checkov_report()
    skip = re.compile(r"#\s*checkov:skip=(CKV2?_[A-Z]+_\d+)")
    inline = {(p.name, m.group(1)) for p in INFRA.glob("*.tf") for m in skip.finditer(p.read_text())}
    used = {(Path(c["file_path"]).name, c["check_id"]) for c in checkov_report["results"]["skipped_checks"]}
    assert inline == used, f"inline skips that match no check: {sorted(inline - used)}"
