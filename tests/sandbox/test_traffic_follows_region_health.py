"""reconcile_traffic keeps Cloudflare's geo load balancer true to the regions' health:
exactly one monitor, one pool per region and one load balancer; zero writes when
nothing changed; a failing region drained and restored; never zero pools serving;
convergence through rate limits and server errors; the token never in a log."""

from __future__ import annotations

import pytest

from sandbox.driver import digest_for, wait_until

pytestmark = pytest.mark.sandbox


def _ours(state: dict, config) -> tuple[list, dict, list]:
    from shared.traffic import monitor_description

    # Exactly this config's (other tests run configs of their own against the same account).
    monitors = [m for m in state["monitors"] if m["description"] == monitor_description(config)]
    pool_names = {r.cloudflare.pool for r in config.regions}
    pools = {}
    for pool in state["pools"]:
        if pool["name"] in pool_names:
            pools.setdefault(pool["name"], []).append(pool)
    lbs = [b for b in state["load_balancers"] if b["name"] == config.cloudflare.hostname]
    return monitors, pools, lbs


def _enabled(sandbox, config) -> dict[str, bool]:
    _, pools, _ = _ours(sandbox.sandbox.cloudflare.state(), config)
    return {r.name: pools[r.cloudflare.pool][0]["enabled"] for r in config.regions}


@pytest.fixture(scope="module")
def deployed(sandbox, shop):
    _, config = shop
    digest = digest_for("shop-traffic")
    sandbox.push_image(config, digest, tag="v6.0.0")
    sandbox.wait_for_image(config, [r.name for r in config.regions], f"{config.apps[0].repository}@{digest}")
    sandbox.reconcile_traffic(config)
    return config


def test_cloudflare_holds_one_monitor_one_pool_per_region_and_one_geo_load_balancer(sandbox, deployed):
    config = deployed
    monitors, pools, lbs = _ours(sandbox.sandbox.cloudflare.state(), config)
    assert len(monitors) == 1
    assert monitors[0]["path"] == config.cloudflare.monitor.path
    assert monitors[0]["header"] == {"Host": [config.cloudflare.hostname]}
    assert sorted(pools) == sorted(r.cloudflare.pool for r in config.regions)
    for region in config.regions:
        [pool] = pools[region.cloudflare.pool]
        assert [o["address"] for o in pool["origins"]] == [region.static_ip.address]
        assert pool["monitor"] == monitors[0]["id"] and pool["enabled"] is True
        assert sorted(pool["check_regions"]) == sorted(region.cloudflare.geo_regions)
    [lb] = lbs
    ids = {r.name: pools[r.cloudflare.pool][0]["id"] for r in config.regions}
    assert lb["steering_policy"] == "geo"
    assert lb["fallback_pool"] == ids[config.fallback_region.name]
    assert lb["region_pools"]["WNAM"][0] == ids["us-west1"]
    assert lb["region_pools"]["WEU"][0] == ids["europe-west1"]
    assert lb["region_pools"]["SEAS"][0] == ids["asia-east1"]


def test_a_reconcile_with_nothing_to_change_makes_zero_writes(sandbox, shop, deployed):
    path, config = shop
    cloudflare = sandbox.sandbox.cloudflare
    function = f"{config.name}-reconcile-traffic"
    seen_before = len(sandbox.log_events(path, function))
    cloudflare.reset_requests()

    logged = sandbox.reconcile_traffic(config)

    counts = cloudflare.requests()["counts"]
    # Reconciles still queued from the deploy's results may have run too: each of them
    # must also have been read-only: three lists, and each serving pool's health report
    # (Cloudflare's verdict, compared with the clusters').
    runs = [e for e in sandbox.log_events(path, function)[seen_before:] if e.get("event") == "traffic_reconciled"]
    print(f"requests of {len(runs)} idle reconcile(s):", counts)
    assert logged["writes"] == 0 and cloudflare.writes() == 0
    assert all(run["writes"] == 0 for run in runs)
    account = f"/client/v4/accounts/{config.cloudflare.account_id}/load_balancers"
    _, pools, _ = _ours(cloudflare.state(), config)
    health_reads = {f"GET {account}/pools/{found[0]['id']}/health": len(runs) for found in pools.values()}
    assert len(health_reads) == len(config.regions)
    assert counts == {
        f"GET {account}/monitors": len(runs),
        f"GET {account}/pools": len(runs),
        f"GET /client/v4/zones/{config.cloudflare.zone_id}/load_balancers": len(runs),
        **health_reads,
    }


