"""`drift`: by default publish a drift request, as Cloud Scheduler does (check_drift then
publishes its report on the drift_reports topic); with --run, run the same check here.

--run's exit code: 0 in sync (or healed), 1 drift found and not healed, 3 a region or
Cloudflare could not be checked (and no drift was found where it could)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from cli.context import Context, build_context
from cli.errors import OperationFailed, Unavailable
from cli.exit_codes import ExitCode
from cli.output import Output
from cli.views import compact, say, table

if TYPE_CHECKING:
    from shared.flows.drift import DriftReport, RegionDrift

__all__ = ["DriftMode", "run"]

CLOUDFLARE = "cloudflare"  # how reports name Cloudflare beside the regions


class DriftMode(StrEnum):
    REQUEST = "request"  # published for check_drift
    RUN = "run"  # checked here (--run)


def run(args: argparse.Namespace, out: Output) -> int:
    ctx = build_context(args)
    regions = [r.name for r in ctx.regions(args.regions)] if args.regions else None
    if not args.run:
        return _request(ctx, out, regions, args.heal)
    return _check_here(ctx, out, regions, args.heal)


def _document(ctx: Context, mode: DriftMode, regions: list[str] | None, heal: bool | None) -> dict[str, Any]:
    return {"app": ctx.app.name, "mode": str(mode), "regions": regions, "heal": heal, "request": None, "report": None}


def _request(ctx: Context, out: Output, regions: list[str] | None, heal: bool) -> int:
    from shared.contracts import DriftCheckRequest

    # Without --heal the config's drift.heal decides, as for the scheduled check.
    request = DriftCheckRequest(apps=[ctx.app.name], regions=regions, heal=True if heal else None)
    message_id = ctx.publisher.publish(ctx.config.topics.drift, request.to_bytes())
    topics = ctx.config.topics
    out.result(
        {
            **_document(ctx, DriftMode.REQUEST, regions, request.heal),
            "request": {"message_id": message_id, "topic": topics.drift, "report_topic": topics.drift_reports},
        }
    )
    say(f"drift check requested for {ctx.app.name}: message {message_id}")
    say(f"the report will be published on {topics.drift_reports} (trigger_event_id {message_id})")
    return ExitCode.OK


def _check_here(ctx: Context, out: Output, regions: list[str] | None, heal: bool) -> int:
    from shared.contracts import TrafficHealReason, TrafficHealRequest
    from shared.flows.drift import RegionStatus, check_drift
    from shared.logs import get_logger

    def request_traffic_heal(reasons: list[TrafficHealReason]) -> None:
        # reconcile-traffic is Cloudflare's one writer: the CLI asks it, as check-drift does.
        request = TrafficHealRequest(trigger_event_id=f"cli-{datetime.now(UTC):%Y%m%dT%H%M%S}", reasons=reasons)
        ctx.publisher.publish(ctx.config.topics.drift, request.to_bytes())

    report = check_drift(
        ctx.config,
        connect=ctx.connect,
        cloudflare=ctx.cloudflare if ctx.steered else None,
        heal=heal,
        now=datetime.now(UTC),
        log=get_logger("cli", command="drift"),
        apps=[ctx.app.name],
        regions=regions,
        request_traffic_heal=request_traffic_heal,
    )
    unhealed = [r.region for r in report.regions if r.status is RegionStatus.DRIFTED and not r.healed]
    if report.cloudflare and not report.traffic_heal_requested:
        unhealed.append(CLOUDFLARE)
    # Neither drift nor in sync: the check could not see the region.
    not_checked = {RegionStatus.UNREACHABLE, RegionStatus.UNREADABLE, RegionStatus.PERMISSION_DENIED}
    unchecked = [r.region for r in report.regions if r.status in not_checked]
    out.result(
        {**_document(ctx, DriftMode.RUN, regions, heal), "report": _report_json(ctx, report, unhealed, unchecked)}
    )
    if not out.json:
        _print_report(ctx, report)
    if unhealed:
        hint = "see why above" if heal else "heal it with --heal"
        raise OperationFailed(f"drift found in {', '.join(unhealed)} ({hint})")
    if unchecked:
        raise Unavailable(f"could not check {', '.join(unchecked)} (each one's detail says why)")
    return ExitCode.OK


def _report_json(ctx: Context, report: DriftReport, unhealed: list[str], unchecked: list[str]) -> dict[str, Any]:
    cloudflare = None
    if ctx.steered:
        cloudflare = {
            "status": str(_cloudflare_status(report)),
            "differences": report.cloudflare,
            "heal_requested": [str(reason) for reason in report.traffic_heal_requested],
        }
    return {
        "checked_at": report.checked_at.isoformat(),
        "heal": report.heal,
        "drifted": report.drifted,
        "unhealed": unhealed,
        "unchecked": unchecked,
        "regions": [_region_json(r) for r in report.regions],
        "cloudflare": cloudflare,
    }


def _cloudflare_status(report: DriftReport) -> str:
    from shared.flows.drift import RegionStatus

    return RegionStatus.DRIFTED if report.cloudflare else RegionStatus.IN_SYNC


def _region_json(r: RegionDrift) -> dict[str, Any]:
    return {
        "region": r.region,
        "app": r.app,
        "status": str(r.status),
        "release": r.release,
        "image": r.image,
        "differences": r.differences,
        "healed": r.healed,
        "heal_failures": r.heal_failures,
        "reason": r.reason,
        "detail": r.detail,
    }


def _print_report(ctx: Context, report: DriftReport) -> None:
    rows: list[list[Any]] = []
    for r in report.regions:
        status = f"{r.status} (healed)" if r.healed else r.status
        if not r.differences:
            rows.append([r.region, status, None, None, None, None])
        for d in r.differences:
            rows.append([r.region, status, d["object"], d["path"], compact(d["expected"]), compact(d["live"])])
    if ctx.steered:
        cf_status = str(_cloudflare_status(report))
        cf_status += " (heal requested from reconcile-traffic)" if report.traffic_heal_requested else ""
        if not report.cloudflare:
            rows.append([CLOUDFLARE, cf_status, None, None, None, None])
        for d in report.cloudflare:
            rows.append([CLOUDFLARE, cf_status, d["object"], d["path"], compact(d["expected"]), compact(d["live"])])
    heal = "healing" if report.heal else "report only"
    say(f"drift of {ctx.app.name}, checked {report.checked_at:%Y-%m-%d %H:%M:%SZ} ({heal})")
    say(table(["REGION", "STATUS", "OBJECT", "PATH", "EXPECTED", "LIVE"], rows))
    for r in report.regions:
        if r.detail:  # why a region could not be checked, or that the config changed since
            say(f"  {r.region}: {r.detail}")
        for f in r.heal_failures:
            say(f"  {r.region}: could not heal {f['object']}: {f['reason']}: {f['detail']}")
