"""The status page, rendered from a snapshot: what runs in each region (digest, tag), the
rollout, the release history and who triggered each release, the pools at Cloudflare,
the last drift check and the waves waiting at a gate; every value escaped; no script."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from shared.contracts import Trigger
from shared.edge_health import EdgeHealth
from shared.flows.status import waiting_at_gates
from shared.rendering import render_shape
from shared.status import (
    DriftMark,
    GateWait,
    RegionSnapshot,
    drift_mark_data,
    parse_drift_mark,
    pool_states,
)
from shared.status_page import AppStatus, PageStatus, render_page
from shared.traffic import RegionHealth
from tests.core.builders import at, build_config, config_data, deployment, image, record, ref, release

CONFIG = build_config()
APP = CONFIG.apps[0]


def _snapshot(region: str, *releases, workload=None, error=None, drift=None) -> RegionSnapshot:
    r = CONFIG.region(region)
    if error is not None:
        return RegionSnapshot(r, error=error)
    return RegionSnapshot(r, render_shape(CONFIG, APP, r), [workload], record(*releases), drift=drift)


def _page(snapshots, pools=None, gates=(), pools_error=None, verdicts=None) -> str:
    listed = pools if pools is not None else []
    status = PageStatus(
        CONFIG.name,
        CONFIG.project,
        CONFIG.cloudflare.hostname,
        at(30),
        15,
        [AppStatus(APP, snapshots, pool_states(listed, snapshots, verdicts), pools_error, list(gates))],
    )
    return render_page(status)


class _Text(HTMLParser):
    """What a reader sees: the text, and each element's id with its text."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())


def _read(html: str) -> _Text:
    parser = _Text()
    parser.feed(html)
    return parser


def _row(html: str, region: str) -> str:
    match = re.search(rf'<tr id="region-{region}"[^>]*>(.*?)</tr>', html, re.S)
    assert match, f"no row for {region}"
    return _read(match.group(1)).text


def _pool(region: str, enabled: bool) -> dict:
    """A pool as Cloudflare lists it: no health of its own (that is in its health report)."""
    return {"id": f"id-{region}", "name": CONFIG.region(region).cloudflare.pool, "enabled": enabled}


def test_each_region_shows_its_running_digest_tag_rollout_and_pool():
    v1 = release("rel-1", ref("v1")).model_copy(update={"trigger": Trigger(type="push", event_id="e1", tag="v1.0.0")})
    html = _page(
        [
            _snapshot("europe-west1", v1, workload=deployment(image_ref=ref("v1"))),
            _snapshot("us-west1", v1, workload=deployment(image_ref=ref("v1"), updated=1, available=2)),
            _snapshot("asia-east1", error="connection refused"),
        ],
        pools=[_pool("europe-west1", True), _pool("us-west1", True), _pool("asia-east1", False)],
        verdicts={"id-europe-west1": EdgeHealth.HEALTHY, "id-us-west1": EdgeHealth.UNHEALTHY},
    )
    europe = _row(html, "europe-west1")
    assert image("v1").short in europe and "v1.0.0" in europe
    assert "complete 3/3 available" in europe and "serving" in europe and "healthy" in europe
    us = _row(html, "us-west1")
    assert "progressing" in us and "unhealthy" in us
    asia = _row(html, "asia-east1")
    assert "unreachable: connection refused" in asia and "drained" in asia and "not probed" in asia
    assert '<meta http-equiv="refresh" content="15">' in html
    assert "<script" not in html


def test_the_history_names_who_or_what_triggered_each_release():
    good = release("rel-1", ref("v1"))
    broken = release("rel-2", ref("v2"), status="failed", issued_at=at(5)).model_copy(
        update={"reason": "ProgressDeadlineExceeded"}
    )
    rollback = release("rel-2-rb", ref("v1"), kind="rollback", issued_at=at(5), rollback_of="rel-2").model_copy(
        update={"trigger": Trigger(type="rollback", event_id="rel-2", requested_by="geodeploy:auto-rollback")}
    )
    manual = release("rel-0", ref("v0"), issued_at=at(-5)).model_copy(
        update={"trigger": Trigger(type="manual", event_id="m", requested_by="ana@example.com")}
    )
    html = _page([_snapshot("europe-west1", rollback, broken, good, manual, workload=deployment(image_ref=ref("v1")))])
    history = re.search(r'<table id="history-europe-west1">(.*?)</table>', html, re.S)
    assert history
    text = _read(history.group(1)).text
    assert "rollback of rel-2 by geodeploy:auto-rollback" in text
    assert "failed ProgressDeadlineExceeded" in text
    assert "manual deploy by ana@example.com" in text
    assert "image push" in text
    assert text.index("rel-2-rb") < text.index("rel-2 ") < text.index("rel-1") < text.index("rel-0")


def test_the_last_drift_check_is_shown_with_its_time_and_findings():
    mark = DriftMark(checked_at=at(20), status="drifted", differences=2, healed=True, cloudflare_differences=1)
    assert parse_drift_mark({"data": drift_mark_data(mark)}) == mark
    v1 = release("rel-1", ref("v1"))
    html = _page(
        [
            _snapshot("europe-west1", v1, workload=deployment(image_ref=ref("v1")), drift=mark),
            _snapshot("us-west1", v1, workload=deployment(image_ref=ref("v1"))),
        ]
    )
    europe = _row(html, "europe-west1")
    assert "drifted" in europe and "2 differences (healed), Cloudflare: 1" in europe
    assert (at(20)).strftime("%Y-%m-%d %H:%M:%SZ") in europe
    assert "no check recorded" in _row(html, "us-west1")


