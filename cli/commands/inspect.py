"""Read-only commands: `status` (what runs, how traffic is steered) and `history`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from cli.commands.promote import promotion_json, promotion_text, waiting
from cli.context import Context, build_context
from cli.exit_codes import ExitCode
from cli.output import Output
from cli.snapshot import RegionSnapshot, read_regions
from cli.views import NONE, image_fields, say, short_image, table, trigger_text, when

if TYPE_CHECKING:
    from shared.gates import Promotion
    from shared.releases import Release

__all__ = ["run"]


def run(args: argparse.Namespace, out: Output) -> int:
    ctx = build_context(args)
    if args.command == "status":
        return status(ctx, args, out)
    return history(ctx, args, out)


# --- status ----------------------------------------------------------------------------------


def status(ctx: Context, args: argparse.Namespace, out: Output) -> int:
    """A region that does not answer is part of the answer (`reachable: false`): exit 0."""
    regions = ctx.regions(args.regions)
    snapshots = read_regions(ctx, regions)
    cloudflare = _cloudflare_view(ctx, snapshots) if ctx.steered else None
    promotion = _waiting(ctx, args, snapshots)
    document = _status_json(ctx, snapshots, cloudflare)
    document["waiting_at_gate"] = promotion_json(promotion)
    out.result(document)
    if out.json:
        return ExitCode.OK
    say(f"{ctx.app.name}  (namespace {ctx.app.namespace}, project {ctx.config.project}, config {ctx.config_path.name})")
    say()
    rows = [_region_row(ctx, s) for s in snapshots]
    headers = ["REGION", "IMAGE", "ROLLOUT", "AVAILABLE", "RELEASE", "STATUS", "TRIGGER", "WHEN"]
    say(table(headers, rows))
    for s in snapshots:
        if not s.reachable:
            say(f"  {s.region.name}: {s.error}")
    if promotion is not None:
        from shared.gates import Hold

        say()
        say(f"Waiting at a gate: {promotion_text(promotion)}")
        if Hold.APPROVAL in promotion.holds:
            say("  run `geodeploy promote` to let it into the next wave")
    say()
    if cloudflare is None:
        say(f"Cloudflare: the load balancer steers {ctx.config.cloudflare.app}, not {ctx.app.name}")
    elif cloudflare["error"]:
        say(f"Cloudflare  {ctx.config.cloudflare.hostname}: unavailable: {cloudflare['error']}")
    else:
        say(f"Cloudflare  {ctx.config.cloudflare.hostname}")
        say(
            table(
                ["REGION", "POOL", "ENABLED", "HEALTHY", "REGION HEALTH"],
                [
                    [
                        p["region"],
                        p["pool"] + ("" if p["exists"] else " (missing)"),
                        _yes_no(p["enabled"]),
                        _yes_no(p["healthy"]),
                        _health_text(p["health"]),
                    ]
                    for p in cloudflare["pools"]
                ],
            )
        )
    return ExitCode.OK


def _waiting(ctx: Context, args: argparse.Namespace, snapshots: list[RegionSnapshot]) -> Promotion | None:
    """What waits at a gate: decided on every region, so only when all were read; for
    the app Cloudflare steers, Cloudflare's verdict too."""
    return None if args.regions else waiting(ctx, snapshots, ask_cloudflare=ctx.steered)


def _region_row(ctx: Context, s: RegionSnapshot) -> list[Any]:
    if not s.reachable:
        return [s.region.name, NONE, "unreachable", NONE, NONE, NONE, NONE, NONE]
    current = s.record.current
    if not s.deployed:
        rollout, available, image = "not deployed", NONE, NONE
    else:
        state = s.rollout()
        rollout, available, image = state.phase.value, f"{state.available}/{state.desired}", short_image(state.image)
    if current is None:
        return [s.region.name, image, rollout, available, NONE, NONE, NONE, NONE]
    return [
        s.region.name,
        image,
        rollout,
        available,
        current.release_id,
        current.status,
        trigger_text(current.trigger),
        when(current.finished_at or current.applied_at),
    ]


