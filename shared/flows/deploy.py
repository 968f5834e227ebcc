"""deploy_region's job: make one region run the requested release, watch it roll out,
roll back by itself if it fails, record what happened and report it.

    read the release record → decide → claim the release → apply → watch → record → report
                                                    └─ failed or refused: report, roll back,
                                                       watch, bake, report

Every claimed release ends in a terminal status and a terminal result, whichever step a
call dies in: a redelivery re-reads the record and carries on from the status it finds
(docs/architecture.md, "Invariants"). Applies to the Deployment are stamped with their
release and guarded by the resourceVersion just read, so an older release's apply can
never land after a newer one's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.adapters.kube import KubeClient, KubeConflict
from shared.adapters.release_store import ReleaseStore
from shared.config import App, Config, Region
from shared.contracts import (
    MAX_REASON_LENGTH,
    MAX_RESULT_MESSAGE_LENGTH,
    DeployRequest,
    DeployResult,
    DeployStatus,
    ImageRef,
    Trigger,
)
from shared.errors import NotYet, PermanentError, TransientError
from shared.log_events import AUTOMATIC_ROLLBACK_STARTED, RESULT_PUBLISHED
from shared.logs import BoundLogger
from shared.manifest_sources import BUILTIN, WORKLOAD_KINDS
from shared.releases import (
    ROLLBACK_SUFFIX,
    Action,
    Decision,
    Release,
    ReleaseRecord,
    decide,
    stamp_order,
    stamped,
)
from shared.rendering import HealthTarget, RenderedRelease, object_key, parse_object_id, render_release
from shared.rollout import RolloutPhase, RolloutState, combine_rollouts, evaluate_workload

__all__ = ["RegionDeployer", "apply_release", "prune"]

INITIAL_SCALE_MANAGER_SUFFIX = "-initial-scale"
KEPT_KIND = "PersistentVolumeClaim"  # never pruned: its data would go with it
# Reasons this flow reports (the rollout's own reasons come from shared.rollout).
NEWER_RELEASE_APPLIED = "newer_release_applied"
SOAKING = "Soaking"  # a completed rollout watched for its wave's soak (gates[].soak_seconds)
UNHEALTHY_DURING_SOAK = "unhealthy_during_soak"  # a workload stopped being complete while soaking
NO_EARLIER_GOOD_RELEASE = "no_earlier_good_release"
WRONG_REGION = "wrong_region"
ISSUED_IN_THE_FUTURE = "issued_in_the_future"
# How far ahead of this function's clock a request's issued_at may be (clock skew between
# publishers). Releases are ordered by issued_at: one dated far ahead would make every
# later push `superseded` until that date.
MAX_ISSUED_AHEAD = timedelta(minutes=5)
_DECIDE_ATTEMPTS = 8  # re-reads after a conflicting record write, before redelivery
_CONFIRMATION_MERGES = 4  # duplicates confirming our release while we write its status
_APPLY_ATTEMPTS = 8  # re-reads after the Deployment moved under a guarded apply
_REAPPLY_LIMIT = 3  # a release put back after an older apply or a hand edit replaced it


# Workloads as an apply returned them, by health target.
Applied = dict[HealthTarget, dict[str, Any]]
_Evaluate = Callable[[dict[str, Any] | None], RolloutState]


class Superseded(Exception):
    """A newer release's apply already reached the Deployment: ours must not be applied."""


