"""`promote`: let the release waiting at a gate (config `gates`) into the next wave, by
publishing a promote control message, as an operator would by hand. What waits is read
here first, from every region's release record, as on_control will read it."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from cli.context import Context, build_context
from cli.errors import OperationFailed, Unavailable
from cli.exit_codes import ExitCode
from cli.output import Output
from cli.snapshot import RegionSnapshot, read_regions
from cli.views import say, short_image

if TYPE_CHECKING:
    from shared.config import Region
    from shared.gates import Promotion

__all__ = ["promotion_json", "promotion_text", "run", "waiting"]


def run(args: argparse.Namespace, out: Output) -> int:
    from shared.contracts import ControlMessage
    from shared.gates import Hold

    ctx = build_context(args)
    snapshots = read_regions(ctx, ctx.config.regions)
    unread = [s.region.name for s in snapshots if not s.reachable]
    if unread:
        raise Unavailable(f"{', '.join(unread)} cannot be read: what waits at a gate is decided on every region")
    promotion = waiting(ctx, snapshots)
    if promotion is None:
        raise OperationFailed(f"nothing of {ctx.app.name} waits at a gate")
    if Hold.SOAK in promotion.holds:
        raise OperationFailed(f"{promotion_text(promotion)}: a soak cannot be skipped; promote once it is over")
    requested_by = (os.environ.get("USER") or "cli")[:200]
    message = ControlMessage(
        version=1,
        action="promote",
        app=ctx.app.name,
        target=promotion.release.release_id,
        wave=promotion.wave,
        requested_by=requested_by,
    )
    message_id = ctx.publisher.publish(ctx.config.topics.control, message.to_bytes())
    out.result({"app": ctx.app.name, "message_id": message_id, "promotion": promotion_json(promotion)})
    say(f"promote requested for {ctx.app.name}: {promotion_text(promotion)}: message {message_id}")
    return ExitCode.OK


def waiting(ctx: Context, snapshots: list[RegionSnapshot], *, ask_cloudflare: bool = False) -> Promotion | None:
    """The release waiting at a gate, by the records read (None if a region was not read:
    it may have claimed a newer release), and, if asked, Cloudflare's verdict on the
    wave's pools, as on_deploy_result reads it."""
    from shared.edge_health import EdgeHealth
    from shared.flows.promotion import waiting_promotion
    from shared.status import pools_by_name

    if any(not s.reachable for s in snapshots) or len(snapshots) != len(ctx.config.regions):
        return None

    def edge(region: Region) -> bool:
        pool = pools_by_name(ctx.cloudflare.list_pools()).get(region.cloudflare.pool)
        return pool is not None and ctx.cloudflare.edge_health(str(pool["id"])) is EdgeHealth.HEALTHY

    records = {s.region.name: s.record for s in snapshots}
    return waiting_promotion(ctx.config, ctx.app, records, edge if ask_cloudflare else None)


def promotion_text(p: Promotion) -> str:
    holds = ", ".join(h.value for h in p.holds) or "nothing (being promoted)"
    soaking = f" (soaking: {', '.join(p.soaking)})" if p.soaking else ""
    detail = f" ({p.edge_detail})" if p.edge_detail else ""
    release = f"{p.release.release_id} ({short_image(p.release.image)})"
    return f"{release} at the gate {p.at_gate}, held by {holds}{soaking}{detail}"


def promotion_json(p: Promotion | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "release_id": p.release.release_id,
        "image": p.release.image,
        "wave": p.wave,
        "next_wave": p.next_wave,
        "holds": [h.value for h in p.holds],
        "soaking": list(p.soaking),
        "since": p.since.isoformat() if p.since else None,
        "detail": p.edge_detail,
    }