def _cloudflare_view(ctx: Context, snapshots: list[RegionSnapshot]) -> dict[str, Any]:
    from shared.flows.status import read_pools
    from shared.status import pool_states

    read = read_pools(lambda: ctx.cloudflare, [s.region.cloudflare.pool for s in snapshots])
    rows = [p.as_json() for p in pool_states(read.listed, snapshots, read.verdicts)]
    return {"hostname": ctx.config.cloudflare.hostname, "error": read.error, "pools": rows}


def _status_json(ctx: Context, snapshots: list[RegionSnapshot], cloudflare: dict[str, Any] | None) -> dict[str, Any]:
    regions = []
    for s in snapshots:
        state = s.rollout() if s.reachable and s.deployed else None
        current = s.record.current if s.reachable else None
        regions.append(
            {
                "region": s.region.name,
                "reachable": s.reachable,
                "error": s.error,
                "deployed": s.reachable and s.deployed,
                **image_fields(state.image if state else None),
                "rollout": (
                    {
                        "phase": state.phase.value,
                        "reason": state.reason,
                        "available": state.available,
                        "updated": state.updated,
                        "desired": state.desired,
                    }
                    if state
                    else None
                ),
                "release": current.model_dump(mode="json") if current else None,
            }
        )
    return {
        "app": ctx.app.name,
        "namespace": ctx.app.namespace,
        "project": ctx.config.project,
        "config": str(ctx.config_path),
        "regions": regions,
        "cloudflare": cloudflare,
    }


def _health_text(health: dict[str, Any]) -> str:
    if health["state"] == "unreachable":
        return "unreachable"  # why is shown under the regions
    return f"{health['state']} ({health['reason']}, {health['available']} available)"


def _yes_no(value: Any) -> str:
    return NONE if value is None else ("yes" if value else "no")


# --- history ---------------------------------------------------------------------------------


def history(ctx: Context, args: argparse.Namespace, out: Output) -> int:
    """Like status, a region that does not answer is reported (`reachable: false`): exit 0."""
    if args.limit < 1:
        from cli.errors import UsageError

        raise UsageError("--limit must be at least 1")
    snapshots = read_regions(ctx, ctx.regions(args.regions))
    out.result(
        {
            "app": ctx.app.name,
            "limit": args.limit,
            "regions": [
                {
                    "region": s.region.name,
                    "reachable": s.reachable,
                    "error": s.error,
                    "total": len(s.record.history),
                    "releases": [r.model_dump(mode="json") for r in s.record.history[: args.limit]],
                }
                for s in snapshots
            ],
        }
    )
    if out.json:
        return ExitCode.OK
    headers = ["RELEASE", "KIND", "IMAGE", "STATUS", "REASON", "TRIGGER"]
    headers += ["ISSUED", "APPLIED", "FINISHED", "ROLLBACK OF"]
    for i, s in enumerate(snapshots):
        if i:
            say()
        if not s.reachable:
            say(f"{s.region.name}: unreachable: {s.error}")
            continue
        releases = s.record.history[: args.limit]
        if not releases:
            say(f"{s.region.name}: no releases yet")
            continue
        shown = f"{len(releases)} of {len(s.record.history)}"
        say(f"{s.region.name}  ({ctx.app.name}, {shown} releases, newest first)")
        say(table(headers, [_release_row(r) for r in releases], indent="  "))
    return ExitCode.OK


def _release_row(r: Release) -> list[Any]:
    return [
        r.release_id,
        r.kind,
        short_image(r.image),
        r.status,
        r.reason,
        trigger_text(r.trigger),
        when(r.issued_at),
        when(r.applied_at),
        when(r.finished_at),
        r.rollback_of,
    ]