@dataclass
class RegionDeployer:
    """Everything deploy_region needs for one region; collaborators are parameters."""

    config: Config
    region: Region
    kube: KubeClient
    publish_result: Callable[[DeployResult], None]
    log: BoundLogger
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    monotonic: Callable[[], float] = time.monotonic
    _renders: dict[tuple[str, str], RenderedRelease] = field(default_factory=dict, init=False, repr=False)

    def handle(self, request: DeployRequest) -> DeployResult | None:
        """Handles one request; returns the result it published (None for duplicates).

        A request refused before anything was claimed (wrong region, unknown app, an
        unreadable record, an API refusal) publishes a `rejected` result with the reason,
        then raises the PermanentError, so the entry point logs it and acks."""
        try:
            return self._handle(request)
        except PermanentError as e:
            self.log.warning("request_rejected", reason=e.reason, detail=e.detail)
            self.publish_result(
                _result(request, self.now(), "rejected", e.reason, message=e.detail[:500], image=request.image)
            )
            raise

    def _handle(self, request: DeployRequest) -> DeployResult | None:
        if request.region != self.region.name:
            raise PermanentError(WRONG_REGION, f"request for {request.region} reached {self.region.name}")
        app = self.config.known_app(request.app)
        now = self.now()
        if request.issued_at > now + MAX_ISSUED_AHEAD:
            raise PermanentError(
                ISSUED_IN_THE_FUTURE,
                f"issued_at {request.issued_at.isoformat()} is more than {MAX_ISSUED_AHEAD} after {now.isoformat()}",
            )
        deadline = self.monotonic() + self.config.rollout.call_budget_seconds
        log = self.log.bind(app=app.name, release=request.release_id, kind=request.kind)
        store = ReleaseStore(self.kube, app)
        for _ in range(_DECIDE_ATTEMPTS):
            record, version = store.read()
            decision = decide(request, record, app.repository, lambda image: self._render(app, image).manifest_hash)
            log.info("request_decided", action=decision.action.value, reason=decision.reason, image=decision.image)
            try:
                return _Run(self, app, store, request, log, deadline).act(decision, record, version)
            except KubeConflict:
                # Another call wrote the record between our read and our write: re-read.
                log.info("release_record_changed", detail="re-reading and deciding again")
        raise TransientError("the release record kept changing under us")

    def _render(self, app: App, image: str) -> RenderedRelease:
        # Deciding, recording and applying all need the same rendering: make it once.
        key = (app.name, image)
        if key not in self._renders:
            self._renders[key] = render_release(self.config, app, self.region, ImageRef.parse(image))
        return self._renders[key]