def test_a_region_whose_control_plane_stops_is_drained_then_restored(sandbox, deployed):
    config = deployed
    sandbox.stop_region(config, "asia-east1")
    try:
        logged = sandbox.reconcile_traffic(config)
        assert logged["health"]["asia-east1"].startswith("unreachable")
        assert _enabled(sandbox, config) == {"europe-west1": True, "us-west1": True, "asia-east1": False}
        assert logged["writes"] == 1  # one PATCH of the pool that changed
    finally:
        sandbox.start_region(config, "asia-east1")
    sandbox.reconcile_traffic(config)
    assert _enabled(sandbox, config) == {"europe-west1": True, "us-west1": True, "asia-east1": True}


def test_a_region_that_never_answers_is_given_up_on_at_the_deadline_and_drained(sandbox, deployed, faults):
    """Black-holed (connections accepted, nothing answered), the region is read in parallel
    with the others and counted unreachable at `region_deadline_seconds`."""
    config = deployed
    sandbox.set_cluster_mode(config, "asia-east1", "blackhole")
    try:
        logged = sandbox.reconcile_traffic(config)
        assert logged["health"]["asia-east1"] == "unreachable:no_answer"
        assert logged["health"]["europe-west1"].startswith("healthy")
        assert _enabled(sandbox, config) == {"europe-west1": True, "us-west1": True, "asia-east1": False}
    finally:
        sandbox.set_cluster_mode(config, "asia-east1", "normal")
    wait_until(
        lambda: sandbox.reconcile_traffic(config)["health"]["asia-east1"].startswith("healthy"), 90, "asia-east1 back"
    )
    assert _enabled(sandbox, config) == {"europe-west1": True, "us-west1": True, "asia-east1": True}


def test_with_every_region_but_one_down_that_pool_stays_enabled_and_never_none(sandbox, deployed):
    config = deployed
    for region in ("us-west1", "asia-east1"):
        sandbox.stop_region(config, region)
    try:
        sandbox.reconcile_traffic(config)
        assert _enabled(sandbox, config) == {"europe-west1": True, "us-west1": False, "asia-east1": False}
        sandbox.stop_region(config, "europe-west1")
        logged = sandbox.reconcile_traffic(config)
        # Everything is down: the pool that was serving keeps serving rather than none.
        assert all(state.startswith("unreachable") for state in logged["health"].values())
        assert _enabled(sandbox, config) == {"europe-west1": True, "us-west1": False, "asia-east1": False}
    finally:
        for region in ("europe-west1", "us-west1", "asia-east1"):
            sandbox.start_region(config, region)
    sandbox.reconcile_traffic(config)
    assert _enabled(sandbox, config) == {"europe-west1": True, "us-west1": True, "asia-east1": True}


def test_the_reconcile_converges_through_429s_and_5xx_without_duplicates(sandbox, deployed):
    config = deployed
    cloudflare = sandbox.sandbox.cloudflare
    cloudflare.reset()  # Cloudflare starts empty: everything must be created again
    cloudflare.set_faults(
        [
            {"status": 429, "count": 2, "method": "POST", "retry_after": 1},
            {"status": 503, "count": 2, "method": "GET"},
            {"status": 500, "count": 1, "method": "POST", "path_contains": "/pools"},
            {"status": 502, "count": 1, "method": "POST", "path_contains": "/zones/"},
        ]
    )

    sandbox.reconcile_traffic(config, timeout=120)

    log = cloudflare.requests()["log"]
    served = [(i, e) for i, e in enumerate(log) if e["fault"]]
    # Every injected fault was met, as many times as it was set up for...
    assert sorted((e["method"], e["status"]) for _, e in served) == [
        ("GET", 503),
        ("GET", 503),
        ("POST", 429),
        ("POST", 429),
        ("POST", 500),
        ("POST", 502),
    ]
    assert {e["path"].rsplit("/", 1)[-1] for _, e in served if e["status"] in (500, 502)} == {"pools", "load_balancers"}
    assert "/zones/" in next(e["path"] for _, e in served if e["status"] == 502)
    assert cloudflare.faults() == [], "a fault rule was never used up"
    # ...and recovered from: the same request succeeded afterwards.
    for index, fault in served:
        assert any(
            (later["method"], later["path"]) == (fault["method"], fault["path"]) and later["status"] == 200
            for later in log[index + 1 :]
        ), f"never recovered from {fault['status']} on {fault['method']} {fault['path']}"
    monitors, pools, lbs = _ours(cloudflare.state(), config)
    assert len(monitors) == 1 and len(lbs) == 1
    assert {name: len(found) for name, found in pools.items()} == {r.cloudflare.pool: 1 for r in config.regions}
    cloudflare.reset_requests()
    assert sandbox.reconcile_traffic(config)["writes"] == 0


