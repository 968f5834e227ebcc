"""The SaaS stand-ins answer the production client libraries as the real APIs do.

Every API call goes through the real SDKs (cloudflare 4.3.1, google-cloud-container,
google-cloud-secret-manager, google-auth); only the stand-ins' control API is called
directly.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import cloudflare
import google.auth
import google_crc32c
import pytest
from cloudflare import Cloudflare
from cloudflare.types.load_balancers import OriginParam
from google.api_core import exceptions as gexc
from google.cloud import container_v1, secretmanager

from sandbox.standins._http import StandinControlError
from sandbox.standins.cloudflare import CloudflareStandin, CloudflareStandinControl
from sandbox.standins.google_apis import (
    GoogleApisStandin,
    GoogleStandinControl,
    write_authorized_user_credentials,
)
from tests.sandbox.cloudflare_contract import checked_standin

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-cloudflare-token"
ACCOUNT = "0123456789abcdef0123456789abcdef"
ZONE = "fedcba9876543210fedcba9876543210"
ACCESS_TOKEN = "test-google-access-token"
CLUSTER = "projects/geo-p/locations/europe-west1/clusters/app-eu"
SECRET = "projects/geo-p/secrets/cloudflare-api-token"
CA_PEM = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBszCCAVmgAwIBAgIUZ2VvZGVwbG95LXNhbmRib3gtY2EwCgYIKoZIzj0EAwIw\n"
    "-----END CERTIFICATE-----\n"
)
HEX32 = re.compile(r"^[0-9a-f]{32}$")
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


# ---- Cloudflare fixtures and helpers ----


@pytest.fixture
def cf_standin() -> Iterator[CloudflareStandin]:
    # Some tests send bad requests on purpose; every answer must still be Cloudflare's.
    with checked_standin(token=TOKEN, refused_requests_allowed=True) as standin:
        yield standin


@pytest.fixture
def cf(cf_standin: CloudflareStandin) -> Iterator[Cloudflare]:
    client = Cloudflare(api_token=TOKEN, base_url=cf_standin.api_base_url, max_retries=0, timeout=5)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def cf_control(cf_standin: CloudflareStandin) -> CloudflareStandinControl:
    return CloudflareStandinControl(cf_standin.url)


def _origins(prefix: str, *addresses: str) -> list[OriginParam]:
    return [{"name": f"{prefix}-{i}", "address": address} for i, address in enumerate(addresses, 1)]


def _monitor(cf: Cloudflare) -> Any:
    return cf.load_balancers.monitors.create(
        account_id=ACCOUNT,
        path="/_ready",
        expected_codes="200",
        load_balancer_monitor_timeout=4,
    )


def _pool(cf: Cloudflare, name: str, monitor_id: str, region: str) -> Any:
    return cf.load_balancers.pools.create(
        account_id=ACCOUNT,
        name=name,
        origins=_origins(name, "203.0.113.10", "203.0.113.11"),
        monitor=monitor_id,
        extra_body={"check_regions": [region]},  # create() has no such parameter
    )


def _pools_path(suffix: str = "") -> str:
    return f"/client/v4/accounts/{ACCOUNT}/load_balancers/pools{suffix}"


# ---- Cloudflare: objects, defaults, PUT vs PATCH ----


def test_create_fills_api_defaults_and_read_only_fields(cf: Cloudflare) -> None:
    monitor = _monitor(cf)
    pool = _pool(cf, "app-eu", monitor.id, "WEU")

    assert HEX32.match(monitor.id) and HEX32.match(pool.id)
    # load_balancer_monitor_timeout= is sent as JSON "timeout".
    assert monitor.timeout == 4
    assert (monitor.type, monitor.method, monitor.interval, monitor.retries) == (
        "http",
        "GET",
        60,
        2,
    )
    datetime.fromisoformat(monitor.created_on)  # RFC3339
    assert pool.check_regions == ["WEU"]
    assert pool.monitor == monitor.id
    assert (pool.enabled, pool.minimum_origins, pool.origin_steering.policy) == (
        True,
        1,
        "random",
    )
    assert [(o.enabled, o.weight) for o in pool.origins] == [(True, 1), (True, 1)]
    # Nothing the schema (and so the SDK model) does not declare: no health on pools.
    assert pool.model_extra == {}
    assert all(o.model_extra == {} for o in pool.origins)


def test_health_set_through_the_control_api_is_reported_by_the_health_endpoint_only(
    cf: Cloudflare, cf_control: CloudflareStandinControl
) -> None:
    monitor = _monitor(cf)
    eu = _pool(cf, "app-eu", monitor.id, "WEU")
    us = _pool(cf, "app-us", monitor.id, "WNAM")

    assert cf_control.set_pool_health("app-eu", False) == 1
    pools = list(cf.load_balancers.pools.list(account_id=ACCOUNT))

    assert all(p.model_extra == {} for p in pools)
    health = {
        pool.id: cf.load_balancers.pools.health.with_raw_response.get(pool.id, account_id=ACCOUNT).http_response.json()
        for pool in (eu, us)
    }
    assert health[eu.id]["result"]["pop_health"]["Amsterdam, NL"]["healthy"] is False
    assert health[us.id]["result"]["pop_health"]["Los Angeles, CA, US"]["healthy"] is True
    no_monitor = cf.load_balancers.pools.list(account_id=ACCOUNT, monitor="0" * 32)
    assert list(no_monitor) == []
    by_monitor = cf.load_balancers.pools.list(account_id=ACCOUNT, monitor=monitor.id)
    assert len(list(by_monitor)) == 2


def test_edit_changes_only_the_fields_sent(cf: Cloudflare) -> None:
    pool = _pool(cf, "app-eu", _monitor(cf).id, "WEU")

    edited = cf.load_balancers.pools.edit(pool.id, account_id=ACCOUNT, enabled=False)

    assert edited.enabled is False
    ignore = {"enabled", "modified_on"}
    assert edited.model_dump(exclude=ignore) == pool.model_dump(exclude=ignore)


def test_update_replaces_the_whole_pool(cf: Cloudflare) -> None:
    monitor = _monitor(cf)
    pool = _pool(cf, "app-eu", monitor.id, "WEU")
    cf.load_balancers.pools.edit(pool.id, account_id=ACCOUNT, description="eu pool")

    updated = cf.load_balancers.pools.update(
        pool.id,
        account_id=ACCOUNT,
        name="app-eu",
        origins=_origins("app-eu", "203.0.113.10"),
        monitor=monitor.id,
    )

    assert updated.check_regions is None  # not sent: back to "all data centres"
    assert updated.description == ""
    assert len(updated.origins or []) == 1
    assert updated.created_on == pool.created_on


def test_non_enterprise_plan_rejects_probing_from_every_data_centre() -> None:
    with checked_standin(token=TOKEN, plan="non-enterprise") as standin:
        client = Cloudflare(api_token=TOKEN, base_url=standin.api_base_url, max_retries=0)
        # The published create body has no check_regions: a create need not send it.
        pool = client.load_balancers.pools.create(
            account_id=ACCOUNT, name="app-eu", origins=_origins("eu", "192.0.2.1")
        )
        with pytest.raises(cloudflare.BadRequestError) as caught:
            client.load_balancers.pools.update(
                pool.id, account_id=ACCOUNT, name="app-eu", origins=_origins("eu", "192.0.2.1"), check_regions=None
            )
        assert caught.value.errors[0].code == 1002
        assert "Probing from every data centre" in str(caught.value.errors[0].message)
        client.close()


def test_invalid_pools_fail_validation(cf: Cloudflare) -> None:
    for name, origins in (("app.eu", _origins("eu", "192.0.2.1")), ("app-eu", [])):
        with pytest.raises(cloudflare.BadRequestError) as caught:
            cf.load_balancers.pools.create(account_id=ACCOUNT, name=name, origins=origins)
        assert caught.value.errors[0].code == 1002
        assert str(caught.value.errors[0].message).endswith(": validation failed")


# ---- Cloudflare: load balancers and references ----


def test_referenced_pools_and_monitors_cannot_be_deleted(cf: Cloudflare) -> None:
    monitor = _monitor(cf)
    eu = _pool(cf, "app-eu", monitor.id, "WEU")
    us = _pool(cf, "app-us", monitor.id, "WNAM")
    lb = cf.load_balancers.create(
        zone_id=ZONE,
        name="app.example.com",
        default_pools=[eu.id, us.id],
        fallback_pool=us.id,
        region_pools={"WEU": [eu.id], "WNAM": [us.id]},
        steering_policy="geo",
    )
    assert (lb.enabled, lb.proxied, lb.ttl, lb.session_affinity) == (
        True,
        False,
        30,
        "none",
    )
    assert lb.region_pools == {"WEU": [eu.id], "WNAM": [us.id]}

    with pytest.raises(cloudflare.BadRequestError) as caught:
        cf.load_balancers.pools.delete(eu.id, account_id=ACCOUNT)
    assert caught.value.errors[0].code == 1001
    assert caught.value.errors[0].message == "Object referenced by other objects"
    with pytest.raises(cloudflare.BadRequestError):
        cf.load_balancers.monitors.delete(monitor.id, account_id=ACCOUNT)

    cf.load_balancers.delete(str(lb.id), zone_id=ZONE)
    deleted = cf.load_balancers.pools.delete(eu.id, account_id=ACCOUNT)
    assert deleted.id == eu.id


def test_load_balancer_must_reference_existing_pools(cf: Cloudflare) -> None:
    pool = _pool(cf, "app-eu", _monitor(cf).id, "WEU")
    with pytest.raises(cloudflare.BadRequestError) as caught:
        cf.load_balancers.create(
            zone_id=ZONE,
            name="app.example.com",
            default_pools=[pool.id],
            fallback_pool=pool.id,
            region_pools={"WNAM": ["f" * 32]},
        )
    assert caught.value.errors[0].code == 1002


def test_unknown_id_is_not_found(cf: Cloudflare) -> None:
    with pytest.raises(cloudflare.NotFoundError) as caught:
        cf.load_balancers.pools.get("0" * 32, account_id=ACCOUNT)
    assert caught.value.errors[0].code == 1000


def test_pool_health_endpoint_has_the_real_map_shape(cf: Cloudflare, cf_control: CloudflareStandinControl) -> None:
    pool = _pool(cf, "app-eu", _monitor(cf).id, "WEU")
    cf_control.set_pool_health("app-eu", False, origins={"app-eu-1": True})

    raw = cf.load_balancers.pools.health.with_raw_response.get(pool.id, account_id=ACCOUNT)
    result = raw.http_response.json()["result"]

    assert result["pool_id"] == pool.id
    assert list(result["pop_health"]) == ["Amsterdam, NL"]
    pop = result["pop_health"]["Amsterdam, NL"]
    assert pop["healthy"] is False
    assert pop["origins"][0]["203.0.113.10"]["healthy"] is True
    assert pop["origins"][0]["203.0.113.10"]["response_code"] == 200
    assert pop["origins"][1]["203.0.113.11"]["healthy"] is False


# ---- Cloudflare: auth ----


def test_wrong_token_is_permission_denied(cf_standin: CloudflareStandin) -> None:
    client = Cloudflare(api_token="wrong", base_url=cf_standin.api_base_url, max_retries=0)
    with pytest.raises(cloudflare.PermissionDeniedError) as caught:
        client.load_balancers.pools.list(account_id=ACCOUNT)
    assert caught.value.errors[0].code == 10000


def test_email_and_key_in_environment_silently_replace_the_token(
    cf_standin: CloudflareStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDFLARE_EMAIL", "ops@example.com")
    monkeypatch.setenv("CLOUDFLARE_API_KEY", "legacy-key")
    client = Cloudflare(api_token=TOKEN, base_url=cf_standin.api_base_url, max_retries=0)
    with pytest.raises(cloudflare.PermissionDeniedError):
        client.load_balancers.pools.list(account_id=ACCOUNT)


# ---- Cloudflare: faults ----


def test_rate_limit_is_retried_after_retry_after(cf: Cloudflare, cf_control: CloudflareStandinControl) -> None:
    cf_control.set_faults([{"status": 429, "count": 1, "retry_after": 1, "path_contains": "/pools"}])

    started = time.monotonic()
    pools = cf.with_options(max_retries=1).load_balancers.pools.list(account_id=ACCOUNT)

    assert list(pools) == []
    assert time.monotonic() - started >= 0.9  # the SDK honoured Retry-After: 1
    seen = cf_control.requests()
    assert seen["counts"] == {f"GET {_pools_path()}": 2}
    assert [entry["status"] for entry in seen["log"]] == [429, 200]
    assert cf_control.faults() == []  # used up


def test_server_error_raises_without_retries(cf: Cloudflare, cf_control: CloudflareStandinControl) -> None:
    cf_control.set_faults([{"status": 500, "method": "GET"}])
    with pytest.raises(cloudflare.InternalServerError):
        cf.load_balancers.pools.list(account_id=ACCOUNT)
    assert cf_control.requests()["total"] == 1


def test_success_false_with_http_200_is_silently_none(cf: Cloudflare, cf_control: CloudflareStandinControl) -> None:
    # The trap: the SDK raises on status codes only, so success:false comes back as
    # None from a get and as an empty page from a list. Callers must check.
    pool = _pool(cf, "app-eu", _monitor(cf).id, "WEU")
    cf_control.set_faults([{"success_false": True, "count": 2}])

    assert cf.load_balancers.pools.get(pool.id, account_id=ACCOUNT) is None
    assert list(cf.load_balancers.pools.list(account_id=ACCOUNT)) == []
    assert cf.load_balancers.pools.get(pool.id, account_id=ACCOUNT).id == pool.id


def test_slow_answer_times_out_the_client(cf_standin: CloudflareStandin, cf_control: CloudflareStandinControl) -> None:
    cf_control.set_faults([{"status": None, "delay_seconds": 0.5}])
    client = Cloudflare(api_token=TOKEN, base_url=cf_standin.api_base_url, max_retries=0, timeout=0.1)
    with pytest.raises(cloudflare.APITimeoutError):
        client.load_balancers.pools.list(account_id=ACCOUNT)


def test_invalid_fault_rules_are_refused(cf_control: CloudflareStandinControl) -> None:
    with pytest.raises(StandinControlError) as caught:
        cf_control.set_faults([{"status": 418}])
    assert caught.value.status == 400


# ---- Cloudflare: request counting ----


def test_request_counter_counts_calls_and_successful_writes(
    cf: Cloudflare, cf_control: CloudflareStandinControl
) -> None:
    monitor = _monitor(cf)  # write
    pool = _pool(cf, "app-eu", monitor.id, "WEU")  # write
    cf_control.reset_requests()

    cf.load_balancers.pools.list(account_id=ACCOUNT)
    cf.load_balancers.pools.list(account_id=ACCOUNT)
    cf.load_balancers.pools.get(pool.id, account_id=ACCOUNT)
    cf.load_balancers.pools.edit(pool.id, account_id=ACCOUNT, enabled=False)  # write
    cf.load_balancers.monitors.edit(monitor.id, account_id=ACCOUNT, interval=30, expected_codes="200")  # w
    with pytest.raises(cloudflare.NotFoundError):
        cf.load_balancers.pools.delete("0" * 32, account_id=ACCOUNT)  # failed write

    seen = cf_control.requests()
    monitor_path = f"/client/v4/accounts/{ACCOUNT}/load_balancers/monitors/{monitor.id}"
    assert seen["counts"] == {
        f"GET {_pools_path()}": 2,
        f"GET {_pools_path('/' + pool.id)}": 1,
        f"PATCH {_pools_path('/' + pool.id)}": 1,
        f"PATCH {monitor_path}": 1,
        f"DELETE {_pools_path('/' + '0' * 32)}": 1,
    }
    assert seen["total"] == 6
    assert cf_control.writes() == 2
    assert seen["log"][3]["body"] == {"enabled": False}


def test_reset_clears_objects_faults_and_counters(cf: Cloudflare, cf_control: CloudflareStandinControl) -> None:
    _pool(cf, "app-eu", _monitor(cf).id, "WEU")
    cf_control.set_faults([{"status": 503}])
    assert len(cf_control.state()["pools"]) == 1

    cf_control.reset()

    assert cf_control.state()["pools"] == []
    assert cf_control.faults() == []
    assert cf_control.requests()["total"] == 0


# ---- Google APIs ----


@pytest.fixture
def google_standin() -> Iterator[GoogleApisStandin]:
    standin = GoogleApisStandin(access_token=ACCESS_TOKEN, require_auth=True)
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture
def google_control(google_standin: GoogleApisStandin) -> GoogleStandinControl:
    return GoogleStandinControl(google_standin.url)


@pytest.fixture
def google_credentials(
    google_standin: GoogleApisStandin,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    path = write_authorized_user_credentials(tmp_path / "adc.json", google_standin.url + "/token")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    credentials, _ = google.auth.default()
    return credentials


def _client_options(url: str) -> dict[str, str]:
    return {"api_endpoint": url}


def test_get_cluster_returns_the_registered_endpoint_and_ca(
    google_standin: GoogleApisStandin,
    google_control: GoogleStandinControl,
    google_credentials: Any,
) -> None:
    google_control.register_cluster(CLUSTER, "127.0.0.1:6443", CA_PEM)
    client = container_v1.ClusterManagerClient(
        transport="rest",
        client_options=_client_options(google_standin.url),
        credentials=google_credentials,
    )

    cluster = client.get_cluster(name=CLUSTER, timeout=5)

    assert cluster.endpoint == "127.0.0.1:6443"
    assert cluster.status == container_v1.Cluster.Status.RUNNING
    ca_pem = base64.b64decode(cluster.master_auth.cluster_ca_certificate).decode()
    assert ca_pem == CA_PEM
    dns = cluster.control_plane_endpoints_config.dns_endpoint_config.endpoint
    assert dns.endswith(".europe-west1.gke.goog")
    # google-auth refreshed against the stand-in; require_auth checked the bearer.
    assert google_control.token_requests() == 1
    assert google_credentials.token == ACCESS_TOKEN

    with pytest.raises(gexc.NotFound):
        client.get_cluster(name=CLUSTER.replace("app-eu", "app-mars"), timeout=5)


def test_access_latest_secret_resolves_the_newest_enabled_version(
    google_standin: GoogleApisStandin,
    google_control: GoogleStandinControl,
    google_credentials: Any,
) -> None:
    google_control.add_secret_version(SECRET, "token-v1")
    assert google_control.add_secret_version(SECRET, "token-v2") == 2
    client = secretmanager.SecretManagerServiceClient(
        transport="rest",
        client_options=_client_options(google_standin.url),
        credentials=google_credentials,
    )

    latest = client.access_secret_version(name=f"{SECRET}/versions/latest", timeout=5)
    assert latest.name == f"{SECRET}/versions/2"
    assert latest.payload.data == b"token-v2"
    assert google_crc32c.value(latest.payload.data) == latest.payload.data_crc32c

    google_control.set_secret_version_enabled(f"{SECRET}/versions/2", False)
    latest = client.access_secret_version(name=f"{SECRET}/versions/latest", timeout=5)
    assert (latest.name, latest.payload.data) == (f"{SECRET}/versions/1", b"token-v1")
    with pytest.raises(gexc.BadRequest, match="DISABLED state") as caught:
        client.access_secret_version(name=f"{SECRET}/versions/2", timeout=5)
    # Over REST the class comes from the HTTP status, not from FAILED_PRECONDITION.
    assert type(caught.value) is gexc.BadRequest
    with pytest.raises(gexc.NotFound):
        client.access_secret_version(name=f"{SECRET}-x/versions/latest", timeout=5)


def test_injected_unavailable_surfaces_as_service_unavailable(
    google_standin: GoogleApisStandin,
    google_control: GoogleStandinControl,
    google_credentials: Any,
) -> None:
    google_control.add_secret_version(SECRET, "token-v1")
    google_control.set_faults([{"status": 503, "path_contains": ":access"}])
    client = secretmanager.SecretManagerServiceClient(
        transport="rest",
        client_options=_client_options(google_standin.url),
        credentials=google_credentials,
    )
    with pytest.raises(gexc.ServiceUnavailable):
        # retry=None: the default policy would back off and retry on 503.
        client.access_secret_version(name=f"{SECRET}/versions/latest", retry=None, timeout=5)


# ---- Process mode ----


def _start_process(module: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", "0", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    line = proc.stdout.readline() if ready else ""
    found = re.fullmatch(r"listening on (http://127\.0\.0\.1:\d+)\n", line)
    if found is None:
        _stop_process(proc)
        pytest.fail(f"{module} did not report listening: {line!r}")
    return proc, found.group(1)


def _stop_process(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()


def _port_is_closed(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.fixture
def cloudflare_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc, url = _start_process("sandbox.standins.cloudflare", "--token", TOKEN)
    try:
        yield proc, url
    finally:
        _stop_process(proc)


def test_cloudflare_standin_runs_as_a_process(
    cloudflare_process: tuple[subprocess.Popen[str], str],
) -> None:
    proc, url = cloudflare_process
    client = Cloudflare(api_token=TOKEN, base_url=f"{url}/client/v4", max_retries=0)
    monitor = _monitor(client)
    assert CloudflareStandinControl(url).state()["monitors"][0]["id"] == monitor.id

    _stop_process(proc)

    assert proc.returncode == 0  # SIGTERM is a clean shutdown
    assert _port_is_closed(url)


def test_google_standin_process_preloads_a_state_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = {
        "clusters": [{"name": CLUSTER, "endpoint": "10.0.0.2", "ca_pem": CA_PEM}],
        "secrets": [{"name": SECRET, "data": "from-state-file"}],
        "access_token": "ignored: the flag wins",
    }
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(state))
    proc, url = _start_process(
        "sandbox.standins.google_apis",
        "--state-file",
        str(state_file),
        "--access-token",
        ACCESS_TOKEN,
        "--require-auth",
    )
    try:
        creds_file = write_authorized_user_credentials(tmp_path / "adc.json", url + "/token")
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(creds_file))
        credentials, _ = google.auth.default()
        sm = secretmanager.SecretManagerServiceClient(
            transport="rest",
            client_options=_client_options(url),
            credentials=credentials,
        )
        gke = container_v1.ClusterManagerClient(
            transport="rest",
            client_options=_client_options(url),
            credentials=credentials,
        )

        secret = sm.access_secret_version(name=f"{SECRET}/versions/latest", timeout=5)
        cluster = gke.get_cluster(name=CLUSTER, timeout=5)

        assert secret.payload.data == b"from-state-file"
        assert cluster.endpoint == "10.0.0.2"
        assert credentials.token == ACCESS_TOKEN
    finally:
        _stop_process(proc)
    assert proc.returncode == 0