@dataclass
class _Run:
    """One request's handling; holds what every step needs."""

    deployer: RegionDeployer
    app: App
    store: ReleaseStore
    request: DeployRequest
    log: BoundLogger
    deadline: float

    def act(self, decision: Decision, record: ReleaseRecord, version: str | None) -> DeployResult | None:
        if decision.action is Action.REJECT:
            self.log.warning("request_rejected", reason=decision.reason, image=decision.image)
            return self._report("rejected", decision.reason, image=decision.image)
        if decision.action is Action.SUPERSEDED:
            newer = decision.release
            self.log.info("request_superseded", newer_release=newer.release_id if newer else None)
            if decision.own is not None:
                # Ours was claimed, then a newer release was claimed on top: it ends here.
                return self._supersede(decision.own, record, version, decision.reason)
            return self._report("superseded", decision.reason, image=self.request.image)
        if decision.action is Action.DUPLICATE:
            if decision.confirm and decision.release is not None:
                confirmed = decision.release.model_copy(
                    update={"confirmed_by": self.request.release_id, "confirmed_at": self.request.issued_at}
                )
                self.store.write(record.updated(confirmed), version)  # a conflict re-decides
            # Logged once the decision stands (after a conflict it is made again).
            self.log.info("duplicate_ignored", reason=decision.reason, image=decision.image)
            if decision.release is not None and decision.release.status == "succeeded":
                # Already running: say so, so a wave waiting on this region can go on. (While
                # the release is still rolling out, its own call will report.)
                return self._report(
                    "unchanged", decision.reason, image=decision.image, manifest_hash=decision.release.manifest_hash
                )
            return None
        if decision.action is Action.RESUME:
            assert decision.release is not None
            return self._resume(decision.release, record, version)
        assert decision.image is not None
        release = self._new_release(decision.image, self.request.kind, rollback_of=None)
        return self._roll_out(release, record, version)

    # --- steps ------------------------------------------------------------------------

    def _new_release(self, image: str, kind: str, rollback_of: str | None, trigger: Trigger | None = None) -> Release:
        rendered = self.deployer._render(self.app, image)
        return Release(
            release_id=f"{self.request.release_id}{ROLLBACK_SUFFIX}" if rollback_of else self.request.release_id,
            kind="rollback" if kind == "rollback" else "deploy",
            image=image,
            trigger=trigger or self.request.trigger,
            issued_at=self.request.issued_at,
            manifest_hash=rendered.manifest_hash,
            status="applying",
            applied_at=self.deployer.now(),
            rollback_of=rollback_of,
            follow_waves=self.request.follow_waves and kind != "rollback" and rollback_of is None,
        )

    def _roll_out(self, release: Release, record: ReleaseRecord, version: str | None) -> DeployResult | None:
        rendered = self.deployer._render(self.app, release.image)
        if version is None:
            # The record lives in the app's namespace: the first release creates it first.
            self.deployer.kube.apply(rendered.find("Namespace"))
        # Claim before applying: the conflict-checked write is what makes racing calls lose.
        # The inventory grows by what this release applies before it is applied, so a
        # call that dies mid-apply leaves no object the next prune cannot find.
        record = record.with_release(release, self.deployer.config.rollout.history_limit)
        record = record.with_inventory((*record.inventory, *rendered.inventory))
        version = self.store.write(record, version)
        self.log.info("release_claimed", image=release.image, manifest_hash=release.manifest_hash)
        return self._carry_out(release, record, version)

    def _resume(self, release: Release, record: ReleaseRecord, version: str | None) -> DeployResult | None:
        current = record.current
        if (
            release.status == "failed"
            and release.kind == "deploy"
            and self.request.kind == "deploy"
            and current is not None
            and current.release_id == release.release_id
        ):
            # Failed and still current, with no rollback claimed after it (decide resumes
            # that one if it was): the call that recorded the failure died before rolling back.
            self.log.info("request_already_handled", status=release.status, detail="rolling back now")
            return self._roll_back_automatically(release, record, version)
        if release.finished:
            self.log.info("request_already_handled", status=release.status)
            return self._report_release(release, record)
        return self._carry_out(release, record, version)

    def _carry_out(self, release: Release, record: ReleaseRecord, version: str | None) -> DeployResult | None:
        """From a claimed release to its end: apply (unless done before), watch, record,
        report. A refusal on the way fails the release (and rolls it back); a newer
        release that reached the Deployment first supersedes it."""
        try:
            applied = None
            if release.status == "applying":  # new, or the call that claimed it died before applying
                rendered = self.deployer._render(self.app, release.image)
                applied = apply_release(self.deployer.kube, rendered, self.app, self.log, release)
                prune(self.deployer.kube, rendered, record, self.app, self.log, release, self.store)
                release = release.model_copy(update={"status": "progressing", "rolled_out_from": self.deployer.now()})
                record, version = self._record(release, record.with_inventory(rendered.inventory), version)
            return self._watch_and_finish(release, record, version, applied)
        except Superseded as e:
            return self._supersede(release, record, version, NEWER_RELEASE_APPLIED, str(e))
        except PermanentError as e:
            return self._refused(release, record, version, e)

    def _watch_and_finish(
        self, release: Release, record: ReleaseRecord, version: str | None, applied: Applied | None = None
    ) -> DeployResult | None:
        if release.soaked_from is not None:
            # Rolled out before a crash or the call budget ended it: the soak's rules go on.
            release, record, version, state = self._soak(release, record, version)
        else:
            state = self._watch(release, applied)
            if state.phase is RolloutPhase.COMPLETE and release.rollback_of:
                state = self._bake(release)
            elif state.phase is RolloutPhase.COMPLETE and self._soak_seconds(release):
                release, record, version, state = self._soak(release, record, version)
        if state.phase is RolloutPhase.PROGRESSING:
            self.log.info("rollout_still_progressing", detail=state.message)
            self._report("progressing", state.reason, message=state.message, image=release.image)
            raise NotYet(f"rollout of {release.image} still progressing: {state.message}")
        status = "succeeded" if state.phase is RolloutPhase.COMPLETE else "failed"
        release = release.model_copy(
            update={"status": status, "finished_at": self.deployer.now(), "reason": state.reason}
        )
        record, version = self._record(release, record, version)
        if status == "succeeded":
            self.log.info("rollout_succeeded", image=release.image, detail=state.message)
            return self._report_release(release, record)
        self.log.error("rollout_failed", image=release.image, reason=state.reason, detail=state.message)
        if release.kind == "rollback" or release.rollback_of:
            return self._report_release(release, record)
        return self._roll_back_automatically(release, record, version)

    def _record(self, release: Release, record: ReleaseRecord, version: str | None) -> tuple[ReleaseRecord, str]:
        """Writes our release's new status. A conflict caused only by a duplicate request
        confirming our release (still current, its status as we left it) is merged and
        written again, so it costs no re-apply; any other conflict re-decides."""
        before = record.find(release.release_id)
        if before is not None and before.confirmed_at is not None:
            release = release.model_copy(
                update={"confirmed_by": before.confirmed_by, "confirmed_at": before.confirmed_at}
            )
        # Several duplicates (one digest under several tags) may confirm it one after
        # another while we write: each is merged in turn.
        for _ in range(_CONFIRMATION_MERGES):
            try:
                updated = record.updated(release)
                return updated, self.store.write(updated, version)
            except KubeConflict:
                record, version = self.store.read()
                live, current = record.find(release.release_id), record.current
                if (
                    before is None
                    or live is None
                    or current is None
                    or current.release_id != release.release_id
                    or live.status != before.status
                ):
                    raise
                release = release.model_copy(
                    update={"confirmed_by": live.confirmed_by, "confirmed_at": live.confirmed_at}
                )
        raise KubeConflict(f"the release record of {release.release_id} kept changing while it was written")

    def _supersede(
        self, release: Release, record: ReleaseRecord, version: str | None, reason: str, detail: str = ""
    ) -> DeployResult:
        release = release.model_copy(
            update={"status": "superseded", "finished_at": self.deployer.now(), "reason": reason}
        )
        try:
            self.store.write(record.updated(release), version)  # a conflict re-decides, as anywhere
        except PermanentError as e:
            # The newer release's claim marked ours superseded in the record already
            # (ReleaseRecord.with_release); the request still ends.
            self.log.error("release_record_refused", reason=e.reason, detail=e.detail)
        self.log.info("release_superseded", superseded_release=release.release_id, reason=reason, detail=detail)
        return self._report("superseded", reason, message=detail, image=release.image)

    def _refused(
        self, release: Release, record: ReleaseRecord, version: str | None, error: PermanentError
    ) -> DeployResult | None:
        """The API server refused a step after the claim: the release failed. Nothing is
        left half-applied: a deploy rolls back to the last good release."""
        self.log.error("release_refused", image=release.image, reason=error.reason, detail=error.detail)
        failed = release.model_copy(
            update={"status": "failed", "finished_at": self.deployer.now(), "reason": error.reason}
        )
        try:
            record, version = self._record(failed, record, version)
        except PermanentError as e:  # even the record is refused: still end the request
            self.log.error("release_record_refused", reason=e.reason, detail=e.detail)
            return self._report("failed", error.reason, message=error.detail[:500], image=release.image)
        if failed.kind == "rollback" or failed.rollback_of:
            return self._report_release(failed, record, message=error.detail[:500])
        return self._roll_back_automatically(failed, record, version)

    def _roll_back_automatically(
        self, failed: Release, record: ReleaseRecord, version: str | None
    ) -> DeployResult | None:
        target = record.last_good(failed.image, self.app.repository)
        if target is None:
            self.log.error("rollback_impossible", reason=NO_EARLIER_GOOD_RELEASE)
            return self._report(
                "failed", failed.reason, message="no earlier good release to roll back to", image=failed.image
            )
        # Report the failure first: traffic reconciliation drains the region meanwhile.
        self._report(
            "rolling_back",
            failed.reason,
            message=f"rolling back to {target.image}",
            image=failed.image,
            rolled_back_to=target.image,
        )
        trigger = Trigger(type="rollback", event_id=failed.trigger.event_id, requested_by="geodeploy:auto-rollback")
        rollback = self._new_release(target.image, "rollback", rollback_of=failed.release_id, trigger=trigger)
        self.log.warning(AUTOMATIC_ROLLBACK_STARTED, image=target.image, failed_image=failed.image)
        return self._roll_out(rollback, record, version)

    def _watch(self, release: Release, applied: Applied | None = None) -> RolloutState:
        """Watches each of the release's workloads until it settles, then says how the
        release's rollout stands. `applied`: workloads as our apply returned them, each
        watch's starting point."""
        rendered = self.deployer._render(self.app, release.image)
        applied = applied or {}
        last_message = [""]
        for _ in range(_REAPPLY_LIMIT + 1):
            seen: list[dict[str, Any] | None] = []
            for target in rendered.health_targets:
                evaluate = self._evaluator(rendered, target, release)

                def progressed(workload: dict | None, evaluate: _Evaluate = evaluate) -> None:
                    state = evaluate(workload)
                    if state.message != last_message[0]:
                        last_message[0] = state.message
                        self.log.info(
                            "rollout_progress", image=release.image, phase=state.phase.value, detail=state.message
                        )

                seen.append(
                    self.deployer.kube.watch_object(
                        "apps/v1",
                        target.kind,
                        target.name,
                        target.namespace,
                        until=_settled(evaluate, release),
                        deadline=self._watch_deadline(target, release),
                        on_change=progressed,
                        start=applied.get(target),
                    )
                )
                if seen[-1] is None or not _runs(seen[-1], release) or evaluate(seen[-1]).phase is RolloutPhase.FAILED:
                    break  # the others need no watching: this one decides
            replaced = next((w for w in seen if w is not None and not _runs(w, release)), None)
            if replaced is None:
                return self._rollout(rendered, release, seen)
            # Something else is in a workload now. Only a newer release may take over.
            if self._newer_took_over(replaced, release):
                raise Superseded(f"{_kind_and_name(replaced)} now runs {_image_of(replaced)}")
            self.log.warning(
                "release_reapplied", detail=f"{_kind_and_name(replaced)} ran {_image_of(replaced)}, an older release"
            )
            applied = apply_release(self.deployer.kube, rendered, self.app, self.log, release)
        raise TransientError(f"the workloads kept being replaced while {release.image} rolled out")

    def _evaluator(self, rendered: RenderedRelease, target: HealthTarget, release: Release | None) -> _Evaluate:
        min_available = rendered.min_available(target)
        applied_at = release.applied_at if release is not None else None
        started = (release.rolled_out_from or release.applied_at) if release is not None else None
        deadline = self.deployer.config.rollout.progress_deadline_seconds
        return lambda w: evaluate_workload(
            target.kind,
            w,
            min_available,
            applied_at,
            now=self.deployer.now(),
            progress_deadline_seconds=deadline,
            started=started,
        )

    def _watch_deadline(self, target: HealthTarget, release: Release) -> float:
        """The call's deadline; for a StatefulSet or DaemonSet no later than the progress
        deadline geodeploy gives it (no controller condition would end the watch)."""
        if target.kind == "Deployment":
            return self.deadline
        deadline = self.deployer.config.rollout.progress_deadline_seconds
        left = deadline - (self.deployer.now() - (release.rolled_out_from or release.applied_at)).total_seconds()
        return min(self.deadline, self.deployer.monotonic() + max(0.0, left) + 1)

    def _rollout(
        self, rendered: RenderedRelease, release: Release | None, seen: list[dict[str, Any] | None]
    ) -> RolloutState:
        """The release's rollout from the workloads watched, in order (a watch stops at the
        first workload that decides: failed, replaced or, baking, no longer complete)."""
        return combine_rollouts(
            [
                (object_key(rendered.workload(target)), self._evaluator(rendered, target, release)(workload))
                for target, workload in zip(rendered.health_targets, seen, strict=False)
            ]
        )

    def _bake(self, rollback: Release) -> RolloutState:
        """Keeps watching a finished automatic rollback: the region counts as recovered
        only if every workload stays complete for rollout.rollback_bake_seconds."""
        bake = self.deployer.config.rollout.rollback_bake_seconds
        self.log.info("rollback_baking", image=rollback.image, seconds=bake)
        return self._watch_until(rollback, min(self.deadline, self.deployer.monotonic() + bake), _no_longer_complete)[0]

    def _soak_seconds(self, release: Release) -> int:
        """How long a completed deploy must stay healthy before it counts as succeeded:
        its wave's soak (a deploy to named regions, or a rollback, does not soak)."""
        if release.kind != "deploy" or release.rollback_of or not self.request.follow_waves:
            return 0
        return self.deployer.config.gate_after(self.deployer.region.wave).soak_seconds

    def _soak(
        self, release: Release, record: ReleaseRecord, version: str | None
    ) -> tuple[Release, ReleaseRecord, str | None, RolloutState]:
        """Keeps watching a completed rollout for its wave's soak. The soak's start is
        recorded once, so a redelivery (after the call budget ran out, or a crash)
        carries on from it; a workload that stops being complete meanwhile fails it."""
        first = release.soaked_from is None
        if first:
            release = release.model_copy(update={"soaked_from": self.deployer.now()})
            record, version = self._record(release, record, version)
        assert release.soaked_from is not None
        until = release.soaked_from + timedelta(seconds=self._soak_seconds(release))
        left = (until - self.deployer.now()).total_seconds()
        self.log.info("rollout_soaking", image=release.image, until=until.isoformat())
        if first:  # say so: whoever follows the release sees why it is not done yet
            message = f"rolled out; soaking until {until.isoformat(timespec='seconds')}"
            self._report("progressing", SOAKING, message=message, image=release.image)
        until_soaked = min(self.deadline, self.deployer.monotonic() + max(0.0, left))
        state, seen = self._watch_until(release, until_soaked, lambda evaluate: _stops_serving(evaluate, release))
        replaced = next((w for w in seen if w is not None and not _runs(w, release)), None)
        if replaced is not None and self._newer_took_over(replaced, release):
            raise Superseded(f"{_kind_and_name(replaced)} now runs {_image_of(replaced)}")
        if state.phase is RolloutPhase.FAILED or not state.serving:
            # The region must stay healthy: serving at least its minimum available pods
            # (a scale-up or one pod restarting is not a failure; falling below it is).
            return release, record, version, RolloutState(RolloutPhase.FAILED, UNHEALTHY_DURING_SOAK, state.message)
        if self.deployer.now() < until:
            state = RolloutState(
                RolloutPhase.PROGRESSING, SOAKING, f"rolled out; soaking until {until.isoformat(timespec='seconds')}"
            )
        return release, record, version, state

    def _newer_took_over(self, replaced: dict[str, Any], release: Release) -> bool:
        """Whether a workload no longer running `release` holds a newer release's apply,
        or a newer release has been claimed since (its apply is on the way)."""
        stamp = stamp_order(replaced)
        current = self.store.read()[0].current
        newer_claim = (
            current is not None and current.release_id != release.release_id and current.claim_order > release.order
        )
        return (stamp is not None and stamp > release.order) or newer_claim

    def _watch_until(
        self, release: Release, deadline: float, stop: Callable[[_Evaluate], Callable[[dict[str, Any] | None], bool]]
    ) -> tuple[RolloutState, list[dict[str, Any] | None]]:
        """Watches each of the release's workloads until `deadline` or until `stop` says
        one is done for; how the release stands then, and the workloads as last seen."""
        rendered = self.deployer._render(self.app, release.image)
        seen: list[dict[str, Any] | None] = []
        for target in rendered.health_targets:
            stops = stop(self._evaluator(rendered, target, None))
            seen.append(
                self.deployer.kube.watch_object(
                    "apps/v1", target.kind, target.name, target.namespace, until=stops, deadline=deadline
                )
            )
            if stops(seen[-1]):
                break
        return self._rollout(rendered, None, seen), seen

    # --- results ------------------------------------------------------------------------

    def _report_release(self, release: Release, record: ReleaseRecord, message: str = "") -> DeployResult:
        if release.rollback_of and self.request.kind == "deploy":
            status: DeployStatus = "rolled_back" if release.status == "succeeded" else "failed"
            if release.status == "superseded":
                status = "superseded"
            failed = record.find(release.rollback_of)
            return self._report(
                status,
                failed.reason if failed else release.reason,
                message=message
                or (f"rolled back to {release.image}" if status == "rolled_back" else f"rollback {release.status}"),
                image=failed.image if failed else None,
                rolled_back_to=release.image,
                manifest_hash=release.manifest_hash,
            )
        final: DeployStatus = "superseded" if release.status == "superseded" else "failed"
        if release.status == "succeeded":
            final = "succeeded"
        return self._report(
            final, release.reason, message=message, image=release.image, manifest_hash=release.manifest_hash
        )

    def _report(
        self,
        status: DeployStatus,
        reason: str,
        *,
        message: str = "",
        image: str | None = None,
        rolled_back_to: str | None = None,
        manifest_hash: str | None = None,
    ) -> DeployResult:
        result = _result(
            self.request,
            self.deployer.now(),
            status,
            reason,
            message=message,
            image=image,
            rolled_back_to=rolled_back_to,
            manifest_hash=manifest_hash,
        )
        self.deployer.publish_result(result)
        self.log.info(RESULT_PUBLISHED, status=status, reason=reason)
        return result


