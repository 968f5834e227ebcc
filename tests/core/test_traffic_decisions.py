"""Which regions take traffic, and what Cloudflare should hold: geo steering to the own
region first, unhealthy regions drained, never zero pools, and no writes when nothing changed."""

from __future__ import annotations

import pytest

from shared.releases import ReleaseRecord
from shared.traffic import (
    RegionHealth,
    assess_region,
    changed_fields,
    choose_enabled_pools,
    desired_load_balancer,
    desired_monitor,
    desired_pool,
    monitor_edit,
)
from tests.core.builders import (
    at,
    build_config,
    changed,
    config_data,
    deployment,
    record,
    ref,
    release,
    shipped_config,
)

REGIONS = ("europe-west1", "us-west1", "asia-east1")
POOL_IDS = {"europe-west1": "pool-eu", "us-west1": "pool-us", "asia-east1": "pool-asia"}


def good_record():
    return record(release("rel-current", ref("v1"), issued_at=at(0)))


# --- assessing a region -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deploy", "rec", "state", "reason"),
    [
        (None, ReleaseRecord(), "unhealthy", "not_deployed"),
        (deployment(), good_record(), "healthy", "serving"),
        (deployment(), ReleaseRecord(), "healthy", "serving"),  # deployed before geodeploy kept records
        (
            deployment(),
            record(
                release("rel-bad-rb", ref("v1"), status="progressing", kind="rollback", rollback_of="rel-bad"),
                release("rel-bad", ref("v2"), status="failed"),
            ),
            "unhealthy",
            "rolling_back",
        ),
        (
            deployment(),
            record(release("rel-bad", ref("v2"), status="failed"), *good_record().history),
            "unhealthy",
            "release_failed",
        ),
        (
            deployment(condition_reason="ProgressDeadlineExceeded", updated=1, total=4),
            good_record(),
            "unhealthy",
            "rollout_failed",
        ),
        (deployment(available=1), good_record(), "unhealthy", "below_min_available"),
    ],
    ids=["not-deployed", "healthy", "no-record", "rolling-back", "release-failed", "deadline", "below-pdb"],
)
def test_assess_region(deploy, rec, state, reason):
    health = assess_region("europe-west1", deploy, rec, min_available=2)
    assert (health.state, health.reason) == (state, reason)
    assert health.healthy is (state == "healthy")


def test_a_region_mid_rollout_with_enough_pods_keeps_serving():
    rec = record(release("rel-new", ref("v2"), status="progressing"), *good_record().history)
    health = assess_region("europe-west1", deployment(updated=1, total=4, available=3), rec, min_available=2)
    assert health.healthy
    assert health.available == 3


def test_a_finished_automatic_rollback_serves_again():
    rec = record(
        release("rel-bad-rb", ref("v1"), kind="rollback", rollback_of="rel-bad"),
        release("rel-bad", ref("v2"), status="failed"),
    )
    assert assess_region("europe-west1", deployment(), rec, min_available=2).healthy


def test_a_failed_automatic_rollback_keeps_the_region_drained():
    rec = record(
        release("rel-bad-rb", ref("v1"), status="failed", kind="rollback", rollback_of="rel-bad"),
        release("rel-bad", ref("v2"), status="failed"),
    )
    health = assess_region("europe-west1", deployment(), rec, min_available=2)
    assert not health.healthy
    assert health.reason == "rollback_failed"


def test_the_available_count_is_reported_for_unhealthy_regions():
    assert assess_region("europe-west1", deployment(available=1), good_record(), 2).available == 1


@pytest.mark.parametrize("deploy", [deployment(), deployment(available=1), None], ids=["serving", "short", "none"])
def test_a_region_whose_release_record_cannot_be_read_is_never_healthy(deploy):
    # record None: the record is there but unreadable (a hand edit); its pods may look fine,
    # but a failed release or a running rollback cannot be ruled out.
    health = assess_region("europe-west1", deploy, None, min_available=2)
    assert (health.state, health.reason) == ("unhealthy", "release_record_unreadable")
    assert not health.healthy
    assert health.available == (0 if deploy is None else deploy["status"]["availableReplicas"])


def test_a_region_with_an_unreadable_record_is_drained_while_the_others_serve():
    health = {
        "europe-west1": assess_region("europe-west1", deployment(), good_record(), 2),
        "us-west1": assess_region("us-west1", deployment(), None, 2),
        "asia-east1": assess_region("asia-east1", deployment(), good_record(), 2),
    }
    chosen = choose_enabled_pools(build_config(), health, dict.fromkeys(REGIONS, True))
    assert chosen == {"europe-west1": True, "us-west1": False, "asia-east1": True}


# --- choosing pools -------------------------------------------------------------------------------


def health_of(**states):
    return {name: RegionHealth(name, states.get(name.replace("-", "_"), "healthy"), "test") for name in REGIONS}


