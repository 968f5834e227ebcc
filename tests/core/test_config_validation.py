"""The config file: the shipped ones load, mistakes are named by their exact path, and
what a user leaves out is the seed article's app."""

from __future__ import annotations

import copy

import pytest
import yaml

from shared.config import parse_config
from shared.errors import ConfigError
from tests.core.builders import (
    SHIPPED_CONFIGS,
    build_config,
    changed,
    config_data,
    delete_at,
    shipped_config,
)

CLOUDFLARE_CODES = ["WNAM", "ENAM", "WEU", "EEU", "NSAM", "SSAM", "OC", "ME", "NAF", "SAF", "SAS", "SEAS", "NEAS"]


def config_error(data: object, source: str = "test.yaml") -> str:
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source)
    return str(caught.value)


# --- the shipped configs -----------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_shipped_config_loads(name):
    config = shipped_config(name)
    assert config.apps and config.regions
    assert config.cloudflare.app in {a.name for a in config.apps}


def test_example_config_mirrors_the_seed_article_two_regions_in_two_waves():
    config = shipped_config("example")
    assert [r.name for r in config.regions] == ["europe-west1", "us-west1"]
    assert config.waves == [1, 2]
    assert config.app("image-charts").manifests.container_name == "image-charts"


def test_sandbox_config_deploys_three_regions_in_one_wave():
    config = shipped_config("sandbox")
    assert [r.name for r in config.regions] == ["europe-west1", "us-west1", "asia-east1"]
    assert config.waves == [1]


def test_sandbox_waves_config_deploys_europe_first_then_the_rest():
    config = shipped_config("sandbox-waves")
    assert [r.name for r in config.regions_in_wave(1)] == ["europe-west1"]
    assert [r.name for r in config.regions_in_wave(2)] == ["us-west1", "asia-east1"]
    assert config.name == "waves"


def test_the_two_sandbox_configs_can_share_a_project_without_clashing_names():
    shop, waves = shipped_config("sandbox"), shipped_config("sandbox-waves")
    assert shop.name != waves.name
    shop_topics = {shop.deploy_topic(r.name) for r in shop.regions} | {shop.topics.results, shop.topics.control}
    waves_topics = {waves.deploy_topic(r.name) for r in waves.regions} | {waves.topics.results, waves.topics.control}
    assert not shop_topics & waves_topics
    assert {a.repository for a in shop.apps}.isdisjoint(a.repository for a in waves.apps)


# --- typos and missing keys ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "projct",
        "regions[1].cluster.nmae",
        "apps[0].manifests.readines",
        "apps[0].manifests.resources.limit_cpu",
        "apps[0].manifests.liveness.periodSeconds",
        "regions[0].static_ip.adress",
        "regions[2].cloudflare.geo_region",
        "cloudflare.monitor.intervall",
        "cloudflare.fallback",
        "rollout.call_budget",
        "drift.heals",
        "topics.result",
    ],
)
def test_a_typo_anywhere_is_an_unknown_key_error_naming_its_exact_path(path):
    data = config_data()
    if path.startswith("apps[0].manifests.liveness."):
        data["apps"][0]["manifests"] = {"liveness": dict(_SEED_LIVENESS)}
    message = config_error(changed(data, path, 1))
    assert f"{path}: unknown key" in message
    assert message.startswith("test.yaml: ")


def test_every_typo_in_a_file_is_reported_at_once():
    data = changed(changed(config_data(), "regions[0].cluster.nmae", "x"), "apps[0].namspace", "y")
    message = config_error(data)
    assert "regions[0].cluster.nmae: unknown key" in message
    assert "apps[0].namspace: unknown key" in message


@pytest.mark.parametrize(
    "path",
    [
        "version",
        "project",
        "cloudflare",
        "cloudflare.account_id",
        "cloudflare.app",
        "apps[0].namespace",
        "apps[0].repository",
        "regions[0].cluster",
        "regions[1].static_ip.address",
        "regions[2].cloudflare.pool",
    ],
)
def test_a_missing_required_key_is_named(path):
    message = config_error(delete_at(config_data(), path))
    assert f"{path}: required key is missing" in message


@pytest.mark.parametrize("key", ["apps", "regions"])
def test_at_least_one_app_and_one_region_are_required(key):
    assert key in config_error(changed(config_data(), key, []))


