"""`drift`: by default publish a drift request, as Cloud Scheduler does (check_drift then
publishes its report on the drift_reports topic); with --run, run the same check here."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cli.context import Context, build_context
from cli.errors import OperationFailed
from cli.views import compact, say, table

if TYPE_CHECKING:
    from shared.flows.drift import DriftReport

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    ctx = build_context(args)
    regions = [r.name for r in ctx.regions(args.regions)] if args.regions else None
    if not args.run:
        return _request(ctx, regions, args.heal)
    return _check_here(ctx, regions, args.heal)


def _request(ctx: Context, regions: list[str] | None, heal: bool) -> int:
    from shared.contracts import DriftCheckRequest

    # Without --heal the config's drift.heal decides, as for the scheduled check.
    request = DriftCheckRequest(apps=[ctx.app.name], regions=regions, heal=True if heal else None)
    message_id = ctx.publisher.publish(ctx.config.topics.drift, request.to_bytes())
    say(f"drift check requested for {ctx.app.name}: message {message_id}")
    say(f"the report will be published on {ctx.config.topics.drift_reports} (trigger_event_id {message_id})")
    return 0


def _check_here(ctx: Context, regions: list[str] | None, heal: bool) -> int:
    from shared.contracts import TrafficHealReason, TrafficHealRequest
    from shared.flows.drift import check_drift
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
    _print_report(ctx, report)
    unhealed = [r.region for r in report.regions if r.status == "drifted" and not r.healed]
    if report.cloudflare and not report.traffic_heal_requested:
        unhealed.append("cloudflare")
    if unhealed:
        hint = "see why above" if heal else "heal it with --heal"
        raise OperationFailed(f"drift found in {', '.join(unhealed)} ({hint})")
    return 0


def _print_report(ctx: Context, report: DriftReport) -> None:
    rows: list[list[Any]] = []
    for r in report.regions:
        status = f"{r.status} (healed)" if r.healed else r.status
        if not r.differences:
            rows.append([r.region, status, None, None, None, None])
        for d in r.differences:
            rows.append([r.region, status, d["object"], d["path"], compact(d["expected"]), compact(d["live"])])
    if ctx.steered:
        cf_status = "drifted" if report.cloudflare else "in_sync"
        cf_status += " (heal requested from reconcile-traffic)" if report.traffic_heal_requested else ""
        if not report.cloudflare:
            rows.append(["cloudflare", cf_status, None, None, None, None])
        for d in report.cloudflare:
            rows.append(["cloudflare", cf_status, d["object"], d["path"], compact(d["expected"]), compact(d["live"])])
    heal = "healing" if report.heal else "report only"
    say(f"drift of {ctx.app.name}, checked {report.checked_at:%Y-%m-%d %H:%M:%SZ} ({heal})")
    say(table(["REGION", "STATUS", "OBJECT", "PATH", "EXPECTED", "LIVE"], rows))
    for r in report.regions:
        if r.detail:  # why a region could not be checked, or that the config changed since
            say(f"  {r.region}: {r.detail}")
        for f in r.heal_failures:
            say(f"  {r.region}: could not heal {f['object']}: {f['reason']}: {f['detail']}")
