"""Rollout evaluation: is a workload's rollout done, still going, or failed?

Pure. The rules are kubectl's (`kubectl rollout status`) for each kind (Deployment,
StatefulSet, DaemonSet), plus two of ours:
- a rollout is only complete once at least the PDB's minAvailable pods are available, so
  a region is never reported healthy with fewer pods than the disruption budget promises;
- a StatefulSet or DaemonSet has no progress deadline of its own (kubectl would wait
  forever), so geodeploy gives it the Deployment's: not complete that long after its
  apply is ProgressDeadlineExceeded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = ["RolloutPhase", "RolloutState", "combine_rollouts", "evaluate_rollout", "evaluate_workload"]

PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
NOT_FOUND = "NotFound"
COMPLETE = "Complete"
WAITING_FOR_OBSERVATION = "WaitingForObservation"
BELOW_MIN_AVAILABLE = "BelowMinAvailable"
WAITING_FOR_READY = "WaitingForReady"
UPDATING_REPLICAS = "UpdatingReplicas"
WAITING_FOR_AVAILABILITY = "WaitingForAvailability"
TERMINATING_OLD_REPLICAS = "TerminatingOldReplicas"
ROLLING_UPDATE = "RollingUpdate"
ON_DELETE = "OnDeleteStrategy"
# A PDB's minAvailable: a count, or a percentage of the desired pods (rounded up, as the
# disruption controller does).
MinAvailable = int | str


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
    # Whether at least minAvailable pods are available: a region mid-rollout still serves.
    serving: bool = False

    @property
    def done(self) -> bool:
        return self.phase is not RolloutPhase.PROGRESSING


def evaluate_workload(
    kind: str,
    workload: dict[str, Any] | None,
    min_available: MinAvailable,
    applied_at: datetime | None = None,
    *,
    now: datetime | None = None,
    progress_deadline_seconds: int | None = None,
    started: datetime | None = None,
) -> RolloutState:
    """One workload's rollout by its kind's rules. `now` and `progress_deadline_seconds`
    give it geodeploy's deadline, counted from `started` (its apply; default `applied_at`):
    a StatefulSet or DaemonSet has none of its own, and a Deployment's controller ends its
    own when the rollout is done, so one still short of the PDB's minimum would wait
    forever."""
    if workload is None:
        return RolloutState(RolloutPhase.FAILED, NOT_FOUND, f"the {kind} does not exist")
    rules = {
        "Deployment": lambda w, m: evaluate_rollout(w, m, applied_at),
        "StatefulSet": _evaluate_stateful_set,
        "DaemonSet": _evaluate_daemon_set,
    }.get(kind)
    if rules is None:
        raise ValueError(f"no rollout rules for a {kind}")
    state = rules(workload, min_available)
    # A Deployment still updating has the controller's deadline (it restarts on progress).
    ours = kind != "Deployment" or state.reason == BELOW_MIN_AVAILABLE
    since = started or applied_at
    overdue = (
        ours
        and state.phase is RolloutPhase.PROGRESSING
        and since is not None
        and now is not None
        and progress_deadline_seconds is not None
        and (now - since).total_seconds() > progress_deadline_seconds
    )
    if overdue:
        return _with(
            state,
            RolloutPhase.FAILED,
            PROGRESS_DEADLINE_EXCEEDED,
            f"{kind} has not rolled out {progress_deadline_seconds} s after its apply: {state.message}",
        )
    return state


def combine_rollouts(states: list[tuple[str, RolloutState]]) -> RolloutState:
    """A release's rollout from its workloads' (named by object key, in document order):
    failed if any failed, complete when all are; the counts and image are the first's."""
    if len(states) == 1:
        return states[0][1]
    first = states[0][1]
    serving = all(state.serving for _, state in states)
    for phase in (RolloutPhase.FAILED, RolloutPhase.PROGRESSING):
        found = next(((key, state) for key, state in states if state.phase is phase), None)
        if found is not None:
            key, state = found
            return replace(first, phase=phase, reason=state.reason, message=f"{key}: {state.message}", serving=serving)
    message = "; ".join(f"{key}: {state.message}" for key, state in states)
    return replace(first, phase=RolloutPhase.COMPLETE, reason=COMPLETE, message=message, serving=serving)


def _with(state: RolloutState, phase: RolloutPhase, reason: str, message: str) -> RolloutState:
    return replace(state, phase=phase, reason=reason, message=message)


def resolve_min_available(min_available: MinAvailable, desired: int) -> int:
    """The fewest available pods a workload serves with: the PDB's minAvailable, and at
    least one pod when it wants any (without a PDB, 0 available would count as serving)."""
    if isinstance(min_available, str) and min_available.endswith("%"):
        floor = math.ceil(desired * int(min_available[:-1]) / 100)
    else:
        floor = int(min_available)
    return max(floor, 1 if desired > 0 else 0)


def _first_image(spec: dict[str, Any]) -> str | None:
    containers = spec.get("template", {}).get("spec", {}).get("containers", [])
    return containers[0].get("image") if containers else None


def _not_rolling_yet(
    meta: dict[str, Any], spec: dict[str, Any], status: dict[str, Any]
) -> tuple[RolloutPhase, str, str] | None:
    """A StatefulSet's or DaemonSet's state before its own rules apply: the controller
    has not seen the spec, or it would never roll out by itself."""
    if int(meta.get("generation", 0)) > int(status.get("observedGeneration", 0)):
        return RolloutPhase.PROGRESSING, WAITING_FOR_OBSERVATION, "waiting for the controller to see the new spec"
    if (spec.get("updateStrategy") or {}).get("type", ROLLING_UPDATE) != ROLLING_UPDATE:
        # OnDelete: nothing rolls out until pods are deleted by hand (the config refuses it).
        return RolloutPhase.FAILED, ON_DELETE, "OnDelete update strategy: geodeploy cannot roll it out"
    return None