def test_the_api_token_never_appears_in_any_log(sandbox, deployed):
    token = sandbox.sandbox.cloudflare_token
    # Every log the functions and the sandbox wrote (the stand-ins' too: nothing passes
    # the token on a command line).
    logs = sorted(sandbox.sandbox.state_dir.rglob("*.log"))
    assert any("reconcile-traffic" in p.name for p in logs)
    for path in logs:
        assert token not in path.read_text(errors="replace"), f"the Cloudflare token leaked into {path.name}"


def test_a_reconcile_that_fails_on_auth_logs_no_trace_of_the_token(sandbox, deployed, caplog):
    """In-process, with every log record captured: a token Cloudflare refuses is not echoed."""
    from shared.adapters.cloudflare_lb import CloudflareLB
    from shared.errors import CloudflareUnavailable
    from shared.flows.traffic import reconcile_traffic
    from shared.logs import get_logger

    config = deployed
    wrong = "wrong-token-" + "x" * 24
    cloudflare = CloudflareLB(
        lambda: wrong,
        account_id=config.cloudflare.account_id,
        zone_id=config.cloudflare.zone_id,
        base_url=sandbox.sandbox.urls["cloudflare"] + "/client/v4",
    )
    connector = sandbox.connector(config)
    caplog.set_level("DEBUG")
    with pytest.raises(CloudflareUnavailable) as failure:
        reconcile_traffic(
            config, connect=lambda r: connector.connect(r.cluster), cloudflare=cloudflare, log=get_logger("test")
        )
    assert "refused the API token" in str(failure.value)
    assert wrong not in str(failure.value) and wrong not in repr(failure.value)
    assert wrong not in caplog.text
    for token in (wrong, sandbox.sandbox.cloudflare_token):
        assert all(token not in str(r.__dict__) for r in caplog.records)


def test_cloudflare_and_cluster_health_disagreeing_is_reported(sandbox, shop, deployed):
    path, config = shop
    cloudflare = sandbox.sandbox.cloudflare
    cloudflare.set_pool_health("shop-us-west1", False)  # Cloudflare's probes fail there
    try:
        logged = sandbox.reconcile_traffic(config)
    finally:
        cloudflare.set_pool_health("shop-us-west1", True)
    assert logged["disagreements"] == [
        {"region": "us-west1", "cluster": "healthy:serving", "cloudflare_healthy": False}
    ]
    warned = [
        e
        for e in sandbox.log_events(path, f"{config.name}-reconcile-traffic")
        if e.get("event") == "health_disagreement" and e.get("event_id") == logged["event_id"]
    ]
    assert warned and warned[0]["severity"] == "WARNING"
    # The cluster's view decides: the region keeps serving.
    assert _enabled(sandbox, config)["us-west1"] is True


def test_a_burst_of_results_is_coalesced_into_a_few_reconciles(sandbox, shop, deployed):
    """A reconcile that started after a result was published covers it: ten results at once
    cost a few full reconciles, and every one of them is handled."""
    path, config = shop
    function = f"{config.name}-reconcile-traffic"
    sandbox.reconcile_traffic(config)  # nothing queued ahead: every result below comes after it
    nudge = {
        "version": 1, "release_id": "traffic-burst", "app": "shop", "region": "us-west1", "kind": "deploy",
        "status": "progressing", "trigger": {"type": "manual", "event_id": "burst"},
        "issued_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:00Z",
    }  # fmt: skip
    ids = {sandbox.publish(config, config.topics.results, nudge) for _ in range(10)}

    def handled() -> list[dict]:
        lines = [e for e in sandbox.log_events(path, function) if e.get("event_id") in ids]
        done = [e for e in lines if e.get("event") in ("traffic_reconciled", "traffic_reconcile_coalesced")]
        return done if {e["event_id"] for e in done} == ids else []

    done = wait_until(handled, 60, "every result of the burst handled")
    full = [e for e in done if e["event"] == "traffic_reconciled"]
    print(f"10 results: {len(full)} full reconcile(s), {len(done) - len(full)} coalesced")
    assert 1 <= len(full) < 10


