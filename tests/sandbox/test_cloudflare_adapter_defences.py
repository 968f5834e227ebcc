"""CloudflareLB itself, against the Cloudflare stand-in over HTTP (its own REST calls): the
traps test_standins.py shows the bare SDK falling into are defended against here.

- credentials in the environment (CLOUDFLARE_API_TOKEN, CLOUDFLARE_EMAIL + CLOUDFLARE_API_KEY,
  CLOUDFLARE_API_USER_SERVICE_KEY, CLOUDFLARE_BASE_URL) do not replace the token and the
  base URL it is given;
- a 200 whose envelope says `success: false` is an error, never a silent None or an empty
  list (which would make a reconcile create duplicates).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.standins.cloudflare import CloudflareStandin, CloudflareStandinControl
from shared.adapters.cloudflare_lb import CloudflareLB
from shared.errors import CloudflareUnavailable
from tests.sandbox.cloudflare_contract import checked_standin

TOKEN = "the-token-from-secret-manager"
ACCOUNT = "0123456789abcdef0123456789abcdef"
ZONE = "fedcba9876543210fedcba9876543210"
POOL = {
    "name": "shop-europe-west1",
    "description": "geodeploy europe-west1",
    "enabled": True,
    "minimum_origins": 1,
    "monitor": None,
    "check_regions": ["WEU"],
    "origins": [{"name": "europe-west1", "address": "192.0.2.10", "enabled": True, "weight": 1}],
}


@pytest.fixture
def standin() -> Iterator[CloudflareStandin]:
    with checked_standin(token=TOKEN, plan="non-enterprise") as server:  # geodeploy's every request, every answer
        yield server


@pytest.fixture
def control(standin: CloudflareStandin) -> CloudflareStandinControl:
    return CloudflareStandinControl(standin.url)


def _adapter(standin: CloudflareStandin) -> CloudflareLB:
    # No waiting between attempts: the retries themselves are what is under test.
    return CloudflareLB(
        lambda: TOKEN, account_id=ACCOUNT, zone_id=ZONE, base_url=standin.api_base_url, sleep=lambda _: None
    )


def _create_pool(cf: CloudflareLB) -> dict:
    return cf.create_pool(POOL, lambda: next((p for p in cf.list_pools() if p["name"] == POOL["name"]), None))


@pytest.mark.parametrize(
    "environment",
    [
        {"CLOUDFLARE_API_TOKEN": "a-stale-token-in-the-environment"},
        {"CLOUDFLARE_EMAIL": "ops@example.com"},
        {"CLOUDFLARE_API_KEY": "a-legacy-global-key"},
        {"CLOUDFLARE_EMAIL": "ops@example.com", "CLOUDFLARE_API_KEY": "a-legacy-global-key"},
        {"CLOUDFLARE_API_USER_SERVICE_KEY": "v1.0-a-service-key"},
        {"CLOUDFLARE_BASE_URL": "http://127.0.0.1:9/client/v4"},
        {
            "CLOUDFLARE_API_TOKEN": "a-stale-token-in-the-environment",
            "CLOUDFLARE_EMAIL": "ops@example.com",
            "CLOUDFLARE_API_KEY": "a-legacy-global-key",
            "CLOUDFLARE_API_USER_SERVICE_KEY": "v1.0-a-service-key",
            "CLOUDFLARE_BASE_URL": "http://127.0.0.1:9/client/v4",
        },
    ],
    ids=["token", "email", "key", "email-and-key", "service-key", "base-url", "all"],
)
def test_credentials_in_the_environment_never_replace_the_token(standin, control, monkeypatch, environment):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    cf = _adapter(standin)

    created = _create_pool(cf)
    cf.edit_pool(created["id"], {"enabled": False})
    pools = cf.list_pools()

    assert [(p["id"], p["enabled"]) for p in pools] == [(created["id"], False)]
    # The stand-in answers 403 to a wrong bearer token and to any X-Auth-Email/Key header:
    # every request it saw carried the right token, and no other credential.
    seen = control.requests()["log"]
    assert [(e["method"], e["status"]) for e in seen] == [("POST", 200), ("PATCH", 200), ("GET", 200)]
    assert all(e["credentials"] == ["Authorization"] for e in seen), [e["credentials"] for e in seen]
    assert cf.writes == 2


def test_a_success_false_answer_is_retried_not_taken_for_an_empty_list(standin, control):
    cf = _adapter(standin)
    created = _create_pool(cf)
    control.reset_requests()
    control.set_faults([{"success_false": True, "count": 1, "method": "GET"}])

    pools = cf.list_pools()

    assert [p["id"] for p in pools] == [created["id"]], "the empty page of a success:false was used"
    assert [(e["status"], e["fault"]) for e in control.requests()["log"]] == [
        (200, {"success_false": True}),
        (200, None),
    ]


def test_success_false_on_every_attempt_is_an_error_naming_cloudflares_errors(standin, control):
    cf = _adapter(standin)
    _create_pool(cf)
    control.set_faults([{"success_false": True, "count": 100, "method": "GET"}])

    with pytest.raises(CloudflareUnavailable) as failure:
        cf.list_pools()

    assert "success:false" in str(failure.value) and "injected by stand-in" in str(failure.value)
    assert control.requests()["faults_served"] == 5  # the adapter's bounded attempts


def test_a_write_answered_success_false_is_an_error_not_an_empty_object(standin, control):
    cf = _adapter(standin)
    created = _create_pool(cf)
    control.set_faults([{"success_false": True, "count": 100, "method": "PATCH"}])

    with pytest.raises(CloudflareUnavailable, match="success:false"):
        cf.edit_pool(created["id"], {"enabled": False})

    control.clear_faults()
    assert [p["enabled"] for p in cf.list_pools()] == [True]
    assert cf.writes == 1  # only the create counted


def test_a_create_answered_success_false_looks_before_creating_again(standin, control):
    cf = _adapter(standin)
    control.set_faults([{"success_false": True, "count": 1, "method": "POST"}])

    created = _create_pool(cf)

    assert [p["id"] for p in cf.list_pools()] == [created["id"]], "exactly one pool"
    assert [(e["method"], e["fault"]) for e in control.requests()["log"]][:3] == [
        ("POST", {"success_false": True}),
        ("GET", None),  # the look before the second create
        ("POST", None),
    ]