def _evaluate_stateful_set(workload: dict[str, Any], min_available: MinAvailable) -> RolloutState:
    meta, spec, status = workload.get("metadata", {}), workload.get("spec", {}), workload.get("status") or {}
    desired = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas", 0))
    available = int(status.get("availableReplicas", ready))
    updated = int(status.get("updatedReplicas", 0))
    floor = resolve_min_available(min_available, desired)

    def state(phase: RolloutPhase, reason: str, message: str) -> RolloutState:
        return RolloutState(
            phase, reason, message, _first_image(spec), available, updated, desired, serving=available >= floor
        )

    early = _not_rolling_yet(meta, spec, status)
    if early is not None:
        return state(*early)
    strategy = spec.get("updateStrategy") or {}
    if ready < desired:
        return state(RolloutPhase.PROGRESSING, WAITING_FOR_READY, f"{ready} of {desired} pods ready")
    partition = int((strategy.get("rollingUpdate") or {}).get("partition", 0))
    if partition > 0:
        if updated < desired - partition:
            return state(
                RolloutPhase.PROGRESSING,
                UPDATING_REPLICAS,
                f"{updated} of {desired - partition} pods above partition {partition} updated",
            )
    elif status.get("updateRevision") != status.get("currentRevision"):
        return state(RolloutPhase.PROGRESSING, UPDATING_REPLICAS, f"{updated} of {desired} pods at the new revision")
    if available < floor:
        return state(RolloutPhase.PROGRESSING, BELOW_MIN_AVAILABLE, f"{available} available, the PDB promises {floor}")
    return state(RolloutPhase.COMPLETE, COMPLETE, f"{ready} of {desired} pods ready")


def _evaluate_daemon_set(workload: dict[str, Any], min_available: MinAvailable) -> RolloutState:
    meta, spec, status = workload.get("metadata", {}), workload.get("spec", {}), workload.get("status") or {}
    desired = int(status.get("desiredNumberScheduled", 0))
    updated = int(status.get("updatedNumberScheduled", 0))
    available = int(status.get("numberAvailable", 0))
    floor = resolve_min_available(min_available, desired)

    def state(phase: RolloutPhase, reason: str, message: str) -> RolloutState:
        return RolloutState(
            phase, reason, message, _first_image(spec), available, updated, desired, serving=available >= floor
        )

    early = _not_rolling_yet(meta, spec, status)
    if early is not None:
        return state(*early)
    if updated < desired:
        return state(RolloutPhase.PROGRESSING, UPDATING_REPLICAS, f"{updated} of {desired} new pods scheduled")
    if available < desired:
        return state(
            RolloutPhase.PROGRESSING, WAITING_FOR_AVAILABILITY, f"{available} of {desired} updated pods available"
        )
    if available < floor:
        return state(RolloutPhase.PROGRESSING, BELOW_MIN_AVAILABLE, f"{available} available, the PDB promises {floor}")
    return state(RolloutPhase.COMPLETE, COMPLETE, f"{available} of {desired} pods available")


def evaluate_rollout(
    deployment: dict[str, Any] | None, min_available: MinAvailable, applied_at: datetime | None = None
) -> RolloutState:
    """`applied_at`: when the spec being watched was applied. A ProgressDeadlineExceeded
    condition last updated no later than that belongs to the previous rollout (the
    controller keeps it until a sync shows progress), so it is not this rollout's failure."""
    if deployment is None:
        return RolloutState(RolloutPhase.FAILED, NOT_FOUND, "the Deployment does not exist")
    meta = deployment.get("metadata", {})
    spec = deployment.get("spec", {})
    status = deployment.get("status") or {}
    containers = spec.get("template", {}).get("spec", {}).get("containers", [])
    image = containers[0].get("image") if containers else None
    desired = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas", 0))
    total = int(status.get("replicas", 0))
    available = int(status.get("availableReplicas", 0))
    floor = resolve_min_available(min_available, desired)

    def state(phase: RolloutPhase, reason: str, message: str) -> RolloutState:
        return RolloutState(phase, reason, message, image, available, updated, desired, serving=available >= floor)

    if int(meta.get("generation", 0)) > int(status.get("observedGeneration", 0)):
        return state(
            RolloutPhase.PROGRESSING, WAITING_FOR_OBSERVATION, "waiting for the controller to see the new spec"
        )
    progressing = next((c for c in status.get("conditions", []) if c.get("type") == "Progressing"), None)
    if (
        progressing
        and progressing.get("reason") == PROGRESS_DEADLINE_EXCEEDED
        and (applied_at is None or _later(progressing.get("lastUpdateTime"), applied_at))
    ):
        return state(RolloutPhase.FAILED, PROGRESS_DEADLINE_EXCEEDED, progressing.get("message", "rollout stalled"))
    if updated < desired:
        return state(RolloutPhase.PROGRESSING, UPDATING_REPLICAS, f"{updated} of {desired} new replicas updated")
    if total > updated:
        return state(
            RolloutPhase.PROGRESSING, TERMINATING_OLD_REPLICAS, f"{total - updated} old replicas pending termination"
        )
    if available < updated:
        return state(
            RolloutPhase.PROGRESSING, WAITING_FOR_AVAILABILITY, f"{available} of {updated} updated replicas available"
        )
    if available < floor:
        return state(RolloutPhase.PROGRESSING, BELOW_MIN_AVAILABLE, f"{available} available, the PDB promises {floor}")
    return state(RolloutPhase.COMPLETE, COMPLETE, f"{available} of {desired} replicas available")


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