def test_a_drain_is_the_first_write_of_a_reconcile(sandbox, deployed):
    """A region going bad stops taking traffic before anything else is written: here the
    monitor was also hand-edited, and its repair comes after the drain."""
    config = deployed
    cloudflare = sandbox.sandbox.cloudflare
    [monitor], pools, _ = _ours(cloudflare.state(), config)
    # (Cloudflare's schema asks every monitor write for its expected_codes.)
    hand_edit = {"path": "/hand-edited", "expected_codes": monitor["expected_codes"]}
    sandbox.edit_cloudflare(config, f"monitors/{monitor['id']}", hand_edit)
    sandbox.stop_region(config, "asia-east1")
    try:
        cloudflare.reset_requests()
        logged = sandbox.reconcile_traffic(config)
        writes = [(e["method"], e["path"].rsplit("/load_balancers/", 1)[-1]) for e in cloudflare.requests()["log"]
                  if e["method"] != "GET"]  # fmt: skip
        asia = pools["shop-asia-east1"][0]["id"]
        assert writes == [("PATCH", f"pools/{asia}"), ("PATCH", f"monitors/{monitor['id']}")], logged["changes"]
        assert _enabled(sandbox, config)["asia-east1"] is False
    finally:
        sandbox.start_region(config, "asia-east1")
    wait_until(
        lambda: sandbox.reconcile_traffic(config)["health"]["asia-east1"].startswith("healthy"), 90, "asia-east1 back"
    )
    assert _enabled(sandbox, config)["asia-east1"] is True


def test_results_queued_behind_a_reconcile_are_covered_by_another_instances_reconcile(sandbox, shop, deployed, faults):
    """Each full reconcile's start is recorded in the fallback region, so whichever
    instance handles an event, a reconcile that started after it was published covers it.
    The live instance is stuck in a reconcile (one of its reads held at the fault proxy)
    with results queued behind it; a second instance (a fresh process of the function)
    reconciles; the live instance is killed. Its replacement, with nothing in memory,
    reconciles none of the queued results: the other instance's reconcile covered them."""
    path, config = shop
    function = f"{config.name}-reconcile-traffic"
    nudge = {
        "version": 1, "release_id": "traffic-queued", "app": "shop", "region": "us-west1", "kind": "deploy",
        "status": "progressing", "trigger": {"type": "manual", "event_id": "queued"},
        "issued_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:00Z",
    }  # fmt: skip
    deployment = "/apis/apps/v1/namespaces/shop/deployments/shop"
    sandbox.add_fault(config, "us-west1", "hold", method="GET", path=deployment, times=1)
    stuck = sandbox.publish(config, config.topics.results, nudge)
    held = sandbox.wait_for_held(config, "us-west1", "GET", deployment)
    queued = {stuck} | {sandbox.publish(config, config.topics.results, nudge) for _ in range(4)}
    other = sandbox.fresh_instance(config, function, config.topics.results, nudge)
    [reconciled] = [e for e in _json_lines(other.stdout) if e.get("event") == "traffic_reconciled"]
    sandbox.kill_function(config, function)
    if any(h["id"] == held["id"] for h in sandbox.held_requests()):  # gone with its client, usually
        sandbox.release(held["id"], drop=True)
    mark = sandbox.get(config, config.fallback_region.name, "configmap", "geodeploy-traffic-shop", "shop")
    started = mark["data"]["full-reconcile-started"]

    def handled() -> list[dict]:
        done = [e for e in sandbox.log_events(path, function) if e.get("event_id") in queued
                and e.get("event") in ("traffic_reconciled", "traffic_reconcile_coalesced")]  # fmt: skip
        return done if {e["event_id"] for e in done} == queued else []

    done = wait_until(handled, 90, "every queued result handled by the new instance")
    assert [e["event"] for e in done] == ["traffic_reconcile_coalesced"] * len(queued)
    # Covered by the other instance's reconcile (or one later still), never by nothing.
    assert all(e["covered_by_reconcile_started"] >= started for e in done), (started, done)
    assert reconciled["health"]["us-west1"].startswith("healthy")


def _json_lines(text: str) -> list[dict]:
    import json

    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
