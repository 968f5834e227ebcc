"""deploy_region's job: make one region run the requested release, watch it roll out,
roll back by itself if it fails, record what happened and report it.

    read the release record → decide → claim the release → apply → watch → record → report
                                                    └─ failed: report, roll back, watch, report
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.adapters.kube import KubeClient, KubeConflict
from shared.adapters.release_store import ReleaseStore
from shared.config import App, Config, Region
from shared.contracts import DeployRequest, DeployResult, DeployStatus, ImageRef, Trigger
from shared.errors import NotYet, PermanentError, TransientError
from shared.logs import BoundLogger
from shared.releases import TERMINAL, Action, Decision, Release, ReleaseRecord, decide
from shared.rendering import RenderedRelease, object_key, render_release
from shared.rollout import RolloutPhase, RolloutState, evaluate_rollout

__all__ = ["RegionDeployer", "apply_release"]

INITIAL_SCALE_MANAGER_SUFFIX = "-initial-scale"
REPLACED = "Replaced"


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
        """Handles one request; returns the result it published (None for duplicates)."""
        if request.region != self.region.name:
            raise PermanentError("wrong_region", f"request for {request.region} reached {self.region.name}")
        try:
            app = self.config.app(request.app)
        except KeyError:
            raise PermanentError("unknown_app", request.app) from None
        deadline = self.monotonic() + self.config.rollout.call_budget_seconds
        log = self.log.bind(app=app.name, release=request.release_id, kind=request.kind)
        store = ReleaseStore(self.kube, app)
        for _ in range(5):
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
            return self._report("superseded", decision.reason, image=self.request.image)
        if decision.action is Action.DUPLICATE:
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
            release_id=f"{self.request.release_id}-rb" if rollback_of else self.request.release_id,
            kind="rollback" if kind == "rollback" else "deploy",
            image=image,
            trigger=trigger or self.request.trigger,
            issued_at=self.request.issued_at,
            manifest_hash=rendered.manifest_hash,
            status="applying",
            applied_at=self.deployer.now(),
            rollback_of=rollback_of,
        )

    def _roll_out(self, release: Release, record: ReleaseRecord, version: str | None) -> DeployResult | None:
        rendered = self.deployer._render(self.app, release.image)
        if version is None:
            # The record lives in the app's namespace: the first release creates it first.
            self.deployer.kube.apply(rendered.find("Namespace"))
        # Claim before applying: the conflict-checked write is what makes racing duplicates lose.
        record = record.with_release(release, self.deployer.config.rollout.history_limit)
        version = self.store.write(record, version)
        self.log.info("release_claimed", image=release.image, manifest_hash=release.manifest_hash)
        apply_release(self.deployer.kube, rendered, self.app, self.log)
        release = release.model_copy(update={"status": "progressing"})
        record = record.updated(release)
        version = self.store.write(record, version)
        return self._watch_and_finish(release, record, version)

    def _resume(self, release: Release, record: ReleaseRecord, version: str | None) -> DeployResult | None:
        if release.status in TERMINAL:
            self.log.info("request_already_handled", status=release.status)
            return self._report_release(release, record)
        if release.status == "applying":  # the call that claimed it died before applying
            apply_release(self.deployer.kube, self.deployer._render(self.app, release.image), self.app, self.log)
            release = release.model_copy(update={"status": "progressing"})
            record = record.updated(release)
            version = self.store.write(record, version)
        return self._watch_and_finish(release, record, version)

    def _watch_and_finish(self, release: Release, record: ReleaseRecord, version: str | None) -> DeployResult | None:
        state = self._watch(release)
        if state.phase is RolloutPhase.COMPLETE and release.rollback_of:
            state = self._bake(release)
        if state.phase is RolloutPhase.PROGRESSING:
            self.log.info("rollout_still_progressing", detail=state.message)
            self._report("progressing", state.reason, message=state.message, image=release.image)
            raise NotYet(f"rollout of {release.image} still progressing: {state.message}")
        if state.reason == REPLACED:
            release = release.model_copy(update={"status": "superseded", "finished_at": self.deployer.now()})
            self.store.write(record.updated(release), version)
            self.log.info("release_replaced_while_watching", detail=state.message)
            return self._report("superseded", REPLACED, message=state.message, image=release.image)
        status = "succeeded" if state.phase is RolloutPhase.COMPLETE else "failed"
        release = release.model_copy(
            update={"status": status, "finished_at": self.deployer.now(), "reason": state.reason}
        )
        record = record.updated(release)
        version = self.store.write(record, version)
        if status == "succeeded":
            self.log.info("rollout_succeeded", image=release.image, detail=state.message)
            return self._report_release(release, record)
        self.log.error("rollout_failed", image=release.image, reason=state.reason, detail=state.message)
        if release.kind == "rollback" or release.rollback_of:
            return self._report_release(release, record)
        return self._roll_back_automatically(release, record, version)

    def _roll_back_automatically(
        self, failed: Release, record: ReleaseRecord, version: str | None
    ) -> DeployResult | None:
        target = record.last_good(excluding_image=failed.image)
        if target is None:
            self.log.error("rollback_impossible", reason="no_earlier_good_release")
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
        self.log.warning("automatic_rollback_started", image=target.image, failed_image=failed.image)
        return self._roll_out(rollback, record, version)

    def _watch(self, release: Release) -> RolloutState:
        min_available = self.app.manifests.min_available
        last_message = [""]

        def progressed(deployment: dict | None) -> None:
            state = evaluate_rollout(deployment, min_available, release.applied_at)
            if state.message != last_message[0]:
                last_message[0] = state.message
                self.log.info("rollout_progress", image=release.image, phase=state.phase.value, detail=state.message)

        final = self.deployer.kube.watch_object(
            "apps/v1",
            "Deployment",
            self.app.name,
            self.app.namespace,
            until=lambda d: _is_settled(d, release, min_available),
            deadline=self.deadline,
            on_change=progressed,
        )
        state = evaluate_rollout(final, min_available, release.applied_at)
        if final is not None and state.image != release.image:
            # A newer release took over while we watched; ours is not the one running.
            return RolloutState(RolloutPhase.FAILED, REPLACED, f"the Deployment now runs {state.image}")
        return state

    def _bake(self, rollback: Release) -> RolloutState:
        """Keeps watching a finished automatic rollback: the region counts as recovered
        only if it stays complete for rollout.rollback_bake_seconds."""
        min_available = self.app.manifests.min_available
        bake = self.deployer.config.rollout.rollback_bake_seconds
        self.log.info("rollback_baking", image=rollback.image, seconds=bake)
        final = self.deployer.kube.watch_object(
            "apps/v1",
            "Deployment",
            self.app.name,
            self.app.namespace,
            until=lambda d: evaluate_rollout(d, min_available).phase is not RolloutPhase.COMPLETE,
            deadline=min(self.deadline, self.deployer.monotonic() + bake),
        )
        return evaluate_rollout(final, min_available)

    # --- results ------------------------------------------------------------------------

    def _report_release(self, release: Release, record: ReleaseRecord) -> DeployResult:
        if release.rollback_of and self.request.kind == "deploy":
            status: DeployStatus = "rolled_back" if release.status == "succeeded" else "failed"
            failed = record.find(release.rollback_of)
            return self._report(
                status,
                failed.reason if failed else release.reason,
                message=f"rolled back to {release.image}" if status == "rolled_back" else "rollback failed",
                image=failed.image if failed else None,
                rolled_back_to=release.image,
                manifest_hash=release.manifest_hash,
            )
        final: DeployStatus = "superseded" if release.status == "superseded" else "failed"
        if release.status == "succeeded":
            final = "succeeded"
        return self._report(final, release.reason, image=release.image, manifest_hash=release.manifest_hash)

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
        result = DeployResult(
            release_id=self.request.release_id,
            app=self.app.name,
            region=self.request.region,
            kind=self.request.kind,
            status=status,
            reason=reason,
            message=message,
            image=image,
            trigger=self.request.trigger,
            issued_at=self.request.issued_at,
            wave=self.request.wave,
            follow_waves=self.request.follow_waves,
            manifest_hash=manifest_hash,
            rolled_back_to=rolled_back_to,
            finished_at=self.deployer.now(),
        )
        self.deployer.publish_result(result)
        self.log.info("result_published", status=status, reason=reason)
        return result


def _is_settled(deployment: dict | None, release: Release, min_available: int) -> bool:
    state = evaluate_rollout(deployment, min_available, release.applied_at)
    return state.done or (deployment is not None and state.image != release.image)


def apply_release(kube: KubeClient, rendered: RenderedRelease, app: App, log: BoundLogger) -> None:
    """Server-side-applies every object, the Namespace first. A Deployment created now is
    scaled once to the HPA's minimum, as the HPA would, so the first rollout does not
    wait for the HPA's first sync; the HPA owns `replicas` from then on."""
    deployment = rendered.find("Deployment")
    existed = kube.get("apps/v1", "Deployment", deployment["metadata"]["name"], app.namespace) is not None
    for obj in rendered.objects:
        kube.apply(obj)
    if not existed:
        kube.scale_deployment(
            app.name,
            app.namespace,
            app.manifests.min_replicas,
            manager=kube.field_manager + INITIAL_SCALE_MANAGER_SUFFIX,
        )
    log.info(
        "manifests_applied",
        objects=[object_key(o) for o in rendered.objects],
        manifest_hash=rendered.manifest_hash,
        field_manager=kube.field_manager,
    )
