"""The Cloudflare stand-in checks a token's permission groups and resources as Cloudflare does.

Every API call goes through the real SDK (cloudflare 4.3.1) over HTTP; only the stand-in's
control API is called directly. A token without the group or the resource a route needs
gets what Cloudflare answers: HTTP 403 with error 10000 "Authentication error".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudflare
import pytest
from cloudflare import Cloudflare

from sandbox.standins._http import StandinControlError
from sandbox.standins.cloudflare import CloudflareStandin, CloudflareStandinControl, Policy
from tests.sandbox.cloudflare_contract import checked_standin
from tests.sandbox.test_standins import _start_process, _stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_A = "0123456789abcdef0123456789abcdef"
ACCOUNT_B = "abcdef0123456789abcdef0123456789"
ZONE = "fedcba9876543210fedcba9876543210"
ZONE_2 = "76543210fedcba9876543210fedcba98"
POOLS_WRITE = "Load Balancing: Monitors and Pools Write"
POOLS_READ = "Load Balancing: Monitors and Pools Read"
LBS_WRITE = "Load Balancers Write"
LBS_READ = "Load Balancers Read"
ON_A = f"com.cloudflare.api.account.{ACCOUNT_A}"
ON_ZONE = f"com.cloudflare.api.account.zone.{ZONE}"

ADMIN = "admin-token"  # `token=`: all four groups everywhere, sets objects up
POOLS_ON_A = "pools-write-on-a"
READER = "read-only"
WRITER = "write-only"
DEPLOYER = "pools-and-lbs-write"
TOKENS: dict[str, list[Policy]] = {
    POOLS_ON_A: [Policy((POOLS_WRITE,), (ON_A,))],
    READER: [Policy((POOLS_READ,), (ON_A,)), Policy((LBS_READ,), (ON_ZONE,))],
    WRITER: [Policy((POOLS_WRITE, LBS_WRITE), (ON_A, ON_ZONE))],
    DEPLOYER: [Policy((POOLS_WRITE,), (ON_A,)), Policy((LBS_WRITE,), (ON_ZONE,))],
}
CLOUDFLARE_ENV = (
    "CLOUDFLARE_EMAIL",
    "CLOUDFLARE_API_KEY",
    "CLOUDFLARE_API_TOKEN",
    "CLOUDFLARE_BASE_URL",
    "CLOUDFLARE_API_USER_SERVICE_KEY",
)


@pytest.fixture(autouse=True)
def _no_cloudflare_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK silently prefers X-Auth-Email/Key from the environment over api_token.
    for name in CLOUDFLARE_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def standin() -> Iterator[CloudflareStandin]:
    with checked_standin(token=ADMIN, tokens=TOKENS) as server:  # refusals for want of a grant too
        yield server


@pytest.fixture
def control(standin: CloudflareStandin) -> CloudflareStandinControl:
    return CloudflareStandinControl(standin.url)


@pytest.fixture
def client(standin: CloudflareStandin) -> Iterator[Callable[[str], Cloudflare]]:
    opened: list[Cloudflare] = []

    def make(token: str) -> Cloudflare:
        opened.append(Cloudflare(api_token=token, base_url=standin.api_base_url, max_retries=0, timeout=5))
        return opened[-1]

    try:
        yield make
    finally:
        for c in opened:
            c.close()


def _create_pool(cf: Cloudflare, account: str = ACCOUNT_A, name: str = "app-eu") -> Any:
    origins: Any = [{"name": f"{name}-1", "address": "203.0.113.10"}]
    return cf.load_balancers.pools.create(account_id=account, name=name, origins=origins)


def _create_lb(cf: Cloudflare, pool_id: str, zone: str = ZONE) -> Any:
    return cf.load_balancers.create(
        zone_id=zone, name="app.example.com", default_pools=[pool_id], fallback_pool=pool_id
    )


def _assert_denied(call: Callable[[], object]) -> None:
    with pytest.raises(cloudflare.PermissionDeniedError) as caught:
        call()
    assert caught.value.status_code == 403
    assert caught.value.body == {
        "success": False,
        "errors": [{"code": 10000, "message": "Authentication error"}],
        "messages": [],
        "result": None,
    }


# ---- scope: the account or zone of the route ----


def test_pool_write_on_one_account_reaches_only_that_account(
    client: Callable[[str], Cloudflare], standin: CloudflareStandin
) -> None:
    cf = client(POOLS_ON_A)

    pool = _create_pool(cf)
    monitor = cf.load_balancers.monitors.create(account_id=ACCOUNT_A, path="/_ready", expected_codes="200")

    assert [p.id for p in cf.load_balancers.pools.list(account_id=ACCOUNT_A)] == [pool.id]
    assert [m.id for m in cf.load_balancers.monitors.list(account_id=ACCOUNT_A)] == [monitor.id]
    _assert_denied(lambda: cf.load_balancers.pools.list(account_id=ACCOUNT_B))
    _assert_denied(lambda: _create_pool(cf, account=ACCOUNT_B))
    _assert_denied(lambda: cf.load_balancers.monitors.list(account_id=ACCOUNT_B))
    # The zone's load balancers need a zone-level group, which this token lacks.
    _assert_denied(lambda: cf.load_balancers.list(zone_id=ZONE))
    _assert_denied(lambda: _create_lb(cf, pool.id))
    state = standin.state()
    assert [p["account_id"] for p in state["pools"]] == [ACCOUNT_A]
    assert state["load_balancers"] == []


def test_load_balancer_write_on_one_zone_reaches_only_that_zone(client: Callable[[str], Cloudflare]) -> None:
    cf = client(DEPLOYER)
    pool = _create_pool(cf)

    lb = _create_lb(cf, pool.id)

    assert [x.id for x in cf.load_balancers.list(zone_id=ZONE)] == [lb.id]
    _assert_denied(lambda: cf.load_balancers.list(zone_id=ZONE_2))
    _assert_denied(lambda: _create_lb(cf, pool.id, zone=ZONE_2))


def test_a_zone_resource_does_not_grant_an_account_group_and_vice_versa(
    client: Callable[[str], Cloudflare], control: CloudflareStandinControl
) -> None:
    # Each group paired only with the other level's resource: nothing is reachable.
    control.set_token_policies(
        DEPLOYER, [{"permission_groups": [POOLS_WRITE], "resources": [ON_ZONE]}, Policy((LBS_WRITE,), (ON_A,))]
    )
    cf = client(DEPLOYER)

    _assert_denied(lambda: cf.load_balancers.pools.list(account_id=ACCOUNT_A))
    _assert_denied(lambda: cf.load_balancers.list(zone_id=ZONE))


# ---- Read and Write ----


def test_read_token_can_get_but_not_change(client: Callable[[str], Cloudflare]) -> None:
    admin, cf = client(ADMIN), client(READER)
    pool = _create_pool(admin)
    lb = _create_lb(admin, pool.id)

    assert [p.id for p in cf.load_balancers.pools.list(account_id=ACCOUNT_A)] == [pool.id]
    assert cf.load_balancers.pools.get(pool.id, account_id=ACCOUNT_A).name == "app-eu"
    assert [x.id for x in cf.load_balancers.list(zone_id=ZONE)] == [lb.id]
    assert cf.load_balancers.get(str(lb.id), zone_id=ZONE).name == "app.example.com"

    _assert_denied(lambda: _create_pool(cf, name="app-us"))
    _assert_denied(lambda: cf.load_balancers.pools.edit(pool.id, account_id=ACCOUNT_A, enabled=False))
    _assert_denied(lambda: cf.load_balancers.pools.delete(pool.id, account_id=ACCOUNT_A))
    _assert_denied(lambda: _create_lb(cf, pool.id))
    _assert_denied(lambda: cf.load_balancers.edit(str(lb.id), zone_id=ZONE, enabled=False))
    assert admin.load_balancers.pools.get(pool.id, account_id=ACCOUNT_A).enabled is True


def test_write_implies_read(client: Callable[[str], Cloudflare], control: CloudflareStandinControl) -> None:
    cf = client(WRITER)  # Write groups only, no Read group
    pool = _create_pool(cf)
    lb = _create_lb(cf, pool.id)
    monitor = cf.load_balancers.monitors.create(account_id=ACCOUNT_A, path="/_ready", expected_codes="200")
    cf.load_balancers.pools.edit(pool.id, account_id=ACCOUNT_A, monitor=monitor.id)

    assert cf.load_balancers.pools.get(pool.id, account_id=ACCOUNT_A).monitor == monitor.id
    assert [p.id for p in cf.load_balancers.pools.list(account_id=ACCOUNT_A)] == [pool.id]
    assert cf.load_balancers.monitors.get(monitor.id, account_id=ACCOUNT_A).path == "/_ready"
    assert cf.load_balancers.get(str(lb.id), zone_id=ZONE).id == lb.id
    health = cf.load_balancers.pools.health.with_raw_response.get(pool.id, account_id=ACCOUNT_A)
    assert health.http_response.json()["result"]["pool_id"] == pool.id


# ---- unknown tokens and the routes ----


def test_unknown_token_is_denied(client: Callable[[str], Cloudflare], standin: CloudflareStandin) -> None:
    cf = client("not-a-token")

    _assert_denied(lambda: cf.load_balancers.pools.list(account_id=ACCOUNT_A))
    _assert_denied(lambda: cf.load_balancers.list(zone_id=ZONE))
    # A prefix of a real token, or one not sent as a bearer token, is no better.
    _assert_denied(lambda: client(ADMIN[:-1]).load_balancers.pools.list(account_id=ACCOUNT_A))
    assert [e["status"] for e in standin.log.snapshot()["log"]] == [403, 403, 403]


def test_a_known_token_still_gets_404_for_an_unknown_route(client: Callable[[str], Cloudflare]) -> None:
    with pytest.raises(cloudflare.NotFoundError) as caught:
        client(POOLS_ON_A).get(f"/accounts/{ACCOUNT_A}/load_balancers/nothing", cast_to=object)
    assert [e.code for e in caught.value.errors] == [7003, 7000]


# ---- runtime changes through the control API ----


def test_removing_a_group_at_runtime_denies_the_next_call(
    client: Callable[[str], Cloudflare], control: CloudflareStandinControl
) -> None:
    cf = client(DEPLOYER)
    pool = _create_pool(cf)
    lb = _create_lb(cf, pool.id)

    answer = control.set_token_policies(DEPLOYER, [Policy((POOLS_WRITE,), (ON_A,))])  # LBs Write taken away

    assert answer == [{"permission_groups": [POOLS_WRITE], "resources": [ON_A]}]
    _assert_denied(lambda: cf.load_balancers.edit(str(lb.id), zone_id=ZONE, enabled=False))
    _assert_denied(lambda: cf.load_balancers.list(zone_id=ZONE))
    assert cf.load_balancers.pools.edit(pool.id, account_id=ACCOUNT_A, enabled=False).enabled is False

    control.set_token_policies(DEPLOYER, [])  # known, but allowed nothing
    _assert_denied(lambda: cf.load_balancers.pools.list(account_id=ACCOUNT_A))

    control.reset()  # back to the tokens the stand-in started with
    assert [x.id for x in cf.load_balancers.list(zone_id=ZONE)] == []


def test_control_route_adds_a_token_and_refuses_bad_policies(
    client: Callable[[str], Cloudflare], control: CloudflareStandinControl
) -> None:
    control.set_token_policies("new-token", [{"permission_groups": [LBS_READ], "resources": [ON_ZONE]}])
    assert client("new-token").load_balancers.list(zone_id=ZONE) is not None

    bad: list[Any] = [
        [{"permission_groups": ["Load Balancers Edit"], "resources": [ON_ZONE]}],  # not a Cloudflare group
        [{"permission_groups": [LBS_READ], "resources": [f"com.cloudflare.api.zone.{ZONE}"]}],
        [{"permission_groups": [LBS_READ], "resources": [ON_ZONE], "effect": "deny"}],
        [{"permission_groups": [], "resources": [ON_ZONE]}],
        {"permission_groups": [LBS_READ], "resources": [ON_ZONE]},  # not a list
    ]
    for policies in bad:
        with pytest.raises(StandinControlError) as caught:
            control.set_token_policies("new-token", policies)
        assert caught.value.status == 400
    assert client("new-token").load_balancers.list(zone_id=ZONE) is not None  # unchanged


def test_constructor_refuses_bad_token_configuration() -> None:
    with pytest.raises(ValueError, match="unknown permission groups"):
        CloudflareStandin(tokens={"t": [{"permission_groups": ["DNS Write"], "resources": [ON_ZONE]}]})
    with pytest.raises(ValueError, match="both"):
        CloudflareStandin(token="t", tokens={"t": []})


def test_wildcard_resources_cover_every_account_and_zone() -> None:
    # What `token=` / --token means; spelled out here as a policy.
    everywhere = ("com.cloudflare.api.account.*", "com.cloudflare.api.account.zone.*")
    standin = CloudflareStandin(tokens={"t": [Policy((POOLS_READ, LBS_READ), everywhere)]})
    standin.start()
    try:
        cf = Cloudflare(api_token="t", base_url=standin.api_base_url, max_retries=0, timeout=5)
        assert list(cf.load_balancers.pools.list(account_id=ACCOUNT_B)) == []
        assert list(cf.load_balancers.list(zone_id=ZONE_2)) == []
        _assert_denied(lambda: _create_pool(cf, account=ACCOUNT_B))
        cf.close()
    finally:
        standin.stop()


# ---- process mode: --token-policies-file ----


def test_token_policies_file_configures_several_tokens(tmp_path: Path) -> None:
    policies = {token: [p.to_json() for p in grants] for token, grants in TOKENS.items()}
    policies_file = tmp_path / "token-policies.json"
    policies_file.write_text(json.dumps(policies))
    token_file = tmp_path / "token"
    token_file.write_text(ADMIN + "\n")
    proc, url = _start_process(
        "sandbox.standins.cloudflare", "--token-policies-file", str(policies_file), "--token-file", str(token_file)
    )
    try:
        base_url = f"{url}/client/v4"
        admin, pools_only, reader = (
            Cloudflare(api_token=t, base_url=base_url, max_retries=0, timeout=5) for t in (ADMIN, POOLS_ON_A, READER)
        )
        pool = _create_pool(pools_only)
        _assert_denied(lambda: pools_only.load_balancers.list(zone_id=ZONE))
        _assert_denied(lambda: _create_pool(reader, name="app-us"))
        assert [p.id for p in reader.load_balancers.pools.list(account_id=ACCOUNT_A)] == [pool.id]
        assert _create_lb(admin, pool.id).name == "app.example.com"  # --token-file: full access
        default = Cloudflare(api_token="sandbox-cloudflare-token", base_url=base_url, max_retries=0, timeout=5)
        _assert_denied(lambda: _create_pool(default))  # given tokens replace the default one
        for c in (admin, pools_only, reader, default):
            c.close()
    finally:
        _stop_process(proc)
    assert proc.returncode == 0
