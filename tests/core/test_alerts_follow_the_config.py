"""The alert thresholds come from the config's `alerts:` block; the drift check's overdue
alert from how often drift.schedule runs, plus slack, within what Cloud Monitoring can
wait for. A schedule geodeploy cannot work out gets the alert only with its time
stated; one too sparse for an absence alert gets none."""

from __future__ import annotations

import pytest

from shared.config import MAX_ABSENCE_MINUTES
from shared.errors import ConfigError
from shared.monitoring import alert_policies_of, log_metrics_of
from shared.schedule import longest_gap_minutes
from tests.core.builders import build_config, config_data
from tests.core.logging_query import entry_of, matches


@pytest.mark.parametrize(
    ("schedule", "gap"),
    [
        ("0 */6 * * *", 360),
        ("*/15 * * * *", 15),
        ("0,30 * * * *", 30),
        ("0 9-17 * * *", 960),  # 17:00 to 09:00 the next day
        ("5 1,2 * * *", 1380),
        ("0 0-23/8 * * *", 480),
        ("15 3 * * *", 1440),
        ("0 0 * * 1", None),  # weekly: not worked out
        ("0 0 1 * *", None),
        ("@hourly", None),
        ("60 * * * *", None),
    ],
)
def test_the_longest_gap_of_a_daily_schedule(schedule: str, gap: int | None) -> None:
    assert longest_gap_minutes(schedule) == gap


def config_with(schedule: str, **alerts: object):
    data = config_data()
    data["drift"] = {"schedule": schedule}
    if alerts:
        data["alerts"] = alerts
    return build_config(data)


def policies(config) -> dict[str, object]:
    return {p.key: p for p in alert_policies_of(config)}


def test_the_overdue_alert_waits_for_the_schedules_gap_and_the_slack() -> None:
    config = config_with("0 */6 * * *", drift_check_slack_minutes=45)
    assert policies(config)["drift_check_overdue"].duration_seconds == (360 + 45) * 60


def test_a_schedule_geodeploy_cannot_work_out_gets_an_alert_only_when_its_time_is_stated() -> None:
    assert "drift_check_overdue" not in policies(config_with("0 0 * * 1"))
    stated = config_with("0 0 * * 1", drift_check_overdue_minutes=600)
    assert policies(stated)["drift_check_overdue"].duration_seconds == 600 * 60


def test_a_daily_check_is_too_sparse_for_an_absence_alert() -> None:
    # Cloud Monitoring waits at most 23.5 h: a 24 h gap would always look like an absence.
    assert config_with("15 3 * * *").drift_check_overdue_minutes == 0
    assert "drift_check_overdue" not in policies(config_with("15 3 * * *"))
    tight = config_with("0 0,23 * * *", drift_check_slack_minutes=MAX_ABSENCE_MINUTES - 1380)
    assert policies(tight)["drift_check_overdue"].duration_seconds == MAX_ABSENCE_MINUTES * 60


def test_an_overdue_time_of_one_minute_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"alerts.drift_check_overdue_minutes: .*at least 2"):
        config_with("0 */6 * * *", drift_check_overdue_minutes=1)


def test_thresholds_and_channels_reach_the_policies_and_the_drain_metric() -> None:
    channel = "projects/geo-test-project/notificationChannels/123"
    config = config_with(
        "0 */6 * * *", drained_minutes=10, dead_letter_messages=5, failed_rollouts=3, notification_channels=[channel]
    )
    found = policies(config)
    assert found["dead_letter_backlog"].threshold == 4  # more than 4: at least 5
    assert found["failed_rollouts"].threshold == 2
    assert "10 minutes" in found["region_drained"].display_name
    drained = next(m for m in log_metrics_of(config) if m.key == "drained_too_long")
    line = '{"event": "pool_drained", "drained_region": "europe-west1", "drained_seconds": %d}'
    service = f"{config.name}-reconcile-traffic"
    assert matches(drained.filter, entry_of(line % 600, service))
    assert not matches(drained.filter, entry_of(line % 599, service))


def test_a_notification_channel_must_be_a_channels_name() -> None:
    with pytest.raises(ConfigError, match="notification_channels"):
        config_with("0 */6 * * *", notification_channels=["my-pager"])


def test_the_query_subset_refuses_what_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="outside the supported subset"):
        matches('jsonPayload.event:"x"', {"jsonPayload": {"event": "x"}})
    with pytest.raises(ValueError, match="only = compares strings"):
        matches('jsonPayload.event>="x"', {"jsonPayload": {"event": "x"}})
