"""The Cloudflare stand-in is held to Cloudflare's published OpenAPI schema, and the check
can fail: a request or an answer that breaks the schema is recorded and named.

No sandbox: each test starts its own stand-in (or calls the contract directly). The
sandbox suite itself runs its stand-in with the check on (tests/conftest.py).
"""

from __future__ import annotations

import importlib.util
import json
import re
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.error import HTTPError

import pytest

from sandbox.standins.cloudflare import CloudflareStandin, CloudflareStandinControl
from sandbox.standins.openapi_contract import SCHEMA_PATH, Contract
from shared.adapters.cloudflare_lb import CloudflareLB
from shared.edge_health import EdgeHealth
from tests.conftest import REPO
from tests.sandbox.cloudflare_contract import assert_within_contract

TOKEN = "contract-token"
ACCOUNT = "0123456789abcdef0123456789abcdef"
ZONE = "fedcba9876543210fedcba9876543210"
POOLS = f"/accounts/{ACCOUNT}/load_balancers/pools"
OK: dict[str, Any] = {"success": True, "errors": [], "messages": []}


@pytest.fixture
def standin() -> Iterator[CloudflareStandin]:
    server = CloudflareStandin(token=TOKEN, plan="non-enterprise", contract=Contract.load())
    server.start()
    try:
        yield server
    finally:
        server.stop()  # each test judges the violations itself


def _send(standin: CloudflareStandin, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        standin.api_base_url + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except HTTPError as refused:
        return refused.code, json.loads(refused.read())


def _adapter(standin: CloudflareStandin) -> CloudflareLB:
    return CloudflareLB(
        lambda: TOKEN, account_id=ACCOUNT, zone_id=ZONE, base_url=standin.api_base_url, sleep=lambda _: None
    )


def test_a_monitor_sent_without_expected_codes_is_refused_and_recorded(standin: CloudflareStandin) -> None:
    status, answer = _send(standin, "POST", f"/accounts/{ACCOUNT}/load_balancers/monitors", {"path": "/_ready"})

    assert status == 400 and answer["errors"][0]["code"] == 1002
    [violation] = CloudflareStandinControl(standin.url).contract_violations()
    assert (violation["part"], violation["where"], violation["status"]) == ("request", "$", 400)
    assert "'expected_codes' is a required property" in violation["message"]
    with pytest.raises(AssertionError, match="expected_codes"):
        assert_within_contract(standin)  # what fails a sandbox test that sent it


def test_a_pool_answer_with_health_of_its_own_is_a_violation() -> None:
    pool = {"id": "a" * 32, "name": "shop-eu", "origins": [{"name": "eu", "address": "192.0.2.1", "healthy": True}]}
    found = Contract.load().check(
        "GET", f"{POOLS}/{'a' * 32}", {}, None, 200, {**OK, "result": {**pool, "healthy": True}}
    )

    assert sorted(v.where for v in found) == ["$.result.healthy", "$.result.origins[0].healthy"]
    assert all(v.part == "response" and "does not declare" in v.message for v in found)


def test_an_error_code_under_1000_is_a_violation() -> None:
    throttled = {"success": False, "errors": [{"code": 971, "message": "slow down"}], "messages": [], "result": None}
    [found] = Contract.load().check("GET", POOLS, {}, None, 429, throttled, injected=True)

    assert found.where == "$.errors[0].code" and "minimum of 1000" in found.message


def test_an_undocumented_operation_that_succeeds_is_a_violation() -> None:
    [found] = Contract.load().check("GET", f"/accounts/{ACCOUNT}/load_balancers/pools/x/secrets", {}, None, 200, OK)

    assert found.message == "the schema documents no such operation"


def test_geodeploys_calls_and_the_standins_answers_keep_the_schema(standin: CloudflareStandin) -> None:
    """Every adapter verb once, a rate limit and a success:false fault included."""
    cf = _adapter(standin)
    monitor = cf.create_monitor({"type": "http", "path": "/_ready", "expected_codes": "200"}, lambda: None)
    cf.edit_monitor(monitor["id"], {"interval": 30, "expected_codes": "200"})
    origins = [{"name": "eu", "address": "192.0.2.1", "enabled": True, "weight": 1}]
    pool = cf.create_pool(
        {"name": "shop-eu", "origins": origins, "monitor": monitor["id"], "check_regions": ["WEU"]}, lambda: None
    )
    lb = cf.create_load_balancer(
        {"name": "shop.example.com", "default_pools": [pool["id"]], "fallback_pool": pool["id"], "steering_policy": ""},
        lambda: None,
    )
    cf.edit_pool(pool["id"], {"enabled": False})
    cf.edit_load_balancer(lb["id"], {"steering_policy": "geo"})
    standin.set_faults([{"status": 429, "retry_after": 0}, {"success_false": True}, {"status": 503}])
    cf.list_pools()  # met the three faults, then answered
    assert len(cf.list_monitors()) == 1 and len(cf.list_load_balancers()) == 1
    assert cf.edge_health(pool["id"]) is EdgeHealth.HEALTHY

    assert_within_contract(standin)


def test_the_health_report_has_the_shape_of_the_documented_example(standin: CloudflareStandin) -> None:
    """The schema gives the report's result as a free object with an example; the stand-in
    answers the example's shape, key for key."""
    spec = json.loads(SCHEMA_PATH.read_text())
    details = spec["components"]["schemas"]["load-balancing_health_details"]["allOf"][1]
    example = details["properties"]["result"]["example"]
    cf = _adapter(standin)
    monitor = cf.create_monitor({"type": "http", "expected_codes": "200"}, lambda: None)
    origins = [{"name": "eu", "address": "192.0.2.1"}]
    pool = cf.create_pool(
        {"name": "shop-eu", "origins": origins, "monitor": monitor["id"], "check_regions": ["WEU"]}, lambda: None
    )

    assert _shape(cf.read_pool_health(pool["id"])) == _shape(example)


def _shape(value: Any) -> Any:
    """Keys and types, with the names of data centres and origin addresses left out."""
    if isinstance(value, dict):
        named = all(re.search(r"[ :.,]", key) for key in value)  # "Amsterdam, NL", "2001:DB8::5"
        if named and value:
            return {"*": _shape(next(iter(value.values())))}
        return {key: _shape(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def test_the_kept_schema_is_a_closed_extract_with_its_provenance() -> None:
    """Extracting from the kept extract gives it back (every reference it needs is in it),
    and its provenance names the source commit."""
    script = REPO / "scripts" / "extract_cloudflare_lb_schema.py"
    spec_ = importlib.util.spec_from_file_location("extract_cloudflare_lb_schema", script)
    assert spec_ is not None and spec_.loader is not None
    extractor = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(extractor)
    kept = json.loads(SCHEMA_PATH.read_text())

    again = extractor.extract(kept)

    assert (again["paths"], again["components"]) == (kept["paths"], kept["components"])
    provenance = json.loads(SCHEMA_PATH.with_name("cloudflare-load-balancing.openapi.provenance.json").read_text())
    assert provenance["repository"] == "cloudflare/api-schemas" and provenance["file"] == "openapi.json"
    assert re.fullmatch(r"[0-9a-f]{40}", provenance["commit"])
    assert provenance["paths"] == list(kept["paths"])
