"""Rollout evaluation: is a Deployment's rollout done, still going, or failed?

Pure. The rules are kubectl's (`kubectl rollout status`), plus one of ours: a rollout
is only "serving" once at least the PDB's minAvailable pods are available, so a region
is never reported healthy with fewer pods than the disruption budget promises.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = ["RolloutPhase", "RolloutState", "evaluate_rollout"]

PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"


class RolloutPhase(StrEnum):
    COMPLETE = "complete"
    PROGRESSING = "progressing"
    FAILED = "failed"


@dataclass(frozen=True)
class RolloutState:
    phase: RolloutPhase
    reason: str
    message: str
    image: str | None = None
    available: int = 0
    updated: int = 0
    desired: int = 0

    @property
    def done(self) -> bool:
        return self.phase is not RolloutPhase.PROGRESSING


def evaluate_rollout(
    deployment: dict[str, Any] | None, min_available: int, applied_at: datetime | None = None
) -> RolloutState:
    """`applied_at`: when the spec being watched was applied. A ProgressDeadlineExceeded
    condition last updated no later than that belongs to the previous rollout (the
    controller keeps it until a sync shows progress), so it is not this rollout's failure."""
    if deployment is None:
        return RolloutState(RolloutPhase.FAILED, "NotFound", "the Deployment does not exist")
    meta = deployment.get("metadata", {})
    spec = deployment.get("spec", {})
    status = deployment.get("status") or {}
    containers = spec.get("template", {}).get("spec", {}).get("containers", [])
    image = containers[0].get("image") if containers else None
    desired = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas", 0))
    total = int(status.get("replicas", 0))
    available = int(status.get("availableReplicas", 0))

    def state(phase: RolloutPhase, reason: str, message: str) -> RolloutState:
        return RolloutState(phase, reason, message, image, available, updated, desired)

    if int(meta.get("generation", 0)) > int(status.get("observedGeneration", 0)):
        return state(
            RolloutPhase.PROGRESSING, "WaitingForObservation", "waiting for the controller to see the new spec"
        )
    progressing = next((c for c in status.get("conditions", []) if c.get("type") == "Progressing"), None)
    if (
        progressing
        and progressing.get("reason") == PROGRESS_DEADLINE_EXCEEDED
        and (applied_at is None or _later(progressing.get("lastUpdateTime"), applied_at))
    ):
        return state(RolloutPhase.FAILED, PROGRESS_DEADLINE_EXCEEDED, progressing.get("message", "rollout stalled"))
    if updated < desired:
        return state(RolloutPhase.PROGRESSING, "UpdatingReplicas", f"{updated} of {desired} new replicas updated")
    if total > updated:
        return state(
            RolloutPhase.PROGRESSING, "TerminatingOldReplicas", f"{total - updated} old replicas pending termination"
        )
    if available < updated:
        return state(
            RolloutPhase.PROGRESSING, "WaitingForAvailability", f"{available} of {updated} updated replicas available"
        )
    if available < min_available:
        return state(
            RolloutPhase.PROGRESSING, "BelowMinAvailable", f"{available} available, the PDB promises {min_available}"
        )
    return state(RolloutPhase.COMPLETE, "Complete", f"{available} of {desired} replicas available")


def _later(timestamp: str | None, moment: datetime) -> bool:
    """Whether a Kubernetes timestamp (whole seconds) is later than `moment`'s second. A
    deadline this rollout exceeded comes at least progressDeadlineSeconds (>= 10 s) after
    its apply, so a condition from the same second or before is the previous rollout's."""
    if not timestamp:
        return True
    try:
        parsed = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return True
    return parsed > moment.replace(microsecond=0)
