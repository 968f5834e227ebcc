"""What infra/monitoring.tf creates, derived from the config: the log-based metrics (their
filters built from the event names in shared/log_events.py) and the alert policies with
their thresholds. Pure.

The one list: infra/locals.tf computes the same (tests/infra compares the two), and
tests/core/test_metrics_match_the_lines_the_code_writes.py runs the code and proves
each metric's filter matches the lines it writes.

The functions' lines reach Cloud Logging as entries of resource type
`cloud_run_revision` (a 2nd-gen function is a Cloud Run service of the same name) with
the line's fields as jsonPayload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shared.config import Config
from shared.contracts import DeployStatus
from shared.log_events import (
    AUTOMATIC_ROLLBACK_STARTED,
    DRIFT_CHECKED,
    DRIFT_DETECTED,
    POOL_DRAINED,
    RESULT_PUBLISHED,
    ROLLBACK_REQUESTED,
)
from shared.topology import functions_of

__all__ = [
    "FAILED_ROLLOUTS_WINDOW_SECONDS",
    "FAILED_ROLLOUT_STATUSES",
    "AlertSpec",
    "LogMetric",
    "alert_policies_of",
    "dead_letter_subscription",
    "log_metrics_of",
]

# Results that mean a rollout failed: rolled back on its own, or failed with no way back
# (a failed rollback's rollout is a failed rollout too).
FAILED_ROLLOUT_STATUSES: tuple[DeployStatus, ...] = ("failed", "rolling_back")
FAILED_ROLLOUTS_WINDOW_SECONDS = 600
# Log-based metrics are counted per minute; the windows the threshold alerts sum over.
ALIGNMENT_SECONDS = 300


@dataclass(frozen=True)
class LogMetric:
    """A counter of matching log lines; `labels`: metric label → the jsonPayload field it is taken from."""

    key: str
    name: str
    description: str
    filter: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return f"logging.googleapis.com/user/{self.name}"


@dataclass(frozen=True)
class AlertSpec:
    """One alert policy of one condition: `threshold` (the series above `threshold` in any
    `window_seconds`) or `absent` (no data for `duration_seconds`)."""

    key: str
    display_name: str
    kind: Literal["threshold", "absent"]
    filter: str
    window_seconds: int
    aligner: str  # how each series is aligned over the window
    threshold: float | None = None
    duration_seconds: int = 0
    group_by: tuple[str, ...] = ()


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _lines_of(config: Config, entry_points: tuple[str, ...], *events: str) -> str:
    """The Logging query for lines with one of `events` from the functions of `entry_points`."""
    names = sorted(s.name for s in functions_of(config) if s.entry_point in entry_points)
    services = " OR ".join(f"resource.labels.service_name={_quoted(n)}" for n in names)
    wanted = " OR ".join(f"jsonPayload.event={_quoted(e)}" for e in events)
    return f'resource.type="cloud_run_revision" AND ({services}) AND ({wanted})'


def log_metrics_of(config: Config) -> list[LogMetric]:
    drained_seconds = config.alerts.drained_minutes * 60
    return [
        LogMetric(
            "deploy_results",
            f"{config.name}-deploy-results",
            "geodeploy: deploy results published, by status, app and region",
            _lines_of(config, ("deploy_region",), RESULT_PUBLISHED),
            {"status": "status", "app": "app", "region": "region"},
        ),
        LogMetric(
            "rollbacks",
            f"{config.name}-rollbacks",
            "geodeploy: rollbacks started, automatic (per region) or requested (per control message)",
            _lines_of(config, ("deploy_region", "on_control"), AUTOMATIC_ROLLBACK_STARTED, ROLLBACK_REQUESTED),
            {"event": "event", "app": "app"},
        ),
        LogMetric(
            "drift_findings",
            f"{config.name}-drift-findings",
            "geodeploy: differences found by the drift check, by system, app and region",
            _lines_of(config, ("check_drift",), DRIFT_DETECTED),
            {"system": "system", "app": "app", "region": "region"},
        ),
        LogMetric(
            "drift_checks",
            f"{config.name}-drift-checks",
            "geodeploy: drift checks that ran to their end",
            _lines_of(config, ("check_drift",), DRIFT_CHECKED),
        ),
        LogMetric(
            "drained_too_long",
            f"{config.name}-drained-too-long",
            f"geodeploy: reconciles that found a region's pool drained for {config.alerts.drained_minutes} minutes "
            "or more",
            _lines_of(config, ("reconcile_traffic",), POOL_DRAINED)
            + f" AND jsonPayload.drained_seconds>={drained_seconds}",
            {"region": "drained_region"},
        ),
    ]


def dead_letter_subscription(config: Config) -> str:
    """The subscription that keeps the dead letters for an operator (infra/pubsub.tf)."""
    return f"{config.name}-dead-letters"


def alert_policies_of(config: Config) -> list[AlertSpec]:
    metrics = {m.key: m for m in log_metrics_of(config)}
    alerts = config.alerts
    failed = ", ".join(_quoted(s) for s in FAILED_ROLLOUT_STATUSES)
    policies = [
        AlertSpec(
            "dead_letter_backlog",
            f"{config.name}: dead letters waiting",
            "threshold",
            'metric.type="pubsub.googleapis.com/subscription/num_undelivered_messages" AND '
            f'resource.type="pubsub_subscription" AND resource.labels.subscription_id='
            f"{_quoted(dead_letter_subscription(config))}",
            ALIGNMENT_SECONDS,
            "ALIGN_MAX",
            threshold=alerts.dead_letter_messages - 1,
        ),
        AlertSpec(
            "failed_rollouts",
            f"{config.name}: rollouts failed",
            "threshold",
            f"metric.type={_quoted(metrics['deploy_results'].type)} AND metric.labels.status=one_of({failed})",
            FAILED_ROLLOUTS_WINDOW_SECONDS,
            "ALIGN_SUM",
            threshold=alerts.failed_rollouts - 1,
            group_by=("metric.label.app", "metric.label.region"),
        ),
        AlertSpec(
            "region_drained",
            f"{config.name}: a region drained for {alerts.drained_minutes} minutes",
            "threshold",
            f"metric.type={_quoted(metrics['drained_too_long'].type)}",
            ALIGNMENT_SECONDS,
            "ALIGN_SUM",
            threshold=0,
            group_by=("metric.label.region",),
        ),
    ]
    if config.drift_check_overdue_minutes:
        policies.append(
            AlertSpec(
                "drift_check_overdue",
                f"{config.name}: no drift check for {config.drift_check_overdue_minutes} minutes",
                "absent",
                f"metric.type={_quoted(metrics['drift_checks'].type)}",
                ALIGNMENT_SECONDS,
                "ALIGN_SUM",
                duration_seconds=config.drift_check_overdue_minutes * 60,
            )
        )
    return policies