def test_healthy_regions_are_enabled_and_unhealthy_or_unreachable_ones_drained():
    config = build_config()
    chosen = choose_enabled_pools(
        config, health_of(us_west1="unhealthy", asia_east1="unreachable"), dict.fromkeys(REGIONS, True)
    )
    assert chosen == {"europe-west1": True, "us-west1": False, "asia-east1": False}


def test_a_recovered_region_is_restored():
    chosen = choose_enabled_pools(
        build_config(), health_of(), {"europe-west1": True, "us-west1": False, "asia-east1": False}
    )
    assert chosen == dict.fromkeys(REGIONS, True)


ALL_DOWN = {"europe_west1": "unhealthy", "us_west1": "unreachable", "asia_east1": "unhealthy"}


@pytest.mark.parametrize(
    ("enabled_now", "fallback", "kept"),
    [
        ({"europe-west1": False, "us-west1": True, "asia-east1": False}, None, "us-west1"),  # already serving
        ({"europe-west1": True, "us-west1": True, "asia-east1": False}, None, "europe-west1"),  # fallback first
        ({"europe-west1": True, "us-west1": False, "asia-east1": True}, "asia-east1", "asia-east1"),
        (dict.fromkeys(REGIONS, False), None, "europe-west1"),  # none serving: the fallback region
        (dict.fromkeys(REGIONS, False), "us-west1", "us-west1"),
        ({}, "asia-east1", "asia-east1"),  # no pools exist yet
    ],
)
def test_with_every_region_down_exactly_one_pool_stays_enabled(enabled_now, fallback, kept):
    data = config_data() if fallback is None else changed(config_data(), "cloudflare.fallback_region", fallback)
    chosen = choose_enabled_pools(build_config(data), health_of(**ALL_DOWN), enabled_now)
    assert [name for name, on in chosen.items() if on] == [kept]


def test_a_single_region_install_never_drains_its_only_pool():
    data = config_data()
    data["regions"] = data["regions"][:1]
    chosen = choose_enabled_pools(
        build_config(data), {"europe-west1": RegionHealth("europe-west1", "unhealthy", "x")}, {"europe-west1": True}
    )
    assert chosen == {"europe-west1": True}


# --- the load balancer, pools and monitor ---------------------------------------------------------------


def test_each_cloudflare_region_goes_to_its_own_pool_first_then_the_others_in_config_order():
    lb = desired_load_balancer(build_config(), POOL_IDS)
    assert lb["steering_policy"] == "geo"
    assert lb["region_pools"] == {
        "WEU": ["pool-eu", "pool-us", "pool-asia"],
        "EEU": ["pool-eu", "pool-us", "pool-asia"],
        "ME": ["pool-eu", "pool-us", "pool-asia"],
        "NAF": ["pool-eu", "pool-us", "pool-asia"],
        "SAF": ["pool-eu", "pool-us", "pool-asia"],
        "WNAM": ["pool-us", "pool-eu", "pool-asia"],
        "ENAM": ["pool-us", "pool-eu", "pool-asia"],
        "NSAM": ["pool-us", "pool-eu", "pool-asia"],
        "SSAM": ["pool-us", "pool-eu", "pool-asia"],
        "SEAS": ["pool-asia", "pool-eu", "pool-us"],
        "NEAS": ["pool-asia", "pool-eu", "pool-us"],
        "SAS": ["pool-asia", "pool-eu", "pool-us"],
        "OC": ["pool-asia", "pool-eu", "pool-us"],
    }


def test_default_pools_follow_config_order_and_the_fallback_is_the_fallback_regions_pool():
    lb = desired_load_balancer(build_config(), POOL_IDS)
    assert lb["default_pools"] == ["pool-eu", "pool-us", "pool-asia"]
    assert lb["fallback_pool"] == "pool-eu"
    named = build_config(changed(config_data(), "cloudflare.fallback_region", "asia-east1"))
    assert desired_load_balancer(named, POOL_IDS)["fallback_pool"] == "pool-asia"


def test_the_load_balancer_is_the_configured_hostname_and_proxied_setting():
    lb = desired_load_balancer(build_config(changed(config_data(), "cloudflare.proxied", False)), POOL_IDS)
    assert lb["name"] == "shop.example.test"
    assert lb["proxied"] is False
    assert lb["enabled"] is True
    assert (lb["country_pools"], lb["pop_pools"]) == ({}, {})


def test_the_seed_articles_two_regions_steer_europe_and_the_americas():
    config = shipped_config("example")
    lb = desired_load_balancer(config, {"europe-west1": "eu", "us-west1": "us"})
    assert lb["region_pools"]["WEU"] == ["eu", "us"]
    assert lb["region_pools"]["WNAM"] == ["us", "eu"]
    assert "SEAS" not in lb["region_pools"]  # unlisted areas use default_pools


