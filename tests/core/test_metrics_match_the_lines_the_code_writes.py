"""Each log-based metric infra/ creates (shared/monitoring.py, compared with
infra/monitoring.tf by tests/infra) counts lines the code really writes: the flows run
for real on in-memory clusters, their lines are formatted by the real JsonFormatter,
turned into the LogEntry Cloud Logging makes of a function's stdout, and matched with
each metric's filter. A renamed event, a field a label reads that the line lacks, or a
filter naming the wrong function fails here."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

from shared.config import Config
from shared.contracts import ControlMessage
from shared.flows.control import handle_control
from shared.flows.deploy import RegionDeployer
from shared.flows.drift import check_drift
from shared.flows.traffic import log_drained_pools
from shared.logs import BoundLogger, JsonFormatter
from shared.monitoring import FAILED_ROLLOUT_STATUSES, LogMetric, log_metrics_of
from shared.topology import functions_of
from tests.core.builders import SHOP_REPO, at, build_config, config_data, deploy_request, ref
from tests.core.inmemory_kube import CLOCK_START, InMemoryCluster, InMemoryKube, broken_image
from tests.core.logging_query import entry_of, matches

CONFIG = build_config(config_data())
METRICS = {m.key: m for m in log_metrics_of(CONFIG)}


class Lines(logging.Handler):
    """What a function prints: each record through the real formatter."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> Lines:
    handler = Lines()
    logger = logging.getLogger("geodeploy.test.metrics")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    monkeypatch.setattr(logger, "propagate", False)
    yield handler  # type: ignore[misc]
    logger.removeHandler(handler)


def service(entry_point: str, region: str | None = None) -> str:
    return next(
        s.name for s in functions_of(CONFIG) if s.entry_point == entry_point and (region is None or s.region == region)
    )


def call_log(entry_point: str, region: str | None = None) -> BoundLogger:
    """The logger a call starts with, bound as functions/_entry.py binds it."""
    fields = {"function": entry_point, "event_id": "evt-1", "region": region}
    return BoundLogger(logging.getLogger("geodeploy.test.metrics"), fields)


def counted(metric: LogMetric, lines: Lines, service_name: str) -> list[dict[str, Any]]:
    """The entries of `lines` (as `service_name` wrote them) the metric counts; each
    carries every field a label of the metric reads."""
    entries = [e for e in (entry_of(line, service_name) for line in lines.lines) if matches(metric.filter, e)]
    for entry in entries:
        for label, source in metric.labels.items():
            assert entry["jsonPayload"].get(source) is not None, f"{metric.key}: label {label} reads no {source}"
    return entries


def deploy(
    config: Config, cluster: InMemoryCluster, image: str, release_id: str, log: BoundLogger, minute: int = 10
) -> None:
    region = config.regions[0]
    RegionDeployer(
        config=config,
        region=region,
        kube=InMemoryKube(cluster, field_manager=config.field_manager, name=region.name),  # type: ignore[arg-type]
        publish_result=lambda _result: None,
        log=log,
        now=cluster.now,
        monotonic=cluster.monotonic,
    ).handle(deploy_request(image, region=region.name, release_id=release_id, issued_at=at(minute)))


def test_a_failed_rollout_is_counted_by_status_and_as_a_rollback(lines: Lines) -> None:
    region = CONFIG.regions[0].name
    cluster = InMemoryCluster()
    log = call_log("deploy_region", region)
    deploy(CONFIG, cluster, ref("v1"), "rel-good-0001", log)
    deploy(CONFIG, cluster, broken_image(SHOP_REPO, "bad"), "rel-bad-00001", log, minute=20)

    results = counted(METRICS["deploy_results"], lines, service("deploy_region", region))
    statuses = [e["jsonPayload"]["status"] for e in results]
    assert statuses == ["succeeded", "rolling_back", "rolled_back"]
    assert {e["jsonPayload"]["app"] for e in results} == {"shop"}
    assert {e["jsonPayload"]["region"] for e in results} == {region}
    assert [s for s in statuses if s in FAILED_ROLLOUT_STATUSES] == ["rolling_back"], "one failed rollout"
    (rollback,) = counted(METRICS["rollbacks"], lines, service("deploy_region", region))
    assert rollback["jsonPayload"]["app"] == "shop"
    # Another function's lines are not counted, whatever they say.
    assert not counted(METRICS["deploy_results"], lines, service("on_deploy_result"))