def _result(
    request: DeployRequest, now: datetime, status: DeployStatus, reason: str, *, message: str = "", **fields: Any
) -> DeployResult:
    # Cut to the contract's bounds: a long detail (an API server's message) must never
    # make the result itself invalid, and so unpublishable.
    return DeployResult(
        release_id=request.release_id,
        app=request.app,
        region=request.region,
        kind=request.kind,
        status=status,
        reason=reason[:MAX_REASON_LENGTH],
        message=message[:MAX_RESULT_MESSAGE_LENGTH],
        trigger=request.trigger,
        issued_at=request.issued_at,
        wave=request.wave,
        follow_waves=request.follow_waves,
        finished_at=now,
        **fields,
    )


def _image_of(workload: dict[str, Any]) -> str | None:
    containers = workload.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    return containers[0].get("image") if containers else None


def _settled(evaluate: _Evaluate, release: Release) -> Callable[[dict[str, Any] | None], bool]:
    return lambda w: w is None or not _runs(w, release) or evaluate(w).done


def _stops_serving(evaluate: _Evaluate, release: Release) -> Callable[[dict[str, Any] | None], bool]:
    def stops(w: dict[str, Any] | None) -> bool:
        if w is None or not _runs(w, release):
            return True
        state = evaluate(w)
        return state.phase is RolloutPhase.FAILED or not state.serving

    return stops


