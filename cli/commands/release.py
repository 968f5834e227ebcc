"""`deploy` and `rollback`: publish a control message, as an operator would by hand, and
with --wait follow it region by region until every targeted region has an outcome.

The message is checked here first with the same planning on_control runs
(`shared.flows.control.plan_control`), so a bad target fails at once with its reason
instead of being rejected in a function's log."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from cli.context import Context, build_context
from cli.errors import OperationFailed, Unavailable, UsageError
from cli.exit_codes import ExitCode
from cli.output import Output
from cli.snapshot import read_regions
from cli.views import image_fields, say, short_image

if TYPE_CHECKING:
    from shared.contracts import ControlMessage, DeployRequest, ImageRef

__all__ = ["run"]


def run(args: argparse.Namespace, out: Output) -> int:
    ctx = build_context(args)
    if args.wait and args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    regions = [r.name for r in ctx.regions(args.regions)] if args.regions else None
    if args.command == "deploy":
        target = ctx.image(args.image).reference
        message = _message(ctx, "deploy", target, regions)
        previous = None
        what = f"deploy of {short_image(target)}"
        where = ", ".join(regions) if regions else _wave_text(ctx)
    else:
        target = args.to.strip()
        if target != "previous":
            target = ctx.image(target, option="--to").reference
        message = _message(ctx, "rollback", target, regions)
        previous = _resolve_previous(ctx, regions) if target == "previous" else None
        what = f"rollback to {short_image(target) if previous is None else previous.short}"
        where = ", ".join(regions) if regions else "every region"
    _check(ctx, message, previous)
    image = previous.reference if previous is not None else message.target  # what the regions will run

    def publish() -> str:
        message_id = ctx.publisher.publish(ctx.config.topics.control, message.to_bytes())
        # Set at once: a wait that is interrupted or fails still names what was published.
        out.result(_document(ctx, message, image, message_id, wait=None))
        say(f"{what} requested for {ctx.app.name} in {where}: message {message_id}")
        return message_id

    if not args.wait:
        publish()
        return ExitCode.OK

    from cli.follow import Follower
    from cli.results import ResultFeed

    with ResultFeed(ctx.config.project, ctx.config.topics.results, ctx.config.name) as feed:
        message_id = publish()
        stages = _stages(ctx, message, message_id, previous)
        follower = Follower(ctx, feed, message_id=message_id, stages=stages, title=what, summary=not out.json)
        report = follower.run(args.timeout)
    out.result(_document(ctx, message, image, message_id, wait=report.as_json()))
    if report.failed:
        raise OperationFailed(f"{what} did not succeed: " + ", ".join(f"{r.region} {r.outcome}" for r in report.failed))
    return ExitCode.OK


def _document(
    ctx: Context, message: ControlMessage, image: str | None, message_id: str, wait: dict[str, Any] | None
) -> dict[str, Any]:
    """deploy's and rollback's JSON document (docs/cli.md, "deploy")."""
    return {
        "app": ctx.app.name,
        "action": message.action,
        "target": message.target,
        **image_fields(image),
        "regions": message.regions,
        "follows_waves": message.action == "deploy" and not message.regions and len(ctx.config.waves) > 1,
        "requested_by": message.requested_by,
        "topic": ctx.config.topics.control,
        "message_id": message_id,
        "wait": wait,
    }


def _message(
    ctx: Context, action: Literal["deploy", "rollback"], target: str, regions: list[str] | None
) -> ControlMessage:
    from shared.contracts import ControlMessage

    requested_by = (os.environ.get("USER") or "cli")[:200]
    return ControlMessage(
        version=1, action=action, app=ctx.app.name, regions=regions, target=target, requested_by=requested_by
    )


def _check(ctx: Context, message: ControlMessage, previous: ImageRef | None) -> None:
    """What on_control would reject (an image of another repository, ...) fails here."""
    from shared.errors import InvalidMessage
    from shared.flows.control import plan_control

    try:
        plan_control(
            message, event_id="cli-check", published_at=datetime.now(UTC), config=ctx.config, previous=previous
        )
    except InvalidMessage as e:
        raise UsageError(f"{message.action} refused: {e.detail or e.reason}") from None


def _resolve_previous(ctx: Context, regions: list[str] | None) -> ImageRef:
    """The image 'previous' means, resolved across the target regions as on_control does,
    so that an impossible rollback is refused before anything is published."""
    from shared.contracts import ImageRef
    from shared.flows.control import PREVIOUS_NEEDS_EVERY_REGION
    from shared.releases import resolve_previous

    snapshots = read_regions(ctx, ctx.regions(regions))
    unread = [s.region.name for s in snapshots if not s.reachable]
    if unread:
        raise Unavailable(f"{', '.join(unread)} cannot be read: {PREVIOUS_NEEDS_EVERY_REGION}")
    image = resolve_previous([s.record for s in snapshots], ctx.app.repository)
    if image is None:
        raise OperationFailed(f"nothing to roll back to: no region of {ctx.app.name} has an earlier good release")
    return ImageRef.parse(image)


def _stages(
    ctx: Context, message: ControlMessage, message_id: str, previous: ImageRef | None
) -> list[list[DeployRequest]]:
    """The requests the regions will receive, in the order they receive them: a deploy to
    every region goes wave by wave; named regions and rollbacks all at once."""
    from shared.flows.control import plan_control

    first = plan_control(
        message, event_id=message_id, published_at=datetime.now(UTC), config=ctx.config, previous=previous
    )
    if message.action == "rollback" or message.regions:
        return [first]
    template = first[0]
    return [
        [template.model_copy(update={"region": r.name, "wave": r.wave}) for r in ctx.config.regions_in_wave(wave)]
        for wave in ctx.config.waves
    ]


def _wave_text(ctx: Context) -> str:
    if len(ctx.config.waves) == 1:
        return "every region"
    return "every region, wave by wave"