def test_a_pool_points_at_the_regions_static_ip_and_probes_from_its_users_areas():
    region = build_config().region("us-west1")
    pool = desired_pool(region, "mon-1", enabled=True)
    assert pool["name"] == "shop-us-west1"
    assert pool["origins"] == [{"name": "us-west1", "address": "192.0.2.20", "enabled": True, "weight": 1}]
    assert pool["check_regions"] == ["ENAM", "NSAM", "SSAM", "WNAM"]
    assert pool["monitor"] == "mon-1"
    assert pool["enabled"] is True
    assert pool["minimum_origins"] == 1


def test_a_drained_pool_is_disabled_but_keeps_its_origin():
    pool = desired_pool(build_config().region("asia-east1"), "mon-1", enabled=False)
    assert pool["enabled"] is False
    assert pool["origins"][0]["enabled"] is True


def test_the_monitor_probes_the_app_with_its_host_name():
    monitor = desired_monitor(
        build_config(changed(config_data(), "cloudflare.monitor", {"path": "/_ready", "interval": 30}))
    )
    assert monitor["header"] == {"Host": ["shop.example.test"]}
    assert (monitor["path"], monitor["interval"], monitor["type"], monitor["method"]) == ("/_ready", 30, "http", "GET")
    assert "shop" in monitor["description"]


# --- only what changed is written ---------------------------------------------------------------------


def live_pool(**changes):
    """A pool as Cloudflare returns it: our fields plus ids, timestamps and defaulted origin fields."""
    pool = desired_pool(build_config().region("us-west1"), "mon-1", enabled=True)
    pool.update(
        id="pool-us",
        created_on="2026-01-01T00:00:00Z",
        modified_on="2026-01-02T00:00:00Z",
        healthy=True,
        origin_steering={"policy": "random"},
        check_regions=list(reversed(pool["check_regions"])),
        origins=[
            {
                **pool["origins"][0],
                "weight": 1.0,
                "header": {},
                "port": 0,
                "virtual_network_id": "",
                "disabled_at": None,
            }
        ],
    )
    pool.update(changes)
    return pool


def test_an_identical_object_needs_no_write():
    desired = desired_pool(build_config().region("us-west1"), "mon-1", enabled=True)
    assert changed_fields(desired, live_pool()) == {}


def test_identical_load_balancer_and_monitor_need_no_write():
    config = build_config()
    lb = desired_load_balancer(config, POOL_IDS)
    assert changed_fields(lb, {**lb, "id": "lb-1", "ttl": 30, "country_pools": None, "pop_pools": None}) == {}
    monitor = desired_monitor(config)
    assert changed_fields(monitor, {**monitor, "id": "m-1", "consecutive_up": 0}) == {}


@pytest.mark.parametrize(
    ("live_changes", "keys"),
    [
        ({"enabled": False}, {"enabled"}),
        ({"monitor": "mon-2"}, {"monitor"}),
        ({"check_regions": ["WNAM"]}, {"check_regions"}),
        ({"check_regions": None}, {"check_regions"}),
        ({"origins": [{"name": "us-west1", "address": "192.0.2.99", "enabled": True, "weight": 1}]}, {"origins"}),
        ({"origins": [{"name": "us-west1", "address": "192.0.2.20", "enabled": False, "weight": 1}]}, {"origins"}),
        ({"origins": [{"name": "us-west1", "address": "192.0.2.20", "enabled": True, "weight": 0.5}]}, {"origins"}),
        ({"enabled": False, "description": "by hand"}, {"enabled", "description"}),
    ],
)
def test_only_the_changed_keys_are_reported(live_changes, keys):
    desired = desired_pool(build_config().region("us-west1"), "mon-1", enabled=True)
    delta = changed_fields(desired, live_pool(**live_changes))
    assert set(delta) == keys
    assert delta == {k: desired[k] for k in keys}


def test_an_origin_without_explicit_defaults_matches():
    desired = desired_pool(build_config().region("us-west1"), "mon-1", enabled=True)
    assert changed_fields(desired, live_pool(origins=[{"name": "us-west1", "address": "192.0.2.20"}])) == {}


def test_a_changed_region_order_in_the_load_balancer_is_reported():
    lb = desired_load_balancer(build_config(), POOL_IDS)
    live = {**lb, "region_pools": {**lb["region_pools"], "WEU": ["pool-us", "pool-eu", "pool-asia"]}}
    assert changed_fields(lb, live) == {"region_pools": lb["region_pools"]}


def test_a_missing_live_field_is_a_change():
    lb = desired_load_balancer(build_config(), POOL_IDS)
    live = {k: v for k, v in lb.items() if k != "fallback_pool"}
    assert set(changed_fields(lb, live)) == {"fallback_pool"}


def test_a_monitor_edit_always_carries_its_expected_codes():
    # Cloudflare's schema requires expected_codes in every monitor write, PATCH included.
    desired = desired_monitor(build_config(config_data()))
    assert monitor_edit(desired, {"interval": 30}) == {"expected_codes": desired["expected_codes"], "interval": 30}
    assert monitor_edit(desired, {"expected_codes": "2xx"})["expected_codes"] == "2xx"
