"""`render` (what a release would apply) and `diff` (what it would change in a live cluster).
Neither writes anything: diff's server-side apply is a dry run.

diff's exit code says what a script needs to know: 0 nothing would change, 1 something
would (created, changed or pruned), 2 the API server would reject an object, 3 the
cluster did not answer (nothing is known)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from cli.context import Context, build_context
from cli.errors import Unavailable, UsageError
from cli.exit_codes import ExitCode
from cli.output import Output
from cli.views import compact, image_fields, note, say

if TYPE_CHECKING:
    from shared.adapters.kube import KubeClient
    from shared.rendering import RenderedRelease

__all__ = ["DiffAction", "ObjectDiff", "hide_secret_values", "run"]

# What diff shows instead of a Secret's value (as `kubectl diff` masks them): that it
# changes is what a preview needs, and CI logs keep what they are given.
SECRET_VALUE = "<secret value>"
_SECRET_FIELDS = ("data", "stringData")


class DiffAction(StrEnum):
    """What a release would do to one object."""

    CREATE = "create"  # it does not exist
    UNCHANGED = "unchanged"
    CHANGE = "change"  # some fields would change (`changes` lists them)
    PRUNE = "prune"  # an earlier release applied it, this one does not render it: deleted
    REJECTED = "rejected"  # the API server would refuse the apply (`detail` says why)

    @property
    def changes_something(self) -> bool:
        return self is not DiffAction.UNCHANGED


@dataclass(frozen=True)
class ObjectDiff:
    kind: str
    namespace: str | None
    name: str
    action: DiffAction
    # Each changed field: {"path", "live", "expected"}; "<absent>" for a field not set.
    changes: list[dict[str, Any]] = field(default_factory=list)
    detail: str = ""

    @property
    def key(self) -> str:
        """`Deployment/shop/shop`, as shared.rendering.object_key names it."""
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"

    def as_json(self) -> dict[str, Any]:
        return {
            "object": self.key,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "action": str(self.action),
            "changes": self.changes,
            "detail": self.detail,
        }


def run(args: argparse.Namespace, out: Output) -> int:
    ctx = build_context(args)
    rendered = _render(ctx, args)
    if args.command == "render":
        return render(ctx, args, out, rendered)
    return diff(ctx, args, out, rendered)


def _render(ctx: Context, args: argparse.Namespace) -> RenderedRelease:
    from shared.rendering import render_release

    return render_release(ctx.config, ctx.app, ctx.region(args.region), ctx.image(args.image))


def _release_fields(ctx: Context, args: argparse.Namespace, rendered: RenderedRelease) -> dict[str, Any]:
    """What render's and diff's documents both start with."""
    return {
        "app": ctx.app.name,
        "region": ctx.region(args.region).name,
        "namespace": ctx.app.namespace,
        **image_fields(ctx.image(args.image).reference),
        "manifest_hash": rendered.manifest_hash,
    }


def render(ctx: Context, args: argparse.Namespace, out: Output, rendered: RenderedRelease) -> int:
    out.result(
        {**_release_fields(ctx, args, rendered), "notes": list(ctx.app.source.notes), "objects": rendered.objects}
    )
    if out.json:
        return ExitCode.OK
    say(rendered.to_yaml().rstrip("\n"))
    for change in ctx.app.source.notes:  # what loading the app's own manifests changed
        note(change)
    note(f"manifest hash: {rendered.manifest_hash}")
    return ExitCode.OK


def diff(ctx: Context, args: argparse.Namespace, out: Output, rendered: RenderedRelease) -> int:
    region = ctx.region(args.region)
    kube = ctx.connect(region)
    if not out.json:
        say(f"{ctx.app.name} in {region.name}: {ctx.image(args.image).reference}")
        say(f"manifest hash {rendered.manifest_hash}")
        say()
    found: list[ObjectDiff] = []
    for desired in rendered.objects:
        found.append(_compare(kube, desired))
        _show(out, found[-1])
    for pruned in _to_prune(kube, ctx, rendered):
        found.append(pruned)
        _show(out, pruned)
    changed = sum(d.action.changes_something for d in found)
    counts = {str(action): sum(d.action is action for d in found) for action in DiffAction}
    out.result(
        {
            **_release_fields(ctx, args, rendered),
            "objects": [d.as_json() for d in found],
            "counts": counts,
            "total": len(found),
            "changed": changed,
        }
    )
    if not out.json:
        say()
        say(f"{changed} of {len(found)} objects would change" if changed else "nothing would change")
    rejected = counts[DiffAction.REJECTED]
    if rejected:
        raise UsageError(f"{rejected} object(s) would be rejected by the API server in {region.name}")
    return ExitCode.FOUND if changed else ExitCode.OK


def _show(out: Output, d: ObjectDiff) -> None:
    from shared.drift import ABSENT

    if out.json:
        return
    say(f"{d.action:<10} {d.key}")
    if d.detail:
        say(f"    {d.detail}")
    for c in d.changes:
        say(f"    {c['path']}")
        if c["live"] != ABSENT:
            say(f"      - {compact(c['live'])}")
        if c["expected"] != ABSENT:
            say(f"      + {compact(c['expected'])}")


def _to_prune(kube: KubeClient, ctx: Context, rendered: RenderedRelease) -> list[ObjectDiff]:
    """What a release of `rendered` would delete: objects an earlier release applied (the
    release record's inventory) that it no longer renders, and that still exist."""
    from shared.adapters.release_store import ReleaseStore
    from shared.errors import RecordUnreadable
    from shared.rendering import parse_object_id

    try:
        record, _ = ReleaseStore(kube, ctx.app).read()
    except RecordUnreadable as e:  # what it would prune cannot be known
        raise Unavailable(f"the release record cannot be read: {e}") from None
    found = []
    for removed in sorted(set(record.inventory) - set(rendered.inventory)):
        api_version, kind, name = parse_object_id(removed)
        if kube.get(api_version, kind, name, ctx.app.namespace) is not None:
            found.append(ObjectDiff(kind, ctx.app.namespace, name, DiffAction.PRUNE))
    return found


def _compare(kube: KubeClient, desired: dict[str, Any]) -> ObjectDiff:
    from shared.adapters.kube import KubeRejected
    from shared.drift import compare_object
    from shared.rendering import object_key

    meta = desired["metadata"]
    found = ObjectDiff(desired["kind"], meta.get("namespace"), meta["name"], DiffAction.UNCHANGED)
    try:
        live = kube.get(desired["apiVersion"], desired["kind"], meta["name"], meta.get("namespace"))
        if live is None:
            return ObjectDiff(found.kind, found.namespace, found.name, DiffAction.CREATE)
        # The dry run gives the expected values in the server's own normal form (defaults,
        # quantities), so only real changes show.
        dry_run = kube.apply(desired, dry_run=True)
    except KubeRejected as e:  # the API server would refuse the apply itself
        return ObjectDiff(
            found.kind, found.namespace, found.name, DiffAction.REJECTED, detail=" ".join(e.detail.split())
        )
    differences = compare_object(object_key(desired), desired, live, dry_run)
    if not differences:
        return found
    changes = [{"path": d.path, "live": d.live, "expected": d.expected} for d in differences]
    return ObjectDiff(
        found.kind, found.namespace, found.name, DiffAction.CHANGE, hide_secret_values(found.kind, changes)
    )


def hide_secret_values(kind: str, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A Secret's changed values replaced by SECRET_VALUE (an absent one stays absent)."""
    from shared.drift import ABSENT

    if kind != "Secret":
        return changes

    def hidden(value: Any) -> Any:
        return value if value == ABSENT else SECRET_VALUE

    return [
        {**c, "live": hidden(c["live"]), "expected": hidden(c["expected"])}
        if c["path"].split(".", 1)[0].split("[", 1)[0] in _SECRET_FIELDS
        else c
        for c in changes
    ]
