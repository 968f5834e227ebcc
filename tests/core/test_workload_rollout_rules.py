"""kubectl's rollout rules for each workload kind a release may render, and geodeploy's
own progress deadline where Kubernetes keeps none."""

from __future__ import annotations

from datetime import timedelta

from shared.rollout import (
    BELOW_MIN_AVAILABLE,
    ON_DELETE,
    PROGRESS_DEADLINE_EXCEEDED,
    RolloutPhase,
    combine_rollouts,
    evaluate_workload,
)
from tests.core.builders import at, deployment


def stateful_set(replicas=2, ready=2, updated=2, current="r1", update="r1", partition=0, generation=1, observed=1):
    spec = {"replicas": replicas, "template": {"spec": {"containers": [{"name": "db", "image": "db@sha256:1"}]}}}
    if partition:
        spec["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}}
    return {
        "metadata": {"generation": generation},
        "spec": spec,
        "status": {
            "observedGeneration": observed,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "updatedReplicas": updated,
            "currentRevision": current,
            "updateRevision": update,
        },
    }


def daemon_set(desired=3, updated=3, available=3, strategy="RollingUpdate"):
    return {
        "metadata": {"generation": 1},
        "spec": {"updateStrategy": {"type": strategy}, "template": {"spec": {"containers": [{"image": "a"}]}}},
        "status": {
            "observedGeneration": 1,
            "desiredNumberScheduled": desired,
            "updatedNumberScheduled": updated,
            "numberAvailable": available,
        },
    }


def test_a_stateful_set_is_complete_when_every_pod_is_ready_at_the_new_revision():
    assert evaluate_workload("StatefulSet", stateful_set(), 0).phase is RolloutPhase.COMPLETE
    waiting = evaluate_workload("StatefulSet", stateful_set(current="r1", update="r2", updated=1), 0)
    assert waiting.phase is RolloutPhase.PROGRESSING
    assert evaluate_workload("StatefulSet", stateful_set(ready=1), 0).phase is RolloutPhase.PROGRESSING
    unseen = stateful_set(generation=2, observed=1)
    assert evaluate_workload("StatefulSet", unseen, 0).phase is RolloutPhase.PROGRESSING


def test_a_partitioned_stateful_set_is_complete_when_the_pods_above_the_partition_are_updated():
    partial = stateful_set(replicas=4, ready=4, updated=2, update="r2", partition=2)
    assert evaluate_workload("StatefulSet", partial, 0).phase is RolloutPhase.COMPLETE
    short = stateful_set(replicas=4, ready=4, updated=1, update="r2", partition=2)
    assert evaluate_workload("StatefulSet", short, 0).phase is RolloutPhase.PROGRESSING


def test_a_stuck_stateful_set_fails_at_geodeploys_deadline_counted_from_its_apply():
    stuck = stateful_set(ready=1, updated=1, update="r2")
    claimed, applied = at(0), at(10)  # claimed, then a redelivery applied it 10 minutes later
    before = evaluate_workload(
        "StatefulSet", stuck, 0, claimed, now=at(10.2), progress_deadline_seconds=20, started=applied
    )
    assert before.phase is RolloutPhase.PROGRESSING
    after = evaluate_workload(
        "StatefulSet",
        stuck,
        0,
        claimed,
        now=applied + timedelta(seconds=21),
        progress_deadline_seconds=20,
        started=applied,
    )
    assert (after.phase, after.reason) == (RolloutPhase.FAILED, PROGRESS_DEADLINE_EXCEEDED)


def test_daemon_set_rules():
    assert evaluate_workload("DaemonSet", daemon_set(), 0).phase is RolloutPhase.COMPLETE
    assert evaluate_workload("DaemonSet", daemon_set(updated=2), 0).phase is RolloutPhase.PROGRESSING
    assert evaluate_workload("DaemonSet", daemon_set(available=2), 0).phase is RolloutPhase.PROGRESSING
    on_delete = evaluate_workload("DaemonSet", daemon_set(strategy="OnDelete"), 0)
    assert (on_delete.phase, on_delete.reason) == (RolloutPhase.FAILED, ON_DELETE)


def test_without_a_budget_a_workload_with_no_pod_available_does_not_serve():
    assert not evaluate_workload("StatefulSet", stateful_set(ready=0, updated=0), 0).serving
    assert evaluate_workload("StatefulSet", stateful_set(ready=1, updated=1), 0).serving
    assert evaluate_workload("StatefulSet", stateful_set(ready=2), "100%").serving
    assert not evaluate_workload("StatefulSet", stateful_set(ready=1, updated=1), "100%").serving


def test_a_deployment_done_but_short_of_its_budget_fails_at_geodeploys_deadline():
    short = deployment(replicas=2)  # rolled out, but the PDB wants 3
    waiting = evaluate_workload("Deployment", short, 3, at(0), now=at(0.2), progress_deadline_seconds=20)
    assert (waiting.phase, waiting.reason) == (RolloutPhase.PROGRESSING, BELOW_MIN_AVAILABLE)
    failed = evaluate_workload("Deployment", short, 3, at(0), now=at(1), progress_deadline_seconds=20)
    assert (failed.phase, failed.reason) == (RolloutPhase.FAILED, PROGRESS_DEADLINE_EXCEEDED)


def test_a_release_is_failed_if_any_workload_failed_and_complete_only_when_all_are():
    complete = evaluate_workload("StatefulSet", stateful_set(), 0)
    progressing = evaluate_workload("StatefulSet", stateful_set(ready=1), 0)
    failed = evaluate_workload("DaemonSet", daemon_set(strategy="OnDelete"), 0)
    assert combine_rollouts([("a", complete), ("b", progressing), ("c", failed)]).phase is RolloutPhase.FAILED
    assert combine_rollouts([("a", complete), ("b", progressing)]).message.startswith("b: ")
    assert combine_rollouts([("a", complete), ("b", complete)]).phase is RolloutPhase.COMPLETE