def _no_longer_complete(evaluate: _Evaluate) -> Callable[[dict[str, Any] | None], bool]:
    return lambda w: evaluate(w).phase is not RolloutPhase.COMPLETE


def _kind_and_name(workload: dict[str, Any]) -> str:
    return f"the {workload.get('kind', 'workload')} {workload.get('metadata', {}).get('name', '')}".rstrip()


def _runs(workload: dict[str, Any], release: Release) -> bool:
    """Whether the workload holds this release's apply (its stamp; for a Deployment
    written before stamps existed, its image)."""
    stamp = stamp_order(workload)
    return stamp == release.order if stamp is not None else _image_of(workload) == release.image


def apply_release(kube: KubeClient, rendered: RenderedRelease, app: App, log: BoundLogger, release: Release) -> Applied:
    """Server-side-applies every object in order, the Namespace first. Each workload
    (Deployment, StatefulSet, DaemonSet) carries the release's stamp and is applied only
    if no newer release's stamp is on it, guarded by the resourceVersion just read (raises
    Superseded otherwise). A workload created now that an autoscaler scales is scaled once
    to the autoscaler's minimum, as the HPA would, so the first rollout does not wait for
    the HPA's first sync; the HPA owns `replicas` from then on. Returns the workloads as
    the apply left them (a scaled one left out: watch it from a fresh read)."""
    targets = {object_key(rendered.workload(t)): t for t in rendered.health_targets}
    # Every workload read before anything is written: a call that finds a newer release's
    # stamp on any of them stops before it could put an older ConfigMap or Service back.
    # (These reads are the guarded applies' first reads: no request more.)
    first_reads = {t: kube.get("apps/v1", t.kind, t.name, t.namespace) for t in rendered.health_targets}
    for live in first_reads.values():
        stamp = stamp_order(live)
        if stamp is not None and stamp > release.order:
            raise Superseded(f"{_kind_and_name(live or {})} already runs {_image_of(live or {})}, a newer release")
    applied: Applied = {}
    created: list[HealthTarget] = []
    for obj in rendered.objects:
        target = targets.get(object_key(obj))
        if target is None:
            kube.apply(obj)
            continue
        applied[target], existed = _guarded_apply(
            kube, obj, target, release, rendered.restarts(obj), first_reads.pop(target)
        )
        if not existed:
            created.append(target)
    for target in created:
        replicas = rendered.initial_replicas(target)
        if replicas is not None:
            manager = kube.field_manager + INITIAL_SCALE_MANAGER_SUFFIX
            kube.scale("apps/v1", target.kind, target.name, target.namespace, replicas, manager=manager)
            del applied[target]
    log.info(
        "manifests_applied",
        objects=[object_key(o) for o in rendered.objects],
        manifest_hash=rendered.manifest_hash,
        field_manager=kube.field_manager,
        release_stamp=release.release_id,
    )
    return applied


