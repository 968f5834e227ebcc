"""The live view of `deploy --wait` and `rollback --wait`.

Outcomes come from the regions' deploy results, matched to the control message by its
id (every result carries it as trigger.event_id, later waves included). Results are not
the whole story, so the view also polls each region about once a second:
- it prints the region's rollout as it moves (phase, available/desired, image, release);
- a region that already runs the requested release publishes no result at all (deploy_region
  ignores duplicates), so that is predicted with the same rule deploy_region applies
  (`shared.releases.decide`) and then followed in the region's release record;
- waves: a later wave starts only once every region of the earlier one succeeded; when one
  did not, the later regions are reported as not started instead of waited for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from cli.snapshot import RegionSnapshot, read_regions
from cli.views import clock, image_fields, say, short_image, table

if TYPE_CHECKING:
    from cli.context import Context
    from cli.results import ResultFeed
    from shared.contracts import DeployRequest

__all__ = ["Follower", "Outcome", "RegionOutcome", "WaitReport"]

POLL_SECONDS = 1.0


class Outcome(StrEnum):
    """How a targeted region ended, as --wait reports it (docs/cli.md, "--wait")."""

    SUCCEEDED = "succeeded"
    UNCHANGED = "unchanged"  # it already ran exactly this release
    SUPERSEDED = "superseded"  # a newer release is in place instead, by design
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    REJECTED = "rejected"
    NOT_STARTED = "not_started"  # an earlier wave did not succeed
    TIMED_OUT = "timed_out"

    @property
    def ok(self) -> bool:
        """Whether it counts as success for the exit code."""
        return self in (Outcome.SUCCEEDED, Outcome.UNCHANGED, Outcome.SUPERSEDED)


# The deploy results that end a region's request (`rolling_back`, `progressing` do not).
TERMINAL_RESULTS = frozenset(
    {Outcome.SUCCEEDED, Outcome.UNCHANGED, Outcome.FAILED, Outcome.ROLLED_BACK, Outcome.REJECTED, Outcome.SUPERSEDED}
)
# The outcomes after which on_deploy_result starts the next wave.
WAVE_ADVANCES = frozenset({Outcome.SUCCEEDED, Outcome.UNCHANGED})


@dataclass(frozen=True)
class RegionOutcome:
    region: str
    wave: int | None  # None: the release does not follow waves
    outcome: Outcome
    detail: str
    reachable: bool
    running: str | None  # the image the region runs at the end

    def as_json(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "wave": self.wave,
            "outcome": str(self.outcome),
            "ok": self.outcome.ok,
            "detail": self.detail,
            "reachable": self.reachable,
            "running": image_fields(self.running),
        }


@dataclass(frozen=True)
class WaitReport:
    elapsed_seconds: float
    regions: list[RegionOutcome]

    @property
    def failed(self) -> list[RegionOutcome]:
        return [r for r in self.regions if not r.outcome.ok]

    def as_json(self) -> dict[str, Any]:
        return {
            "elapsed_seconds": round(self.elapsed_seconds, 1),
            "succeeded": not self.failed,
            "regions": [r.as_json() for r in self.regions],
        }


@dataclass
class Target:
    request: DeployRequest  # what the region's deploy_region receives
    stage: int
    started: bool = False
    outcome: Outcome | None = None
    detail: str = ""
    follows: str | None = None  # a predicted duplicate: the release already in place
    last_view: tuple[Any, ...] | None = None
    last_result: tuple[Any, ...] | None = None

    @property
    def region(self) -> str:
        return self.request.region


class Follower:
    def __init__(
        self,
        ctx: Context,
        feed: ResultFeed,
        *,
        message_id: str,
        stages: list[list[DeployRequest]],
        title: str,
        summary: bool = True,
    ) -> None:
        self.ctx = ctx
        self.show_summary = summary  # the table at the end (a JSON document carries the same)
        self.feed = feed
        self.message_id = message_id
        self.title = title
        self.stages = [[Target(r, i) for r in stage] for i, stage in enumerate(stages)]
        self.targets = [t for stage in self.stages for t in stage]
        self.by_region = {t.region: t for t in self.targets}
        self.width = max(len(t.region) for t in self.targets)
        self.current_stage = 0

    # --- the loop ------------------------------------------------------------------------------

    def run(self, timeout: float) -> WaitReport:
        started = time.monotonic()
        deadline = started + timeout
        if len(self.stages) > 1:
            waves = " · ".join(f"wave {s[0].request.wave}: {', '.join(t.region for t in s)}" for s in self.stages)
            say(f"{clock()}  waves  {waves}")
        self._start_stage(0)
        while not self._done() and time.monotonic() < deadline:
            tick = time.monotonic()
            pending = [t for t in self.targets if t.outcome is None]
            results = self.feed.pull(timeout=min(POLL_SECONDS, max(0.2, deadline - tick)))
            self._poll(pending)  # before the results: a region's last state, then its outcome
            for result in results:
                self._on_result(result)
            self._advance()
            rest = POLL_SECONDS - (time.monotonic() - tick)
            if rest > 0 and not self._done():
                time.sleep(rest)
        for t in self.targets:
            if t.outcome is None:
                t.outcome, t.detail = Outcome.TIMED_OUT, f"no outcome within {timeout:.0f} s (it may still finish)"
        report = self._report(time.monotonic() - started)
        if self.show_summary:
            self._summary(report)
        return report

    def _done(self) -> bool:
        return all(t.outcome is not None for t in self.targets)

    def _line(self, region: str, text: str) -> None:
        say(f"{clock()}  {region:<{self.width}}  {text}")

    # --- what the regions show -------------------------------------------------------------------

    def _poll(self, pending: list[Target]) -> None:
        for t, snapshot in zip(pending, self._read(pending), strict=True):
            self._show(t, snapshot)
            if t.follows:
                self._follow_duplicate(t, snapshot)

    def _read(self, targets: list[Target]) -> list[RegionSnapshot]:
        return read_regions(self.ctx, [self.ctx.config.region(t.region) for t in targets])

    def _show(self, t: Target, s: RegionSnapshot) -> None:
        if not s.reachable:
            view: tuple[Any, ...] = ("unreachable", s.error)
            text = f"unreachable: {s.error}"
        elif not s.deployed:
            view, text = ("absent",), "not deployed yet"
        else:
            state = s.rollout()
            current = s.record.current
            view = (state.phase, state.available, state.desired, state.image, current and current.release_id,
                    current and current.status)  # fmt: skip
            text = f"{state.phase.value:<11}  {state.available}/{state.desired} available  {short_image(state.image)}"
            if current is not None:
                text += f"  release {current.release_id} {current.status}"
        if view != t.last_view:
            t.last_view = view
            self._line(t.region, text)

    def _follow_duplicate(self, t: Target, s: RegionSnapshot) -> None:
        if not s.reachable:
            return
        current, release = s.record.current, s.record.find(t.follows or "")
        if current is None or release is None or current.release_id == t.request.release_id:
            t.follows = None  # not a duplicate after all: its result will tell
        elif current.release_id != release.release_id:
            t.outcome, t.detail = Outcome.SUPERSEDED, f"release {current.release_id} replaced it"
            self._line(t.region, f"{t.outcome}: {t.detail}")
        elif release.finished:
            t.outcome = Outcome.UNCHANGED if release.status == "succeeded" else Outcome(release.status)
            t.detail = f"already released as {release.release_id}"
            self._line(t.region, f"{t.outcome}: {t.detail}")

    # --- results -----------------------------------------------------------------------------------

    def _on_result(self, r: dict[str, Any]) -> None:
        trigger = r.get("trigger") or {}
        t = self.by_region.get(str(r.get("region")))
        if t is None or trigger.get("event_id") != self.message_id or r.get("app") != self.ctx.app.name:
            return  # another deploy's result, or another app's
        status, reason, message = str(r.get("status")), r.get("reason") or "", r.get("message") or ""
        key = (status, reason, message, r.get("rolled_back_to"))
        if key == t.last_result:
            return  # the same result again (a redelivered request reports twice)
        t.last_result, t.started, t.follows = key, True, None
        # deploy_region reports `rolling_back` when a rollout failed, then the outcome.
        self._line(t.region, f"result: {_describe(status, reason, message, r)}")
        if status in TERMINAL_RESULTS:
            t.outcome, t.detail = Outcome(status), _detail(status, reason, message, r)

    # --- waves ---------------------------------------------------------------------------------------

    def _start_stage(self, index: int) -> None:
        self.current_stage = index
        stage = self.stages[index]
        for t, s in zip(stage, self._read(stage), strict=True):
            t.started = True
            self._show(t, s)
            if t.outcome is None and (release := self._already_released(t, s)) is not None:
                t.follows = release
                self._line(t.region, f"already runs {short_image(t.request.image)} ({release}): nothing new to apply")
                self._follow_duplicate(t, s)

    def _already_released(self, t: Target, s: RegionSnapshot) -> str | None:
        """The release id when deploy_region will treat the request as a duplicate (and so
        publish no result), by the rule it applies itself."""
        from shared.contracts import ImageRef
        from shared.releases import Action, decide
        from shared.rendering import render_release

        if not s.reachable:
            return None  # cannot tell: wait for its result
        config, app, region = self.ctx.config, self.ctx.app, self.ctx.config.region(t.region)

        def manifest_hash(image: str) -> str:
            return render_release(config, app, region, ImageRef.parse(image)).manifest_hash

        decision = decide(t.request, s.record, app.repository, manifest_hash)
        if decision.action is Action.DUPLICATE and decision.release is not None:
            return decision.release.release_id
        return None

    def _advance(self) -> None:
        stage = self.stages[self.current_stage]
        if any(t.outcome is None for t in stage) or self.current_stage + 1 >= len(self.stages):
            return
        outcomes = {t.outcome for t in stage}
        wave = stage[0].request.wave
        if outcomes <= WAVE_ADVANCES:
            following = self.stages[self.current_stage + 1]
            names = ", ".join(t.region for t in following)
            say(f"{clock()}  wave {wave} succeeded; wave {following[0].request.wave} starts: {names}")
            self._start_stage(self.current_stage + 1)
            return
        # No wave advance will come: a wave that did not succeed halts the release.
        why = f"wave {wave} did not succeed"
        later = [t for s in self.stages[self.current_stage + 1 :] for t in s]
        say(f"{clock()}  later waves are not started: {why}")
        for t, s in zip(later, self._read(later), strict=True):
            release = self._already_released(t, s)
            current = s.record.current
            if release is not None and current is not None and current.status == "succeeded":
                t.outcome, t.detail = Outcome.UNCHANGED, f"already released as {release}"
            else:
                t.outcome, t.detail = Outcome.NOT_STARTED, why
            self._line(t.region, f"{t.outcome}: {t.detail}")
        self.current_stage = len(self.stages) - 1

    # --- the end ------------------------------------------------------------------------------------

    def _report(self, elapsed: float) -> WaitReport:
        snapshots = {s.region.name: s for s in self._read(self.targets)}
        follows_waves = len(self.stages) > 1
        regions = []
        for t in self.targets:
            s = snapshots[t.region]
            assert t.outcome is not None  # every target has one by now
            running = s.rollout().image if s.reachable and s.deployed else None
            wave = t.request.wave if follows_waves else None
            regions.append(RegionOutcome(t.region, wave, t.outcome, t.detail, s.reachable, running))
        return WaitReport(elapsed, regions)

    def _summary(self, report: WaitReport) -> None:
        rows = [
            [r.region, r.wave, r.outcome, short_image(r.running) if r.reachable else "unreachable", r.detail]
            for r in report.regions
        ]
        say()
        say(f"{self.title}: done in {report.elapsed_seconds:.0f} s (message {self.message_id})")
        say(table(["REGION", "WAVE", "OUTCOME", "RUNNING", "DETAIL"], rows, indent="  "))


def _describe(status: str, reason: str, message: str, r: dict[str, Any]) -> str:
    why = f" ({reason})" if reason else ""
    if status == Outcome.SUCCEEDED:
        return f"succeeded: running {short_image(r.get('image'))}"
    if status == Outcome.ROLLED_BACK:
        return f"rolled back{why}: {short_image(r.get('image'))} failed, {short_image(r.get('rolled_back_to'))} runs"
    if status == "rolling_back":
        return f"failed{why}: rolling back to {short_image(r.get('rolled_back_to'))}"
    if status == "progressing":
        return f"still progressing: {message or reason}"
    return f"{status}{why}" + (f": {message}" if message else "")


def _detail(status: str, reason: str, message: str, r: dict[str, Any]) -> str:
    """The summary's short account of a region's outcome."""
    if status == Outcome.SUCCEEDED:
        return f"release {r.get('release_id')}"
    if status == Outcome.ROLLED_BACK:
        return f"{reason}: rolled back to {short_image(r.get('rolled_back_to'))}"
    return ": ".join(part for part in (reason, message) if part)