class Published:
    """The publisher's verb the control flow uses, keeping what it was given."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    def publish_each(self, messages: list[tuple[str, bytes]]) -> None:
        self.messages.extend(messages)


def test_a_requested_rollback_is_counted(lines: Lines) -> None:
    message = ControlMessage(version=1, action="rollback", app="shop", target=ref("v1"), requested_by="ops")
    published = Published()
    handle_control(
        message,
        event_id="evt-1",
        published_at=CLOCK_START,
        config=CONFIG,
        connect=lambda _region: None,  # type: ignore[arg-type,return-value]  # a named image reads no region
        publisher=published,  # type: ignore[arg-type]
        log=call_log("on_control"),
    )
    (rollback,) = counted(METRICS["rollbacks"], lines, service("on_control"))
    assert rollback["jsonPayload"]["app"] == "shop"
    assert len(published.messages) == len(CONFIG.regions), "one rollback line for the whole request"


def test_a_drift_finding_and_the_checks_end_are_counted(lines: Lines) -> None:
    cluster = InMemoryCluster()
    deploy(CONFIG, cluster, ref("v1"), "rel-good-0001", call_log("other"))
    lines.lines.clear()
    region = CONFIG.regions[0]
    kubectl = InMemoryKube(cluster, field_manager="kubectl", name=region.name)
    path = "/spec/template/spec/containers/0/image"
    kubectl.json_patch("apps/v1", "Deployment", "shop", "shop", [{"op": "replace", "path": path, "value": ref("x")}])

    check_drift(
        CONFIG,
        connect=lambda r: InMemoryKube(cluster, field_manager=CONFIG.field_manager, name=r.name),  # type: ignore[arg-type,return-value]
        cloudflare=None,
        heal=False,
        now=CLOCK_START,
        log=call_log("check_drift"),
        regions=[region.name],
    )
    findings = counted(METRICS["drift_findings"], lines, service("check_drift"))
    assert findings and {(e["jsonPayload"]["app"], e["jsonPayload"]["region"]) for e in findings} == {
        ("shop", region.name)
    }
    assert len(counted(METRICS["drift_checks"], lines, service("check_drift"))) == 1


def test_a_region_drained_longer_than_the_threshold_is_counted_and_a_shorter_drain_is_not(lines: Lines) -> None:
    threshold = timedelta(minutes=CONFIG.alerts.drained_minutes)
    europe, us = CONFIG.regions[0], CONFIG.regions[1]
    pools = {
        europe.cloudflare.pool: [{"enabled": False, "modified_on": (CLOCK_START - threshold).isoformat()}],
        us.cloudflare.pool: [{"enabled": False, "modified_on": (CLOCK_START - threshold / 2).isoformat()}],
    }
    enabled = {r.name: r not in (europe, us) for r in CONFIG.regions}
    log_drained_pools(CONFIG, pools, enabled, CLOCK_START, call_log("reconcile_traffic"))

    (long_drained,) = counted(METRICS["drained_too_long"], lines, service("reconcile_traffic"))
    assert long_drained["jsonPayload"]["drained_region"] == europe.name


def test_a_pool_drained_by_this_reconcile_has_been_drained_for_no_time(lines: Lines) -> None:
    europe = CONFIG.regions[0]
    pools = {europe.cloudflare.pool: [{"enabled": True, "modified_on": "2020-01-01T00:00:00Z"}]}
    log_drained_pools(CONFIG, pools, {r.name: r != europe for r in CONFIG.regions}, CLOCK_START, call_log("x"))
    (line,) = [entry_of(text, "x")["jsonPayload"] for text in lines.lines]
    assert (line["drained_region"], line["drained_seconds"]) == (europe.name, 0)
