"""infra/monitoring.tf creates the log-based metrics and alert policies that
shared/monitoring.py lists for the config: the same names, filters and labels, the
thresholds of the config's `alerts:` block, the drift check's overdue time worked out
from its schedule the same way in HCL as in Python (and by Terraform itself, where a
terraform binary is on PATH), and the channels to notify."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.config import Alerts, load_config
from shared.monitoring import alert_policies_of, dead_letter_subscription, log_metrics_of
from tests.infra.test_terraform import (
    CONFIG_NAMES,
    EXAMPLE,
    INFRA,
    _example_data,
    _instances,
    _module,
    _terraform,
    _terraform_console,
    _topic_name_of,
    config_files,  # noqa: F401  # the fixture, shared with the Terraform tests
)

# Schedules beyond the shipped configs': each way of writing the minute and hour fields,
# and one the overdue time must be stated for.
SCHEDULES = {
    "every-15-minutes": ("*/15 * * * *", {"drift_check_slack_minutes": 10}),
    "working-hours": ("0 9-17 * * *", {}),
    "stepped-range-and-list": ("5,35 0-22/2 * * *", {}),
    "weekly-stated": ("0 4 * * 1", {"drift_check_overdue_minutes": 1400}),
    "weekly-unstated": ("0 4 * * 1", {}),
    "daily": ("15 3 * * *", {}),
}


@pytest.fixture(scope="module")
def schedule_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("schedules")
    files = {}
    for name, (schedule, alerts) in SCHEDULES.items():
        data = _example_data()
        data["drift"] = {"schedule": schedule}
        data["alerts"] = alerts
        files[name] = directory / f"{name}.yaml"
        files[name].write_text(yaml.safe_dump(data, sort_keys=False))
        load_config(files[name])
    return files


@pytest.fixture(params=[*CONFIG_NAMES, *SCHEDULES])
def variant(request: pytest.FixtureRequest, config_files: dict[str, Path], schedule_files: dict[str, Path]) -> Path:  # noqa: F811
    return {**config_files, **schedule_files}[request.param]


def _python_metrics(config_path: Path) -> dict[str, dict[str, Any]]:
    return {
        m.key: {"name": m.name, "filter": m.filter, "labels": m.labels}
        for m in log_metrics_of(load_config(config_path))
    }


def _python_policies(config_path: Path) -> dict[str, dict[str, Any]]:
    policies = {}
    for p in alert_policies_of(load_config(config_path)):
        policies[p.key] = {
            "display_name": p.display_name,
            "kind": p.kind,
            "filter": p.filter,
            "window_seconds": p.window_seconds,
            "aligner": p.aligner,
            "group_by": list(p.group_by),
            **({"threshold": p.threshold} if p.kind == "threshold" else {"duration": p.duration_seconds}),
        }
    return policies


def test_the_alerts_defaults_mirror_the_python_model() -> None:
    defaults = _module(EXAMPLE).local("alerts_defaults")
    assert defaults == {key: Alerts.model_fields[key].default for key in defaults}


def test_the_metrics_are_shared_monitorings(variant: Path) -> None:
    assert _module(variant).local("log_metrics") == _python_metrics(variant)


def test_the_alert_policies_are_shared_monitorings(variant: Path) -> None:
    hcl = {
        key: {k: v for k, v in policy.items() if k != "documentation"}
        for key, policy in _module(variant).local("alert_policies").items()
    }
    assert hcl == _python_policies(variant)


def test_the_metric_resources_count_with_a_label_per_field(variant: Path) -> None:
    module = _module(variant)
    metrics = _python_metrics(variant)
    resources = _instances(module, "google_logging_metric", "event")
    assert sorted(resources) == sorted(metrics)
    for key, metric in resources.items():
        assert metric.get("name") == metrics[key]["name"]
        assert metric.get("filter") == metrics[key]["filter"]
        assert metric.get("metric_descriptor", 0, "metric_kind") == "DELTA"
        assert metric.get("metric_descriptor", 0, "value_type") == "INT64"
        labels = metrics[key]["labels"]
        assert metric.get("label_extractors") == {label: f"EXTRACT(jsonPayload.{f})" for label, f in labels.items()}
        (generator,) = metric.raw["metric_descriptor"][0]["dynamic"]
        each = {"each": {"key": key, "value": module.local("log_metrics")[key]}}
        assert module.evaluate(generator['"labels"']["for_each"], each) == labels


def test_every_policy_notifies_the_configured_channels(variant: Path) -> None:
    config = load_config(variant)
    policies = _instances(_module(variant), "google_monitoring_alert_policy", "geodeploy")
    assert sorted(policies) == sorted(p.key for p in alert_policies_of(config))
    for policy in policies.values():
        assert policy.get("notification_channels") == config.alerts.notification_channels
        assert policy.get("combiner") == "OR"


def test_the_dead_letter_alert_watches_the_subscription_that_keeps_them() -> None:
    config, module = load_config(EXAMPLE), _module(EXAMPLE)
    kept = {
        name: _topic_name_of(module, s.get("topic"))
        for name, s in _instances(module, "google_pubsub_subscription", "keep").items()
    }
    assert kept[dead_letter_subscription(config)] == config.topics.dead_letter
    backlog = module.local("alert_policies")["dead_letter_backlog"]
    assert f'resource.labels.subscription_id="{dead_letter_subscription(config)}"' in backlog["filter"]


def test_a_drift_check_alert_that_is_turned_off_is_not_created(config_files: dict[str, Path]) -> None:  # noqa: F811
    module = _module(config_files["overrides"])  # a daily check, its alert turned off
    assert module.local("drift_check_overdue_minutes") == 0
    assert "drift_check_overdue" not in _instances(module, "google_monitoring_alert_policy", "geodeploy")


@pytest.mark.parametrize("name", [*CONFIG_NAMES, *SCHEDULES])
def test_terraform_evaluates_the_monitoring_locals_the_same_way(
    name: str,
    config_files: dict[str, Path],  # noqa: F811
    schedule_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    binary = _terraform()
    path = {**config_files, **schedule_files}[name]
    for file in ("variables.tf", "locals.tf"):
        shutil.copy(INFRA / file, tmp_path / file)
    module = _module(path)
    for local in ("alerts", "drift_check_overdue_minutes", "log_metrics"):
        assert _terraform_console(binary, tmp_path, path, f"local.{local}") == module.local(local), local