# --- bad values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("apps[0].tag_filter", "v[0-9", "apps[0].tag_filter: not a valid RE2 regular expression"),
        ("apps[0].namespace", "kube-system", "apps[0].namespace: 'kube-system' is a system namespace"),
        ("apps[0].namespace", "default", "apps[0].namespace: 'default' is a system namespace"),
        ("apps[0].namespace", "gke-managed-system", "apps[0].namespace: 'gke-managed-system' is a system"),
        ("regions[0].cloudflare.geo_regions", ["WEU", "EUROPE"], "regions[0].cloudflare.geo_regions[1]"),
        ("regions[0].cloudflare.geo_regions", [], "regions[0].cloudflare.geo_regions"),
        ("regions[1].name", "europe-west1", "regions: 'europe-west1' appears twice"),
        ("regions[1].cloudflare.pool", "shop-europe-west1", "regions[].cloudflare.pool: 'shop-europe-west1' appears"),
        ("regions[2].static_ip.address", "192.0.2.10", "regions[].static_ip.address: '192.0.2.10' appears twice"),
        ("cloudflare.app", "blog", "cloudflare.app: no app named 'blog'"),
        ("cloudflare.fallback_region", "us-east1", "cloudflare.fallback_region: no region named 'us-east1'"),
        ("apps[0].manifests", {"min_replicas": 4, "max_replicas": 3}, "max_replicas must be at least min_replicas"),
        ("apps[0].manifests", {"min_replicas": 3, "min_available": 4}, "min_available (the PDB) cannot exceed"),
        ("apps[0].manifests", {"traffic_port": 8081}, "traffic_port and monitoring_port must differ"),
        ("rollout.call_budget_seconds", 511, "rollout.call_budget_seconds"),
        ("rollout.history_limit", 1, "rollout.history_limit"),
        ("cloudflare.account_id", "not-hex", "cloudflare.account_id"),
        ("regions[0].name", "Europe West", "regions[0].name"),
        ("apps[0].name", "Shop", "apps[0].name"),
        ("apps[0].manifests", {"max_surge": "200"}, "apps[0].manifests.max_surge"),
        ("apps[0].manifests", {"resources": {"limits_memory": "380MB"}}, "apps[0].manifests.resources.limits_memory"),
        ("apps[0].manifests", {"readiness": {"path": "/_ready"}}, "apps[0].manifests.readiness.period_seconds"),
        ("version", 2, "version"),
        ("regions[0].wave", 0, "regions[0].wave"),
    ],
)
def test_a_bad_value_is_rejected_with_its_path(path, value, expected):
    assert expected in config_error(changed(config_data(), path, value))


def test_two_apps_on_one_repository_are_rejected():
    data = config_data(worker=True)
    data["apps"][1]["repository"] = data["apps"][0]["repository"]
    assert "apps[].repository" in config_error(data)
    assert "appears twice" in config_error(data)


def test_two_apps_with_one_name_are_rejected():
    data = config_data(worker=True)
    data["apps"][1]["name"] = "shop"
    assert "apps: 'shop' appears twice" in config_error(data)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("rollout.call_budget_seconds", 510),  # 540 s event-function limit minus 30 s to report
        ("apps[0].manifests", {"min_replicas": 4, "max_replicas": 4}),
        ("apps[0].manifests", {"min_replicas": 2, "min_available": 2}),
        ("apps[0].manifests", {"min_available": 0}),
        ("regions[0].cloudflare.geo_regions", ["WEU"]),
        ("cloudflare.fallback_region", "asia-east1"),
        ("apps[0].tag_filter", r"v\d+\.\d+\.\d+|stable"),
        ("apps[0].repository", "localhost:5000/team/shop"),
    ],
)
def test_boundary_values_are_accepted(path, value):
    build_config(changed(config_data(), path, value))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\napps: [\n", "test.yaml: not valid YAML"),
        ("- version: 1\n", "test.yaml: expected a mapping at the top level"),
        ("just words\n", "test.yaml: expected a mapping at the top level"),
        ("", "test.yaml: expected a mapping at the top level"),
        ("version: 1\n\tproject: x\n", "test.yaml: not valid YAML"),
    ],
)
def test_a_file_that_is_not_a_yaml_mapping_is_a_config_error(text, expected):
    assert config_error(text).startswith(expected)


def test_the_error_names_the_file_it_came_from():
    assert config_error(delete_at(config_data(), "project"), source="/etc/geodeploy/prod.yaml").startswith(
        "/etc/geodeploy/prod.yaml: "
    )


# --- defaults: the seed article's app ---------------------------------------------------------

_SEED_LIVENESS = {
    "path": "/healthz",
    "initial_delay_seconds": 20,
    "timeout_seconds": 2,
    "period_seconds": 2,
    "failure_threshold": 5,
    "success_threshold": 1,
}


def test_an_app_without_manifests_gets_the_seed_articles_values():
    m = build_config().app("shop").manifests
    assert (m.min_replicas, m.max_replicas, m.cpu_target_percent) == (3, 5, 200)
    assert m.min_available == 2
    assert m.revision_history_limit == 2
    assert (m.max_unavailable, m.max_surge) == ("25%", "200%")
    assert (m.resources.requests_memory, m.resources.requests_cpu) == ("100Mi", "1")
    assert (m.resources.limits_memory, m.resources.limits_cpu) == ("380Mi", "2")
    assert (m.traffic_port, m.monitoring_port, m.service_port) == (8080, 8081, 80)