def prune(
    kube: KubeClient,
    rendered: RenderedRelease,
    record: ReleaseRecord,
    app: App,
    log: BoundLogger,
    release: Release,
    store: ReleaseStore,
) -> None:
    """Deletes every object of the record's inventory that this release no longer renders
    (removed from the manifests since an earlier release), as `kubectl apply --prune`
    does with an ApplySet's inventory. One already gone counts as pruned. Only while this
    release is still the region's newest claim (a newer one, perhaps of a newer config,
    may render the object again), never a workload a newer release stamped, never a
    PersistentVolumeClaim (its data would go with it), and never for the built-in source,
    whose deployer has no delete grant (its objects never change)."""
    removed = sorted(set(record.inventory) - set(rendered.inventory))
    if not removed:
        return
    if app.source.kind == BUILTIN:
        log.warning("objects_not_pruned", objects=removed, detail="the built-in source has no grant to delete them")
        return
    current = store.read()[0].current
    if current is None or current.release_id != release.release_id:
        log.info("prune_skipped", objects=removed, detail="a newer release was claimed: it prunes")
        return
    pruned, kept = [], []
    for found in removed:
        api_version, kind, name = parse_object_id(found)
        if kind == KEPT_KIND:
            kept.append(found)
        elif kind not in WORKLOAD_KINDS:
            kube.delete(api_version, kind, name, app.namespace)
            pruned.append(found)
        elif _delete_unless_newer(kube, api_version, kind, name, app.namespace, release):
            pruned.append(found)
    if pruned:
        log.info("objects_pruned", objects=pruned)
    if kept:
        log.warning("objects_kept", objects=kept, detail="a PersistentVolumeClaim is never pruned: delete it by hand")


