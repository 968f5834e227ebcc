"""Which functions exist, where they run and what triggers them — the one list the sandbox,
infra/ and cloudbuild.yaml share."""

from __future__ import annotations

import re

import pytest

from shared.config import EVENT_FUNCTION_TIMEOUT_SECONDS
from shared.topology import functions_of, subscription_name
from tests.core.builders import SHIPPED_CONFIGS, build_config, changed, config_data, shipped_config

CENTRAL = {
    "on-image-pushed": "on_image_pushed",
    "on-control": "on_control",
    "on-deploy-result": "on_deploy_result",
    "reconcile-traffic": "reconcile_traffic",
    "check-drift": "check_drift",
    "status-page": "status_page",
}


def by_name(config):
    return {f.name: f for f in functions_of(config)}


def test_the_central_functions_and_one_deploy_function_per_region():
    functions = by_name(build_config())
    assert set(functions) == {f"geodeploy-{n}" for n in CENTRAL} | {
        "geodeploy-deploy-europe-west1",
        "geodeploy-deploy-us-west1",
        "geodeploy-deploy-asia-east1",
    }
    for short, entry in CENTRAL.items():
        assert functions[f"geodeploy-{short}"].entry_point == entry


def test_each_deploy_function_runs_in_the_region_it_deploys_to_and_listens_to_its_topic():
    config = build_config()
    for region in config.regions:
        spec = by_name(config)[f"geodeploy-deploy-{region.name}"]
        assert spec.entry_point == "deploy_region"
        assert (spec.location, spec.region) == (region.name, region.name)
        assert spec.topics == (f"geodeploy-deploy-{region.name}",)


def test_central_functions_run_in_the_first_region_by_default():
    functions = functions_of(build_config())
    assert {f.location for f in functions if f.entry_point != "deploy_region"} == {"europe-west1"}


def test_central_functions_run_where_the_config_says():
    config = build_config(changed(config_data(), "functions_region", "us-central1"))
    functions = functions_of(config)
    assert {f.location for f in functions if f.entry_point != "deploy_region"} == {"us-central1"}
    assert {f.location for f in functions if f.entry_point == "deploy_region"} == {
        "europe-west1",
        "us-west1",
        "asia-east1",
    }


def test_the_status_page_has_no_topic_and_only_the_configured_viewers():
    [page] = [f for f in functions_of(build_config()) if f.entry_point == "status_page"]
    assert page.topics == () and page.viewers == ()
    viewers = ["user:ana@example.com", "group:sre@example.com"]
    config = build_config(changed(config_data(), "status_page", {"viewers": viewers}))
    [page] = [f for f in functions_of(config) if f.entry_point == "status_page"]
    assert page.viewers == tuple(viewers)
    assert page.access.publishes == () and page.access.secrets == (config.cloudflare.api_token_secret,)


@pytest.mark.parametrize("member", ["allUsers", "allAuthenticatedUsers", "ana@example.com", "user:"])
def test_the_status_page_is_never_public(member):
    from shared.errors import ConfigError

    with pytest.raises((ConfigError, ValueError)):
        build_config(changed(config_data(), "status_page", {"viewers": [member]}))


def test_triggers():
    topics = {f.entry_point: f.topics for f in functions_of(build_config())}
    assert topics["on_image_pushed"] == ("gcr",)
    assert topics["on_control"] == ("geodeploy-control",)
    assert topics["on_deploy_result"] == ("geodeploy-results",)
    assert topics["check_drift"] == ("geodeploy-drift",)


def test_reconcile_traffic_is_serialized_and_triggered_by_results_and_drift_checks():
    functions = functions_of(build_config())
    [reconcile] = [f for f in functions if f.entry_point == "reconcile_traffic"]
    assert reconcile.serialized
    assert set(reconcile.topics) == {"geodeploy-results", "geodeploy-drift"}
    assert [f.name for f in functions if f.serialized] == [reconcile.name]


@pytest.mark.parametrize("budget", [10, 300, 420, 480, 510])
def test_deploy_functions_outlive_their_watch_budget_within_the_event_limit(budget):
    # The shortest progress deadline, so that every budget makes a valid rollout section.
    rollout = {"call_budget_seconds": budget, "progress_deadline_seconds": 10}
    config = build_config(changed(config_data(), "rollout", rollout))
    for spec in functions_of(config):
        assert spec.timeout_seconds <= EVENT_FUNCTION_TIMEOUT_SECONDS
        if spec.entry_point == "deploy_region":
            assert spec.timeout_seconds >= budget + 30  # time left to record and report after the watch


@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_every_function_name_is_prefixed_by_the_installation_name(name):
    config = shipped_config(name)
    assert all(f.name.startswith(f"{config.name}-") for f in functions_of(config))


@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_function_names_are_valid_cloud_run_service_names(name):
    for spec in functions_of(shipped_config(name)):
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", spec.name)
        assert len(spec.name) <= 63


def test_the_longest_names_still_fit():
    data = changed(config_data(), "name", "a" * 15)
    data["regions"][0]["name"] = "northamerica-northeast2"
    for spec in functions_of(build_config(data)):
        assert len(spec.name) <= 63, spec.name


def subscriptions(config):
    return [subscription_name(f, topic) for f in functions_of(config) for topic in f.topics]


@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_subscription_names_are_unique(name):
    names = subscriptions(shipped_config(name))
    assert len(names) == len(set(names))


def test_the_two_sandbox_installations_share_a_project_without_clashing():
    shop, waves = shipped_config("sandbox"), shipped_config("sandbox-waves")
    assert not {f.name for f in functions_of(shop)} & {f.name for f in functions_of(waves)}
    assert not set(subscriptions(shop)) & set(subscriptions(waves))


def test_a_subscription_name_says_which_function_and_topic():
    [reconcile] = [f for f in functions_of(build_config()) if f.entry_point == "reconcile_traffic"]
    assert subscription_name(reconcile, "geodeploy-drift") == "geodeploy-reconcile-traffic--geodeploy-drift"
