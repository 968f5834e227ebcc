"""Is a rollout done, still going, or failed? kubectl's rules, plus: never "complete" with
fewer pods than the PodDisruptionBudget promises."""

from __future__ import annotations

import pytest

from shared.rollout import RolloutPhase, evaluate_rollout
from tests.core.builders import deployment, ref

MIN_AVAILABLE = 2


def evaluate(deploy):
    return evaluate_rollout(deploy, MIN_AVAILABLE)


@pytest.mark.parametrize(
    ("deploy", "phase", "reason"),
    [
        (deployment(), RolloutPhase.COMPLETE, "Complete"),
        (deployment(generation=3, observed=2), RolloutPhase.PROGRESSING, "WaitingForObservation"),
        (
            deployment(condition_reason="ProgressDeadlineExceeded", updated=1),
            RolloutPhase.FAILED,
            "ProgressDeadlineExceeded",
        ),
        (deployment(updated=1, total=4), RolloutPhase.PROGRESSING, "UpdatingReplicas"),
        (deployment(updated=3, total=5), RolloutPhase.PROGRESSING, "TerminatingOldReplicas"),
        (deployment(updated=3, total=3, available=2), RolloutPhase.PROGRESSING, "WaitingForAvailability"),
        (deployment(replicas=1, available=1), RolloutPhase.PROGRESSING, "BelowMinAvailable"),
    ],
    ids=["complete", "not-observed", "deadline", "updating", "old-pending", "unavailable", "below-pdb"],
)
def test_kubectls_rollout_rules_and_ours(deploy, phase, reason):
    state = evaluate(deploy)
    assert (state.phase, state.reason) == (phase, reason)
    assert state.done is (phase is not RolloutPhase.PROGRESSING)


def test_an_unobserved_spec_wins_over_an_old_deadline_condition():
    # kubectl checks observedGeneration first: the controller has not seen the new spec,
    # so the stale ProgressDeadlineExceeded belongs to the previous rollout.
    state = evaluate(deployment(generation=4, observed=3, condition_reason="ProgressDeadlineExceeded"))
    assert state.phase is RolloutPhase.PROGRESSING


def test_a_deadline_exceeded_rollout_fails_even_while_replicas_are_still_updating():
    state = evaluate(deployment(updated=1, total=4, available=3, condition_reason="ProgressDeadlineExceeded"))
    assert state.phase is RolloutPhase.FAILED
    assert "ProgressDeadlineExceeded" in state.message


def test_a_deleted_deployment_is_a_failed_rollout():
    state = evaluate(None)
    assert state.phase is RolloutPhase.FAILED
    assert state.reason == "NotFound"
    assert state.done


def test_the_state_reports_the_running_image_and_counts():
    img = ref("v7")
    state = evaluate(deployment(image_ref=img, replicas=4, updated=2, total=5, available=3))
    assert state.image == img
    assert (state.desired, state.updated, state.available) == (4, 2, 3)


def test_messages_say_how_far_the_rollout_got():
    assert evaluate(deployment(replicas=5, updated=2, total=6)).message == "2 of 5 new replicas updated"
    assert evaluate(deployment(updated=3, total=5)).message == "2 old replicas pending termination"
    assert evaluate(deployment(available=1)).message == "1 of 3 updated replicas available"


def test_a_deployment_without_status_is_still_progressing():
    deploy = deployment()
    deploy["metadata"]["generation"] = 1
    del deploy["status"]
    assert evaluate(deploy).phase is RolloutPhase.PROGRESSING


def test_a_deployment_scaled_above_the_pdb_minimum_completes_once_all_are_available():
    assert evaluate(deployment(replicas=5)).phase is RolloutPhase.COMPLETE
    assert evaluate(deployment(replicas=5, available=4)).phase is RolloutPhase.PROGRESSING


@pytest.mark.parametrize(
    ("min_available", "phase"),
    [(0, RolloutPhase.COMPLETE), (2, RolloutPhase.COMPLETE), (3, RolloutPhase.COMPLETE), (4, RolloutPhase.PROGRESSING)],
)
def test_the_pdb_minimum_is_the_line_for_complete(min_available, phase):
    assert evaluate_rollout(deployment(replicas=3), min_available).phase is phase


def test_a_healthy_older_progressing_condition_does_not_fail_the_rollout():
    state = evaluate(deployment(condition_reason="ReplicaSetUpdated", updated=2, total=3))
    assert state.phase is RolloutPhase.PROGRESSING


def test_a_deployment_with_no_conditions_is_judged_on_counts():
    assert evaluate(deployment(condition_reason=None)).phase is RolloutPhase.COMPLETE