def test_default_readiness_probe_is_the_seeds():
    r = build_config().app("shop").manifests.readiness
    assert (r.path, r.initial_delay_seconds, r.timeout_seconds, r.period_seconds) == ("/_ready", 20, 4, 5)
    assert (r.failure_threshold, r.success_threshold) == (1, 2)


def test_default_liveness_probe_is_the_seeds():
    live = build_config().app("shop").manifests.liveness
    assert live.model_dump() == _SEED_LIVENESS


def test_overriding_one_manifest_value_keeps_the_other_defaults():
    m = build_config(changed(config_data(), "apps[0].manifests", {"max_replicas": 9})).app("shop").manifests
    assert m.max_replicas == 9
    assert (m.min_replicas, m.min_available, m.readiness.path) == (3, 2, "/_ready")


def test_other_defaults():
    config = build_config()
    assert config.name == "geodeploy"
    assert config.rollout.call_budget_seconds == 420
    assert config.topics.images == "gcr"
    assert config.drift.heal is False
    assert config.cloudflare.proxied is True
    assert config.app("shop").tag_filter == ".*"
    assert config.app("shop").deploy_untagged is True
    assert all(r.wave == 1 for r in build_config(_without_waves()).regions)


def _without_waves():
    data = config_data()
    for region in data["regions"]:
        del region["wave"]
    return data


# --- look-ups --------------------------------------------------------------------------------


def test_fallback_region_defaults_to_the_first_region():
    assert build_config().fallback_region.name == "europe-west1"
    named = build_config(changed(config_data(), "cloudflare.fallback_region", "us-west1"))
    assert named.fallback_region.name == "us-west1"


def test_waves_are_ordered_and_the_next_wave_follows():
    config = build_config(config_data(waves=True))
    assert config.waves == [1, 2]
    assert config.next_wave(1) == 2
    assert config.next_wave(2) is None


def test_waves_need_not_be_consecutive():
    config = build_config(changed(config_data(waves=True), "regions[2].wave", 5))
    assert config.waves == [1, 2, 5]
    assert config.next_wave(2) == 5


def test_deploy_topic_is_prefix_and_region():
    assert build_config().deploy_topic("us-west1") == "geodeploy-deploy-us-west1"


def test_app_for_repository_matches_the_whole_repository_only():
    config = build_config()
    assert config.app_for_repository("europe-docker.pkg.dev/geo-test-project/apps/shop").name == "shop"
    assert config.app_for_repository("europe-docker.pkg.dev/geo-test-project/apps/shop-canary") is None
    assert config.app_for_repository("europe-docker.pkg.dev/geo-test-project/apps") is None


@pytest.mark.parametrize(
    ("tag", "accepted"),
    [("v1.2.3", True), ("v10.20.30", True), ("v1.2.3-rc1", False), ("xv1.2.3", False), ("v1.2", False)],
)
def test_the_tag_filter_must_match_the_whole_tag(tag, accepted):
    assert shipped_config("example").app("image-charts").accepts_tag(tag) is accepted


@pytest.mark.parametrize("deploy_untagged", [True, False])
def test_an_untagged_push_is_accepted_only_when_the_app_allows_it(deploy_untagged):
    config = build_config(changed(config_data(), "apps[0].deploy_untagged", deploy_untagged))
    assert config.app("shop").accepts_tag(None) is deploy_untagged


def test_key_order_in_the_file_does_not_matter():
    data = config_data()
    reordered = dict(reversed(list(copy.deepcopy(data).items())))
    assert build_config(reordered) == build_config(data)


# --- gaps found while writing these tests -------------------------------------------------


def test_liveness_success_threshold_other_than_one_is_rejected():
    data = changed(config_data(), "apps[0].manifests", {"liveness": {**_SEED_LIVENESS, "success_threshold": 2}})
    assert "liveness" in config_error(data)


def test_a_static_ip_with_an_octet_above_255_is_rejected():
    assert "regions[0].static_ip.address" in config_error(
        changed(config_data(), "regions[0].static_ip.address", "300.1.1.1")
    )


def test_a_cloudflare_geo_code_claimed_by_two_regions_is_rejected():
    assert "WEU" in config_error(changed(config_data(), "regions[1].cloudflare.geo_regions", ["WNAM", "WEU"]))


def test_a_key_written_twice_is_an_error():
    text = yaml.safe_dump(config_data(), sort_keys=False).replace(
        "version: 1\n", "version: 1\nproject: other-project\n"
    )
    assert "project" in config_error(text)


