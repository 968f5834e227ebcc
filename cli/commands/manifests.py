"""`render` (what a release would apply) and `diff` (what it would change in a live cluster).
Neither writes anything: diff's server-side apply is a dry run."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from cli.context import Context, build_context
from cli.errors import OperationFailed
from cli.views import compact, note, say

if TYPE_CHECKING:
    from shared.adapters.kube import KubeClient
    from shared.rendering import RenderedRelease

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    ctx = build_context(args)
    rendered = _render(ctx, args)
    if args.command == "render":
        say(rendered.to_yaml().rstrip("\n"))
        for change in ctx.app.source.notes:  # what loading the app's own manifests changed
            note(change)
        note(f"manifest hash: {rendered.manifest_hash}")
        return 0
    return diff(ctx, args, rendered)


def _render(ctx: Context, args: argparse.Namespace) -> RenderedRelease:
    from shared.rendering import render_release

    return render_release(ctx.config, ctx.app, ctx.region(args.region), ctx.image(args.image))


def diff(ctx: Context, args: argparse.Namespace, rendered: RenderedRelease) -> int:
    from shared.adapters.kube import KubeRejected
    from shared.rendering import object_key

    region = ctx.region(args.region)
    kube = ctx.connect(region)
    image = ctx.image(args.image)
    say(f"{ctx.app.name} in {region.name}: {image.reference}")
    say(f"manifest hash {rendered.manifest_hash}")
    say()
    changed = rejected = 0
    for desired in rendered.objects:
        name = object_key(desired)
        try:
            verdict, lines = _compare(kube, desired, name)
        except KubeRejected as e:  # the API server would refuse the apply itself
            verdict, lines = "rejected", [f"    {' '.join(e.detail.split())}"]
            rejected += 1
        changed += verdict != "unchanged"
        say(f"{verdict:<10} {name}")
        for line in lines:
            say(line)
    pruned = _to_prune(kube, ctx, rendered)
    for found in pruned:
        say(f"{'prune':<10} {found}")
    changed += len(pruned)
    say()
    say(
        f"{changed} of {len(rendered.objects) + len(pruned)} objects would change"
        if changed
        else "nothing would change"
    )
    if rejected:
        raise OperationFailed(f"{rejected} object(s) would be rejected by the API server in {region.name}")
    return 0


def _to_prune(kube: KubeClient, ctx: Context, rendered: RenderedRelease) -> list[str]:
    """What a release of `rendered` would delete: objects an earlier release applied (the
    release record's inventory) that it no longer renders, and that still exist."""
    from shared.adapters.release_store import ReleaseStore
    from shared.rendering import parse_object_id

    record, _ = ReleaseStore(kube, ctx.app).read()
    found = []
    for removed in sorted(set(record.inventory) - set(rendered.inventory)):
        api_version, kind, name = parse_object_id(removed)
        if kube.get(api_version, kind, name, ctx.app.namespace) is not None:
            found.append(f"{kind}/{ctx.app.namespace}/{name}")
    return found


def _compare(kube: KubeClient, desired: dict[str, Any], name: str) -> tuple[str, list[str]]:
    from shared.drift import ABSENT, compare_object

    meta = desired["metadata"]
    live = kube.get(desired["apiVersion"], desired["kind"], meta["name"], meta.get("namespace"))
    if live is None:
        return "create", []
    # The dry run gives the expected values in the server's own normal form (defaults,
    # quantities), so only real changes show.
    dry_run = kube.apply(desired, dry_run=True)
    differences = compare_object(name, desired, live, dry_run)
    if not differences:
        return "unchanged", []
    lines = []
    for d in differences:
        lines.append(f"    {d.path}")
        if d.live != ABSENT:
            lines.append(f"      - {compact(d.live)}")
        if d.expected != ABSENT:
            lines.append(f"      + {compact(d.expected)}")
    return "change", lines