def test_an_unreadable_drift_mark_reads_as_none():
    assert parse_drift_mark(None) is None
    assert parse_drift_mark({"data": {"last-check.json": "{not json"}}) is None
    assert parse_drift_mark({"data": {"last-check.json": '{"status": "in_sync"}'}}) is None


def test_the_gate_section_says_when_nothing_waits():
    v1 = release("rel-1", ref("v1"))
    snapshots = [_snapshot(r.name, v1, workload=deployment(image_ref=ref("v1"))) for r in CONFIG.regions]
    assert waiting_at_gates(CONFIG, APP, snapshots, None) == []
    assert "Nothing waits at a gate." in _read(_page(snapshots)).text


GATE = {"wave": 1, "approval": "manual", "require_edge_healthy": True}
GATED = build_config({**config_data(waves=True), "gates": [GATE]})
SHOP = GATED.app("shop")


def _gated_snapshots(*, eu_error: str | None = None) -> list[RegionSnapshot]:
    """rel-1 has run through wave 1 (europe-west1); wave 2 has not started."""
    v1 = release("rel-1", ref("v1"))
    snapshots = []
    for r in GATED.regions:
        if r.name == "europe-west1" and eu_error:
            snapshots.append(RegionSnapshot(r, error=eu_error))
            continue
        records = record(v1) if r.wave == 1 else record()
        snapshots.append(RegionSnapshot(r, render_shape(GATED, SHOP, r), [deployment(image_ref=ref("v1"))], records))
    return snapshots


def test_a_release_at_a_gate_shows_what_holds_it_cloudflare_included():
    snapshots = _gated_snapshots()
    listed = [{"id": f"id-{r.name}", "name": r.cloudflare.pool, "enabled": True} for r in GATED.regions]

    unhealthy = pool_states(listed, snapshots, {"id-europe-west1": EdgeHealth.UNHEALTHY})
    [held] = waiting_at_gates(GATED, SHOP, snapshots, unhealthy)
    assert held == GateWait(
        "shop",
        "rel-1",
        2,
        ("us-west1", "asia-east1"),
        "manual approval, Cloudflare's health check",
        "Cloudflare calls shop-europe-west1 unhealthy",
    )
    app_status = AppStatus(SHOP, snapshots, unhealthy, None, [held])
    status = PageStatus(GATED.name, GATED.project, GATED.cloudflare.hostname, at(30), 15, [app_status])
    text = _read(render_page(status)).text
    assert "wave 2 of rel-1 (us-west1, asia-east1): manual approval, Cloudflare's health check" in text

    healthy = pool_states(listed, snapshots, {"id-europe-west1": EdgeHealth.HEALTHY})
    [held] = waiting_at_gates(GATED, SHOP, snapshots, healthy)
    assert (held.gate, held.detail) == ("manual approval", "run geodeploy promote")


def test_cloudflare_not_read_is_no_verdict_not_an_unhealthy_pool():
    """As `geodeploy status` words it: the gate waits on a verdict it could not read."""
    snapshots = _gated_snapshots()
    listed = [{"id": f"id-{r.name}", "name": r.cloudflare.pool, "enabled": True} for r in GATED.regions]

    [down] = waiting_at_gates(GATED, SHOP, snapshots, pool_states([], snapshots, {}), "Cloudflare answered 503")
    [unjudged] = waiting_at_gates(GATED, SHOP, snapshots, pool_states(listed, snapshots, {}))

    assert down.gate == "manual approval, Cloudflare's health check"
    assert down.detail == "Cloudflare: Cloudflare answered 503"
    assert unjudged.detail == "Cloudflare calls shop-europe-west1 unhealthy"  # as the CLI words it


def test_no_gate_is_claimed_while_a_region_is_not_read():
    # The region not read may hold a newer release that cancelled this one.
    assert waiting_at_gates(GATED, SHOP, _gated_snapshots(eu_error="connection refused"), None) == []


def test_every_value_is_escaped():
    hostile = '<script>alert("x")</script>'
    v1 = release("rel-1", ref("v1")).model_copy(update={"reason": hostile})
    v1 = v1.model_copy(update={"trigger": Trigger(type="manual", event_id="e", requested_by=hostile)})
    html = _page(
        [
            _snapshot("europe-west1", v1, workload=deployment(image_ref=ref("v1"))),
            _snapshot("us-west1", error=hostile),
        ],
        pools_error=hostile,
    )
    assert "<script" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert hostile in _read(html).text  # what a reader sees is the text, unchanged


def test_cloudflare_unavailable_still_shows_the_regions():
    v1 = release("rel-1", ref("v1"))
    html = _page([_snapshot("europe-west1", v1, workload=deployment(image_ref=ref("v1")))], pools_error="503")
    assert "Cloudflare: unavailable: 503" in _read(html).text
    assert "missing" in _row(html, "europe-west1")
    assert image("v1").short in _row(html, "europe-west1")


def test_pool_states_keep_the_oldest_pool_of_a_name():
    snapshots = [_snapshot("europe-west1", workload=None)]
    name = CONFIG.region("europe-west1").cloudflare.pool
    older = {"name": name, "enabled": False, "created_on": "2026-01-01T00:00:00Z"}
    newer = {"name": name, "enabled": True, "created_on": "2026-02-01T00:00:00Z"}
    [state] = pool_states([newer, older], snapshots)
    assert state.enabled is False and state.exists
    assert state.health == RegionHealth("europe-west1", "unhealthy", "not_deployed")
    assert state.as_json()["health"] == {"state": "unhealthy", "reason": "not_deployed", "available": 0}