def test_two_apps_sharing_a_namespace_do_not_fight_over_it():
    from shared.rendering import render_release
    from tests.core.builders import image

    data = config_data(worker=True)
    data["apps"][1]["namespace"] = "shop"
    try:
        config = build_config(data)
    except ConfigError:
        return  # rejecting the config is a fine answer too
    region = config.regions[0]
    shop = render_release(config, config.app("shop"), region, image("a")).find("Namespace")
    worker = render_release(config, config.app("worker"), region, image("b", config.app("worker").repository))
    assert worker.find("Namespace") == shop


# --- rules that keep a slow or stuck rollout from being lost ----------------------------------
# Pub/Sub delivers a deploy request at most 5 times (infra/pubsub.tf), each call watching at
# most call_budget_seconds, with up to 600 s of backoff between calls.


def test_a_progress_deadline_no_delivery_would_see_pass_is_rejected():
    rollout = {"call_budget_seconds": 60, "progress_deadline_seconds": 240}  # 4 × 60: fails during the last call
    error = config_error(changed(config_data(), "rollout", rollout))
    assert "rollout.progress_deadline_seconds: must be less than 240 s" in error


def test_a_short_call_budget_makes_the_default_progress_deadline_undecidable():
    # progress_deadline_seconds is left at 240: the error names the key to change all the same.
    error = config_error(changed(config_data(), "rollout.call_budget_seconds", 30))
    assert "rollout.progress_deadline_seconds: must be less than 120 s" in error


@pytest.mark.parametrize(("budget", "deadline"), [(60, 239), (420, 240), (510, 2039), (10, 10)])
def test_a_progress_deadline_that_passes_before_the_last_delivery_is_accepted(budget, deadline):
    rollout = {"call_budget_seconds": budget, "progress_deadline_seconds": deadline, "max_event_age_seconds": 86400}
    assert build_config(changed(config_data(), "rollout", rollout)).rollout.progress_deadline_seconds == deadline


def test_an_event_age_limit_that_drops_a_rollout_still_being_watched_is_rejected():
    # Deadline 200 s, budget 60 s: the deadline may pass during the 4th call's watch, and the 5th
    # rolls back; that delivery may start 4 × (60 s of watching + 600 s of backoff) after the push.
    rollout = {"call_budget_seconds": 60, "progress_deadline_seconds": 200, "max_event_age_seconds": 2639}
    error = config_error(changed(config_data(), "rollout", rollout))
    assert "rollout.max_event_age_seconds: must be at least 2640 s" in error


def test_the_default_event_age_limit_is_checked_against_the_rollout_it_must_outlive():
    rollout = {"call_budget_seconds": 510, "progress_deadline_seconds": 1600}  # max_event_age left at 3600
    error = config_error(changed(config_data(), "rollout", rollout))
    assert "rollout.max_event_age_seconds: must be at least 4440 s" in error


def test_an_event_age_limit_that_outlives_every_needed_delivery_is_accepted():
    rollout = {"call_budget_seconds": 60, "progress_deadline_seconds": 200, "max_event_age_seconds": 2640}
    assert build_config(changed(config_data(), "rollout", rollout)).rollout.max_event_age_seconds == 2640


@pytest.mark.parametrize(("surge", "unavailable"), [("0%", "0%"), (0, 0), (0, "0%"), ("0%", 0), ("00%", 0)], ids=str)
def test_a_rolling_update_that_may_neither_add_nor_remove_a_pod_is_rejected(surge, unavailable):
    manifests = {"max_surge": surge, "max_unavailable": unavailable}
    error = config_error(changed(config_data(), "apps[0].manifests", manifests))
    assert "apps[0].manifests.max_surge: cannot be 0 while max_unavailable is 0 too" in error


@pytest.mark.parametrize(("surge", "unavailable"), [(1, 0), ("0%", 1), ("25%", "0%"), (0, "25%")], ids=str)
def test_rolling_update_bounds_take_pod_counts_or_percentages(surge, unavailable):
    manifests = (
        build_config(changed(config_data(), "apps[0].manifests", {"max_surge": surge, "max_unavailable": unavailable}))
        .apps[0]
        .manifests
    )
    assert (manifests.max_surge, manifests.max_unavailable) == (surge, unavailable)


@pytest.mark.parametrize("bad", ["0", "25", -1, True, "25 %"], ids=str)
def test_a_rolling_update_bound_that_kubernetes_would_refuse_is_rejected(bad):
    error = config_error(changed(config_data(), "apps[0].manifests", {"max_surge": bad}))
    assert "apps[0].manifests.max_surge: must be a number of pods (e.g. 1) or a percentage" in error
