"""Release records and the decisions taken on them.

A region's release record lives in its cluster (a ConfigMap in the app's namespace, see
`shared.adapters.kube`): the newest releases first, each with its image, trigger, time,
manifest hash and outcome. It is what makes deploy_region idempotent (a duplicate of
the applied digest makes no writes), ordered (an older push never replaces a newer
release), and what rollback and drift checks read. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from shared.contracts import (
    MAX_EVENT_ID_LENGTH,
    MAX_REQUESTED_BY_LENGTH,
    MAX_TAG_LENGTH,
    DeployRequest,
    ImageRef,
    Trigger,
)
from shared.manifest_sources import RESERVED_CONFIGMAP_PREFIX

__all__ = [
    "IMAGE_NOT_ALLOWED",
    "ISSUED_AT_ANNOTATION",
    "MAX_RECORD_BYTES",
    "RELEASE_ANNOTATION",
    "Action",
    "Decision",
    "Release",
    "ReleaseOrder",
    "ReleaseRecord",
    "decide",
    "record_name",
    "release_order",
    "release_stamp",
    "resolve_previous",
    "stamp_order",
    "stamped",
]

ReleaseStatus = Literal["applying", "progressing", "succeeded", "failed", "superseded"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "superseded"})
ROLLBACK_SUFFIX = "-rb"
NEWER_RELEASE_CLAIMED = "newer_release_claimed"
# A request names an image outside the app's repository: never applied, whatever its kind.
IMAGE_NOT_ALLOWED = "image_not_allowed"

# The most a release record may weigh, serialized. Kubernetes refuses a ConfigMap over
# 1 MiB, and a refused record write stops every later release in the region; the oldest
# entries go first when the record would grow past this (after rollout.history_limit).
MAX_RECORD_BYTES = 256 * 1024
# Records written before messages were bounded may hold longer trigger strings: they are
# cut to the bounds on reading, so such a record stays readable (RecordUnreadable would
# stop the region until an operator repaired it).
_TRIGGER_BOUNDS = {"event_id": MAX_EVENT_ID_LENGTH, "tag": MAX_TAG_LENGTH, "requested_by": MAX_REQUESTED_BY_LENGTH}

# Releases are ordered by when their triggering event was issued; the release id breaks
# ties, so an automatic rollback (`<id>-rb`, same issued_at) orders after what it replaces.
ReleaseOrder = tuple[datetime, str]


def release_order(issued_at: datetime, release_id: str) -> ReleaseOrder:
    return (issued_at, release_id)


class Release(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    release_id: str
    kind: Literal["deploy", "rollback"]
    image: str
    trigger: Trigger
    issued_at: datetime
    manifest_hash: str
    status: ReleaseStatus
    applied_at: datetime  # when it was claimed (its apply follows)
    # When its apply finished: geodeploy's own progress deadline (StatefulSets, DaemonSets,
    # a Deployment short of its PDB) counts from here, so a delivery that claimed and then
    # waited (a missing grant, a crash) does not eat the rollout's time.
    rolled_out_from: datetime | None = None
    # When its rollout completed, if its wave soaks (config gates[].soak_seconds): the
    # release succeeds only once it has stayed healthy that long from here.
    soaked_from: datetime | None = None
    finished_at: datetime | None = None
    reason: str = ""
    # For rollbacks: the release this one replaced (automatic rollbacks name the failed one).
    rollback_of: str | None = None
    # False for a deploy to named regions: no later wave follows it (nor waits for it at a gate).
    follow_waves: bool = True
    # The newest request that asked for this same image and manifest (a duplicate, e.g.
    # another tag of the digest, or the same digest pushed again): the release stands for
    # it too, so a request issued before it is older than this release.
    confirmed_by: str | None = None
    confirmed_at: datetime | None = None

    @field_validator("trigger", mode="before")
    @classmethod
    def _fit_older_triggers(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {
            k: v[: _TRIGGER_BOUNDS[k]] if k in _TRIGGER_BOUNDS and isinstance(v, str) else v for k, v in value.items()
        }

    @property
    def order(self) -> ReleaseOrder:
        return release_order(self.issued_at, self.release_id)

    @property
    def claim_order(self) -> ReleaseOrder:
        """The order a request must beat to replace this release (its own, or that of the
        newest duplicate request it stands for)."""
        if self.confirmed_at is None or self.confirmed_by is None:
            return self.order
        return max(self.order, release_order(self.confirmed_at, self.confirmed_by))

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


class ReleaseRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    history: tuple[Release, ...] = ()  # newest first
    # The objects geodeploy has applied in the region and not pruned since (object_id):
    # grown with each claim before its apply, cut back to the release's own after its
    # prune, so an object removed from the manifests is found again after any crash.
    inventory: tuple[str, ...] = ()

    @property
    def current(self) -> Release | None:
        return self.history[0] if self.history else None

    def find(self, release_id: str) -> Release | None:
        return next((r for r in self.history if r.release_id == release_id), None)

    def standing_for(self, release_id: str, image: str | None, order: ReleaseOrder) -> Release | None:
        """The entry that stands for a deploy: its own, or else a deploy of the same image
        claimed or confirmed at or after it (one digest pushed under several tags is
        several releases, of which each region records the first it saw). An older
        release of the same image does not: after v1, v2 and v1 again, the first v1 is
        not the third."""
        return (
            self.find(release_id)
            # Confirmed by the push itself, whatever it is (a rollback to that same image too).
            or next((r for r in self.history if r.confirmed_by == release_id), None)
            or next(
                (
                    r
                    for r in self.history
                    if r.image == image and r.kind == "deploy" and not r.rollback_of and r.claim_order >= order
                ),
                None,
            )
        )

    def with_release(self, release: Release, limit: int) -> ReleaseRecord:
        """The record with `release` claimed as the newest entry (replacing one with its
        id). Every other unfinished release is superseded by the claim, so it ends even
        if its own call never writes again (it died, or its writes are refused)."""
        rest = tuple(
            r
            if r.finished or r.release_id == release.release_id
            else r.model_copy(
                update={"status": "superseded", "finished_at": release.applied_at, "reason": NEWER_RELEASE_CLAIMED}
            )
            for r in self.history
            if r.release_id != release.release_id
        )
        history = ((release, *rest))[:limit]
        return self.model_copy(update={"history": history}).within_size(keep=release.release_id)

    def updated(self, release: Release) -> ReleaseRecord:
        history = tuple(release if r.release_id == release.release_id else r for r in self.history)
        return self.model_copy(update={"history": history}).within_size(keep=release.release_id)

    def with_inventory(self, objects: Iterable[str]) -> ReleaseRecord:
        return self.model_copy(update={"inventory": tuple(sorted(set(objects)))})

    def within_size(self, keep: str) -> ReleaseRecord:
        """The record without its oldest entries (never the newest, nor `keep`) until it
        serializes to at most MAX_RECORD_BYTES."""
        history = list(self.history)
        sizes = [len(r.model_dump_json().encode()) for r in history]
        # The record's JSON is its entries, a comma between each two, and the rest of it.
        rest = len(self.model_copy(update={"history": ()}).model_dump_json().encode())
        total = sum(sizes) + len(sizes) + rest
        for index in range(len(history) - 1, 0, -1):
            if total <= MAX_RECORD_BYTES:
                break
            if history[index].release_id != keep:
                total -= sizes[index] + 1
                del history[index]
        return self if len(history) == len(self.history) else self.model_copy(update={"history": tuple(history)})

    def last_good(self, excluding_image: str, repository: str) -> Release | None:
        """The newest release that rolled out fine and runs a different image of
        `repository`: a rollback never returns to an image of another repository, even
        one the history holds from an older config."""
        return next(
            (
                r
                for r in self.history
                if r.status == "succeeded"
                and r.image != excluding_image
                and ImageRef.parse(r.image).repository == repository
            ),
            None,
        )

    def knows_image(self, image: str) -> bool:
        return any(r.image == image for r in self.history)

    def rollback_for(self, release_id: str) -> Release | None:
        """The automatic rollback that followed `release_id`, if one was claimed."""
        return next((r for r in self.history if r.rollback_of == release_id and r.kind == "rollback"), None)


class Action(StrEnum):
    APPLY = "apply"  # write the manifests and a new release entry
    RESUME = "resume"  # our own release, redelivered: finish it (or report how it ended)
    DUPLICATE = "duplicate"  # this image and manifest are already the release: no writes
    # A newer release is recorded. If our own release was claimed before it and never
    # finished, `own` names it: it is marked superseded, and nothing of ours is applied.
    SUPERSEDED = "superseded"
    REJECT = "reject"  # cannot be done (e.g. no previous release to roll back to)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    image: str | None = None  # the image to apply or resume
    release: Release | None = None  # the release to resume, or the one that supersedes
    own: Release | None = None  # SUPERSEDED: our unfinished release, to mark superseded
    confirm: bool = False  # DUPLICATE: the request is newer than the release; record it on it


def decide(
    request: DeployRequest,
    record: ReleaseRecord,
    app_repository: str,
    manifest_hash_of: Callable[[str], str],
) -> Decision:
    """What deploy_region does with `request` given the region's release record.

    `manifest_hash_of(image)` is the hash that image's rendering has now, so a changed
    config with the same image is a new release, not a duplicate.
    """
    current = record.current
    own = record.find(request.release_id)
    if own is not None:
        # A redelivery of a request we already took on. What is left to finish is its
        # automatic rollback, if one was claimed, else the release itself.
        active = record.rollback_for(own.release_id) or own
        if current is not None and current.release_id != active.release_id and current.claim_order > active.order:
            # A newer release was claimed on top of ours: never apply ours again.
            if active.finished:
                return Decision(Action.RESUME, "already_finished", active.image, active)
            return Decision(Action.SUPERSEDED, NEWER_RELEASE_CLAIMED, release=current, own=active)
        reason = "rollback_in_progress" if active is not own else "redelivered"
        return Decision(Action.RESUME, reason, active.image, active)

    image = request.image
    if request.kind == "rollback" and image is None:
        previous = record.last_good(current.image, app_repository) if current else None
        if previous is None:
            return Decision(Action.REJECT, "no_previous_release")
        image = previous.image

    if image is None:  # the contract allows it only for rollbacks; never act on a guess
        return Decision(Action.REJECT, "no_image")
    # Whoever may publish on a deploy topic can name any image: only the app's own
    # repository runs (a deploy, a rollback, even one to an image the region ran before).
    if ImageRef.parse(image).repository != app_repository:
        return Decision(Action.REJECT, IMAGE_NOT_ALLOWED, image)
    # Checked before ordering: one digest pushed under several tags arrives as several
    # requests in any order, and all but the first are duplicates, not "older".
    if (
        current is not None
        and current.image == image
        and current.manifest_hash == manifest_hash_of(image)
        and current.status != "failed"
    ):
        # A newer request for what already runs: the release now stands for it, so an
        # older push delivered after it cannot replace it (the flow records that).
        newer = release_order(request.issued_at, request.release_id) > current.claim_order
        return Decision(Action.DUPLICATE, "already_released", image, current, confirm=newer)
    # Every kind is ordered: a rollback published before the current release was issued
    # and delivered late must not undo it either.
    if current is not None and release_order(request.issued_at, request.release_id) < current.claim_order:
        return Decision(Action.SUPERSEDED, "newer_release_recorded", release=current)
    return Decision(Action.APPLY, "new_release", image)


def resolve_previous(records: list[ReleaseRecord], repository: str) -> str | None:
    """The image a rollback to "previous" returns every region to: the last good release
    before the newest one any region runs. Resolved once for the whole fleet, so regions
    a halted wave never reached are not sent one release further back."""
    holders = [r for r in records if r.current is not None]
    if not holders:
        return None
    newest = max(holders, key=lambda r: (r.current.issued_at, r.current.applied_at))  # type: ignore[union-attr]
    assert newest.current is not None
    previous = newest.last_good(newest.current.image, repository)
    return previous.image if previous else None


# --- the stamp on the Deployment ----------------------------------------------------------
# Every apply writes the release it belongs to onto the Deployment, guarded by the
# resourceVersion read just before: two calls racing on a region can then never let the
# older release's apply land after the newer one's (the loser sees the newer stamp).

RELEASE_ANNOTATION = "geodeploy.dev/release"
ISSUED_AT_ANNOTATION = "geodeploy.dev/issued-at"


def release_stamp(release: Release) -> dict[str, str]:
    return {RELEASE_ANNOTATION: release.release_id, ISSUED_AT_ANNOTATION: release.issued_at.isoformat()}


def stamp_order(obj: dict[str, Any] | None) -> ReleaseOrder | None:
    """The order of the release whose apply last wrote `obj`; None if unstamped or unreadable."""
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    release_id, issued = annotations.get(RELEASE_ANNOTATION), annotations.get(ISSUED_AT_ANNOTATION)
    if not release_id or not issued:
        return None
    try:
        issued_at = datetime.fromisoformat(str(issued).replace("Z", "+00:00"))
    except ValueError:
        return None
    if issued_at.tzinfo is None:
        return None
    return release_order(issued_at, str(release_id))


def stamped(
    obj: dict[str, Any], release: Release, live: dict[str, Any] | None, *, pod_template: bool = True
) -> dict[str, Any]:
    """`obj` carrying `release`'s stamp and, if `live` is given, its resourceVersion as
    the guard (the API server answers 409 if the object moved since it was read).
    `pod_template`: stamp the pod template too, so the release restarts its pods."""
    metadata = dict(obj["metadata"])
    metadata["annotations"] = {**(metadata.get("annotations") or {}), **release_stamp(release)}
    if live is not None:
        metadata["resourceVersion"] = live["metadata"]["resourceVersion"]
    out = {**obj, "metadata": metadata}
    template = (obj.get("spec") or {}).get("template")
    if template is not None and pod_template:
        # On the pod template too: every release is a rollout of its own, even one that
        # re-applies the spec of a release that failed in place (a retried digest), whose
        # old ProgressDeadlineExceeded would otherwise never clear.
        pod_meta = dict(template.get("metadata") or {})
        pod_meta["annotations"] = {**(pod_meta.get("annotations") or {}), RELEASE_ANNOTATION: release.release_id}
        out["spec"] = {**obj["spec"], "template": {**template, "metadata": pod_meta}}
    return out


def record_name(app_name: str) -> str:
    """The ConfigMap that holds an app's release record in each region."""
    return f"{RESERVED_CONFIGMAP_PREFIX}{app_name}"
