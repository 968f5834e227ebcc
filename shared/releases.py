"""Release records and the decisions taken on them.

A region's release record lives in its cluster (a ConfigMap in the app's namespace, see
`shared.adapters.kube`): the newest releases first, each with its image, trigger, time,
manifest hash and outcome. It is what makes deploy_region idempotent (a duplicate of
the applied digest makes no writes), ordered (an older push never replaces a newer
release), and what rollback and drift checks read. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shared.contracts import DeployRequest, ImageRef, Trigger

__all__ = ["Action", "Decision", "Release", "ReleaseRecord", "decide", "resolve_previous"]

ReleaseStatus = Literal["applying", "progressing", "succeeded", "failed", "superseded"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "superseded"})


class Release(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    release_id: str
    kind: Literal["deploy", "rollback"]
    image: str
    trigger: Trigger
    issued_at: datetime
    manifest_hash: str
    status: ReleaseStatus
    applied_at: datetime
    finished_at: datetime | None = None
    reason: str = ""
    # For rollbacks: the release this one replaced (automatic rollbacks name the failed one).
    rollback_of: str | None = None


class ReleaseRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    history: tuple[Release, ...] = ()  # newest first

    @property
    def current(self) -> Release | None:
        return self.history[0] if self.history else None

    def find(self, release_id: str) -> Release | None:
        return next((r for r in self.history if r.release_id == release_id), None)

    def with_release(self, release: Release, limit: int) -> ReleaseRecord:
        """The record with `release` as the newest entry (replacing one with its id)."""
        rest = tuple(r for r in self.history if r.release_id != release.release_id)
        return ReleaseRecord(history=((release, *rest))[:limit])

    def updated(self, release: Release) -> ReleaseRecord:
        return ReleaseRecord(history=tuple(release if r.release_id == release.release_id else r for r in self.history))

    def last_good(self, excluding_image: str) -> Release | None:
        """The newest release that rolled out fine and runs a different image."""
        return next((r for r in self.history if r.status == "succeeded" and r.image != excluding_image), None)

    def knows_image(self, image: str) -> bool:
        return any(r.image == image for r in self.history)


class Action(StrEnum):
    APPLY = "apply"  # write the manifests and a new release entry
    RESUME = "resume"  # our own release, redelivered: finish it without new writes
    DUPLICATE = "duplicate"  # this image and manifest are already the release: no writes
    SUPERSEDED = "superseded"  # a newer release is already recorded: no writes
    REJECT = "reject"  # cannot be done (e.g. no previous release to roll back to)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    image: str | None = None  # the image to apply or resume
    release: Release | None = None  # the release to resume, or the one that supersedes


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
        # A redelivery of a request we already took on. If an automatic rollback
        # followed it, the rollback is what is left to finish.
        if current is not None and current.rollback_of == own.release_id:
            return Decision(Action.RESUME, "rollback_in_progress", current.image, current)
        return Decision(Action.RESUME, "redelivered", own.image, own)

    image = request.image
    if request.kind == "rollback":
        if image is None:
            previous = record.last_good(current.image) if current else None
            if previous is None:
                return Decision(Action.REJECT, "no_previous_release")
            image = previous.image
        elif not record.knows_image(image) and ImageRef.parse(image).repository != app_repository:
            # Rollback may return to anything this region ran, or to the app's own
            # repository; never to an arbitrary image someone typed.
            return Decision(Action.REJECT, "image_not_allowed", image)

    assert image is not None  # deploy requests always name an image (contract)
    # Checked before ordering: one digest pushed under several tags arrives as several
    # requests in any order, and all but the first are duplicates, not "older".
    if (
        current is not None
        and current.image == image
        and current.manifest_hash == manifest_hash_of(image)
        and current.status != "failed"
    ):
        return Decision(Action.DUPLICATE, "already_released", image, current)
    if request.kind == "deploy" and current is not None and request.issued_at < current.issued_at:
        return Decision(Action.SUPERSEDED, "newer_release_recorded", release=current)
    return Decision(Action.APPLY, "new_release", image)


def resolve_previous(records: list[ReleaseRecord]) -> str | None:
    """The image a rollback to "previous" returns every region to: the last good release
    before the newest one any region runs. Resolved once for the whole fleet, so regions
    a halted wave never reached are not sent one release further back."""
    holders = [r for r in records if r.current is not None]
    if not holders:
        return None
    newest = max(holders, key=lambda r: (r.current.issued_at, r.current.applied_at))  # type: ignore[union-attr]
    assert newest.current is not None
    previous = newest.last_good(excluding_image=newest.current.image)
    return previous.image if previous else None