def _delete_unless_newer(
    kube: KubeClient, api_version: str, kind: str, name: str, namespace: str, release: Release
) -> bool:
    """Deletes a workload unless a newer release's stamp is on it, guarded by the
    resourceVersion just read (a newer apply between the read and the delete wins)."""
    for _ in range(_APPLY_ATTEMPTS):
        live = kube.get(api_version, kind, name, namespace)
        stamp = stamp_order(live)
        if live is None or (stamp is not None and stamp > release.order):
            return False
        try:
            kube.delete(api_version, kind, name, namespace, resource_version=live["metadata"]["resourceVersion"])
            return True
        except KubeConflict:
            continue  # it moved (a controller, the HPA, a newer apply): read again
    raise TransientError(f"the {kind} {name} kept changing under its prune")


def _guarded_apply(
    kube: KubeClient,
    workload: dict[str, Any],
    target: HealthTarget,
    release: Release,
    restart: bool,
    first_read: dict[str, Any] | None,
) -> tuple[dict[str, Any], bool]:
    """Applies one workload with the release's stamp, unless a newer one's is on it;
    returns it as applied, and whether it existed before (`first_read`: as just read)."""
    existed = first_read is not None  # as first read: a workload created now gets its initial scale
    live = first_read
    for attempt in range(_APPLY_ATTEMPTS):
        if attempt:
            live = kube.get("apps/v1", target.kind, target.name, target.namespace)
        stamp = stamp_order(live)
        if stamp is not None and stamp > release.order:
            raise Superseded(f"{_kind_and_name(live or {})} already runs {_image_of(live or {})}, a newer release")
        try:
            if live is None:
                # A create is the only write with no resourceVersion to guard it: POST
                # it, so a racing first release fails (409) instead of overwriting.
                live = kube.create(stamped(workload, release, None, pod_template=restart))
            return kube.apply(stamped(workload, release, live, pod_template=restart)), existed
        except KubeConflict:
            continue  # the controller or the HPA moved it (or a racing apply): read again
    raise TransientError(f"the {target.kind} {target.name} kept changing under a guarded apply")
