"""check_drift's last result, kept where the status page reads it: a small ConfigMap per
app in each region it checked (shared.status.drift_mark_name), beside the release record.

Best effort: the check is done and its report published; a mark not written only leaves
the page showing an older check (with its time), so a failure is logged, never raised
(raising would redeliver a check that was made). A newer mark (a later check that
finished first) is left in place."""

from __future__ import annotations

from collections.abc import Callable

from shared.adapters.kube import KubeClient
from shared.config import Config, Region
from shared.errors import PermanentError, TransientError
from shared.flows.drift import DriftReport, RegionDrift, RegionStatus
from shared.flows.regions import each_region
from shared.logs import BoundLogger
from shared.rendering import MANAGED_BY
from shared.status import DriftMark, drift_mark_data, drift_mark_name, parse_drift_mark

__all__ = ["record_drift_checks"]


def record_drift_checks(
    config: Config, report: DriftReport, *, connect: Callable[[Region], KubeClient], log: BoundLogger
) -> None:
    """One mark per app and region the check reached."""
    reached: dict[str, list[RegionDrift]] = {}
    for result in report.regions:
        if result.status is not RegionStatus.UNREACHABLE:
            reached.setdefault(result.region, []).append(result)
    regions = [r for r in config.regions if r.name in reached]

    def write(region: Region) -> str:
        try:
            kube = connect(region)
            for result in reached[region.name]:
                _write_mark(config, kube, report, result)
        except (TransientError, PermanentError) as e:
            return str(e)[:300]
        return ""

    problems = each_region(
        regions,
        write,
        timed_out=lambda _region, deadline: f"no answer within {deadline:.0f} s",
        deadline=config.region_deadline_seconds,
    )
    for region, problem in zip(regions, problems, strict=True):
        if problem:
            log.warning("drift_mark_not_written", mark_region=region.name, detail=problem)


def _write_mark(config: Config, kube: KubeClient, report: DriftReport, result: RegionDrift) -> None:
    app = config.app(result.app)
    name = drift_mark_name(config, app.name)
    recorded = parse_drift_mark(kube.get("v1", "ConfigMap", name, app.namespace))
    if recorded is not None and recorded.checked_at > report.checked_at:
        return
    steered = app.name == config.cloudflare.app
    mark = DriftMark(
        checked_at=report.checked_at,
        status=result.status.value,
        differences=len(result.differences),
        healed=result.healed,
        reason=result.reason,
        cloudflare_differences=len(report.cloudflare) if steered else 0,
    )
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": app.namespace,
                "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
            },
            "data": drift_mark_data(mark),
        }
    )
