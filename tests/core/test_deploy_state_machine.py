"""Explores interleavings of deploy_region's state machine (shared/flows/deploy.py) on an
in-memory Kubernetes API, and checks the invariants of docs/architecture.md after each.

What is explored (Hypothesis draws it; the run is derandomized and keeps no database,
so CI is deterministic):
- a few deploy requests for one app in one region, with distinct `issued_at`, some of
  them the same digest under another release id, some of them images that never become
  available (`sha256:0badc0de…`), optionally after a good release already runs;
- a fake Pub/Sub that delivers each message until a delivery acks (returns, or raises a
  PermanentError); a Crash, TransientError, NotYet (a conflict is a TransientError) or any
  other exception means a redelivery (as functions/_entry.py does);
- concurrent deliveries: each runs the real RegionDeployer in its own thread, but only
  one thread runs at a time; every in-memory API call (and every tick a watch waits, and
  every result publish) is a scheduling point where the drawn schedule picks which
  delivery goes on, or which message is delivered (first, or again) next. So the order
  of first deliveries, redelivery order and a newer push arriving in between are drawn;
- faults at drawn steps (the n-th call of a named step, e.g. the 2nd `claim write`): the
  function instance dies before or after the call (`after`: the write landed but the
  caller never learned), the API server refuses a write (403/422, at most one per
  schedule), the cluster is unreachable before or after it (a lost answer), or the
  results topic fails a publish;
- rollout speed, failure speed and how many ticks a call may watch (short, so NotYet
  redeliveries happen).
A second test sweeps every fault kind over the first call of every step on a few fixed
schedules, so each crash/refusal point is covered whatever Hypothesis draws.

Only the Kubernetes API (tests/core/inmemory_kube.py, with a fake Deployment controller
and HPA), the results topic and Pub/Sub delivery are replaced; the deployer, the release
record (ReleaseStore), decide() and the config (config/sandbox.yaml) are the real ones.
The deployer's clocks are the in-memory cluster's (one tick a second), so rollout
conditions and applied_at agree.

Invariants checked once every message is acked (0 and 6 along the way):
0. no delivery dies of an unexpected exception (a bug, not a fault);
1. every claimed release ends terminal, and every request published a terminal result
   (except a duplicate of a release still rolling out: then its owner's request did);
2. once settled, the Deployment runs the image the record calls current, and that
   release succeeded (or failed with no earlier good release to roll back to);
3. in the log of Deployment writes, the release stamps never go back in release order;
4. a broken newest request ends rolled back to the last good image, or failed when there
   was none;
5. a newest request that is not broken is what runs at the end;
6. no message needs more than MAX_DELIVERIES deliveries ("a message keeps cycling").
(4 and 5 are not asked of a request that a refusal ended on purpose.)

More examples: GEODEPLOY_EXPLORE_EXAMPLES=3000 .venv/bin/python -m pytest -s \
tests/core/test_deploy_state_machine.py -k every_schedule   (add GEODEPLOY_EXPLORE_STRICT=1
to fail on open findings too). A failure prints the schedule step by step. Each finding
is written down at the end of this file as a readable replay: xfail (strict) while it is
open, a plain regression test once fixed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters.release_store import ReleaseStore
from shared.contracts import DeployRequest, DeployResult
from shared.errors import NotYet, PermanentError, TransientError
from shared.flows.deploy import RegionDeployer
from shared.logs import BoundLogger
from shared.releases import ROLLBACK_SUFFIX, ReleaseRecord
from tests.core.builders import at, deploy_request, ref, shipped_config
from tests.core.inmemory_kube import (
    Crash,
    Fault,
    InMemoryCluster,
    InMemoryKube,
    RolloutTiming,
    broken_image,
)

EXAMPLES = int(os.environ.get("GEODEPLOY_EXPLORE_EXAMPLES", "200"))
MAX_DELIVERIES = 12  # per message; more is a finding ("a message keeps cycling")
MAX_FAULTS = 3  # per schedule
# Refusals per schedule: a refused call ends its request on purpose, and two in one call
# would leave the flow nothing it could still write its end with.
MAX_REFUSALS = 1
SETTLE_TICKS = 30  # the controller's ticks after the last ack, before the end state is read
WAIT_SECONDS = 30.0  # a safety net against a deadlocked turnstile, never reached in a good run

CONFIG = shipped_config("sandbox")
APP = CONFIG.app("shop")
REGION = CONFIG.region("europe-west1")
DEPLOYMENT_KEY = ("apps/v1", "Deployment", APP.namespace, APP.name)
IMAGES = {
    "v0": ref("v0", APP.repository),
    "v1": ref("v1", APP.repository),
    "v2": ref("v2", APP.repository),
    "v3": ref("v3", APP.repository),
    "bad": broken_image(APP.repository, "bad"),
}
BROKEN = {"bad"}
TERMINAL_RESULTS = {"succeeded", "unchanged", "failed", "rolled_back", "superseded", "rejected"}
KUBE_FAULTS = (
    Fault("crash", "before"),
    Fault("crash", "after"),
    Fault("unreachable", "before"),
    Fault("unreachable", "after"),
)
REFUSALS = (Fault("kube_403"), Fault("kube_422"))
PUBLISH_FAULTS = (Fault("crash", "before"), Fault("crash", "after"), Fault("publish_fails"))

COVERAGE: Counter[tuple[str, str]] = Counter()  # (step, fault) injected, over the whole run
STEPS_SEEN: Counter[str] = Counter()
STATS: Counter[str] = Counter()


class Abandoned(BaseException):
    """Unwinds a parked delivery thread when its exploration ends early."""


# --- the scenario -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """`images[i]` is request i's image key; requests are issued in that order (at(i+1)).
    `seeded`: a good release (v0, issued at(0)) runs before any of them is delivered."""

    images: tuple[str, ...]
    seeded: bool = False
    complete_after: int = 3
    fail_after: int = 4
    watch_ticks: int = 6

    def requests(self) -> list[tuple[str, DeployRequest]]:
        out = [("v0", request(0, "v0"))] if self.seeded else []
        return out + [(key, request(i + 1, key)) for i, key in enumerate(self.images)]


def request(i: int, key: str) -> DeployRequest:
    return deploy_request(IMAGES[key], release_id=release_id(i, key), issued_at=at(i), region=REGION.name)


def release_id(i: int, key: str) -> str:
    return f"rel-{i}-{key}"


# --- the exploration's moving parts -------------------------------------------------------------


@dataclass(eq=False)
class Message:
    index: int
    key: str  # image key
    request: DeployRequest
    deliveries: int = 0
    acked: bool = False
    in_flight: bool = False
    refused: bool = False  # a refusal was injected into one of its deliveries

    @property
    def label(self) -> str:
        return self.request.release_id

    @property
    def broken(self) -> bool:
        return self.key in BROKEN


@dataclass(eq=False)
class Delivery:
    message: Message
    number: int  # 1 for the first delivery of the message
    state: str = "new"  # new → running ⇄ parked → finished
    step: str = ""  # where it is parked: the call it is about to make
    faultable: bool = False
    granted: Fault | None = None
    outcome: str = ""  # ack or redeliver
    detail: str = ""
    unexpected: str = ""
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    thread: threading.Thread | None = None

    @property
    def label(self) -> str:
        return f"{self.message.label}#{self.number}"

    def logged(self, event: str) -> bool:
        return any(name == event for name, _ in self.events)


@dataclass(frozen=True)
class Option:
    message: Message
    delivery: Delivery | None  # None: start a new delivery of the message

    def __str__(self) -> str:
        if self.delivery is None:
            return f"deliver {self.message.label} (delivery {self.message.deliveries + 1})"
        return f"{self.delivery.label} → {self.delivery.step}"


class Chooser(Protocol):
    def pick(self, options: Sequence[Option]) -> int: ...

    def fault(self, delivery: Delivery, allowed: Sequence[Fault]) -> Fault | None: ...

    def finished(self, delivery: Delivery) -> None: ...


class _Collect(logging.Handler):
    def __init__(self, exploration: Exploration) -> None:
        super().__init__(logging.DEBUG)
        self._exploration = exploration

    def emit(self, record: logging.LogRecord) -> None:
        fields = dict(getattr(record, "fields", {}))
        self._exploration.logged(fields.get("delivery", ""), record.getMessage(), fields)


@dataclass(frozen=True)
class Published:
    result: DeployResult
    delivery: str
    tick: int


class Exploration:
    """One schedule: the messages, their deliveries as threads, and the turnstile that
    lets exactly one of them (or this, the scheduling thread) run at a time."""

    def __init__(self, scenario: Scenario, chooser: Chooser) -> None:
        self.scenario = scenario
        self.chooser = chooser
        self.cluster = InMemoryCluster(RolloutTiming(scenario.complete_after, scenario.fail_after))
        self.messages = [Message(i, key, req) for i, (key, req) in enumerate(scenario.requests())]
        self.deliveries: list[Delivery] = []
        self.published: list[Published] = []
        self.trace: list[str] = []
        self.faults = 0
        self.refusals = 0
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []  # (number, delivery, event, fields)
        self.injected: list[tuple[str, str, Fault]] = []  # (delivery, step, fault)
        self.cycling = ""
        self.cycling_message: Message | None = None
        self._cond = threading.Condition()
        self._turn: Delivery | None = None
        self._aborted = False
        self._by_label: dict[str, Delivery] = {}
        self._logger = logging.Logger("geodeploy.explore", logging.DEBUG)
        self._logger.propagate = False
        self._logger.addHandler(_Collect(self))

    # --- the scheduling thread ------------------------------------------------------------

    def run(self) -> Exploration:
        try:
            if self.scenario.seeded:
                self._seed(self.messages[0])
            while not self.cycling:
                options = self._options()
                if not options:
                    break
                index = self.chooser.pick(options)
                self._advance(options[index])
            self.cluster.advance(SETTLE_TICKS)
        finally:
            self._close()
        return self

    def _seed(self, message: Message) -> None:
        """Delivers the seed request alone, with no faults, until it is acked."""
        while not message.acked and not self.cycling:
            delivery = self._start(message)
            self._grant(delivery, None)
            while delivery.state != "finished":
                self._trace(delivery, None)
                self._grant(delivery, None)
            self._finish(delivery)

    def _options(self) -> list[Option]:
        parked = [Option(d.message, d) for d in self.deliveries if d.state == "parked"]
        fresh = [Option(m, None) for m in self.messages if not m.acked and not m.in_flight]
        return sorted(parked, key=lambda o: o.message.index) + fresh

    def _advance(self, option: Option) -> None:
        if option.delivery is None:
            delivery = self._start(option.message)
            self.trace.append(f"t={self.cluster.tick:3} {delivery.label}: delivered")
            self._grant(delivery, None)
        else:
            delivery = option.delivery
            fault = None
            if delivery.faultable:
                STEPS_SEEN[delivery.step] += 1
                allowed = self._allowed_faults(delivery.step)
                fault = self.chooser.fault(delivery, allowed) if allowed else None
            if fault is not None:
                self.faults += 1
                self.injected.append((delivery.label, delivery.step, fault))
                COVERAGE[(delivery.step, str(fault))] += 1
                if fault in REFUSALS:
                    self.refusals += 1
                    delivery.message.refused = True
            self._trace(delivery, fault)
            self._grant(delivery, fault)
        if delivery.state == "finished":
            self._finish(delivery)

    def _allowed_faults(self, step: str) -> Sequence[Fault]:
        if self.faults >= MAX_FAULTS:
            return ()
        if step.startswith("publish "):
            return PUBLISH_FAULTS
        # The API server refuses writes (403, 422); a read it refuses is a broken setup, not a step.
        writes = not (step.endswith((" read", "watch")) or step == "record read")
        return KUBE_FAULTS + (REFUSALS if writes and self.refusals < MAX_REFUSALS else ())

    def _start(self, message: Message) -> Delivery:
        message.deliveries += 1
        message.in_flight = True
        delivery = Delivery(message, message.deliveries)
        self.deliveries.append(delivery)
        self._by_label[delivery.label] = delivery
        delivery.thread = threading.Thread(target=self._deliver, args=(delivery,), name=delivery.label, daemon=True)
        delivery.thread.start()
        return delivery

    def _grant(self, delivery: Delivery, fault: Fault | None) -> None:
        """Lets `delivery` run until its next scheduling point or its end."""
        with self._cond:
            delivery.granted = fault
            self._turn = delivery
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._turn is None, timeout=WAIT_SECONDS):
                raise RuntimeError(f"{delivery.label} neither reached a scheduling point nor ended")

    def _finish(self, delivery: Delivery) -> None:
        message = delivery.message
        message.in_flight = False
        STATS["deliveries"] += 1
        self.trace.append(f"t={self.cluster.tick:3} {delivery.label}: {delivery.outcome} ({delivery.detail})")
        self.chooser.finished(delivery)
        if delivery.outcome == "ack":
            message.acked = True
        elif message.deliveries >= MAX_DELIVERIES:
            self.cycling = f"{message.label} was delivered {message.deliveries} times and never acked"
            self.cycling_message = message

    def _trace(self, delivery: Delivery, fault: Fault | None) -> None:
        if delivery.faultable:
            suffix = f"   ← {fault}" if fault else ""
            self.trace.append(f"t={self.cluster.tick:3} {delivery.label}: {delivery.step}{suffix}")

    def _close(self) -> None:
        with self._cond:
            self._aborted = True
            self._cond.notify_all()
        for delivery in self.deliveries:
            if delivery.thread is not None:
                delivery.thread.join(WAIT_SECONDS)

    # --- delivery threads ---------------------------------------------------------------

    def _park(self, delivery: Delivery, step: str, faultable: bool) -> Fault | None:
        with self._cond:
            delivery.step, delivery.faultable, delivery.state = step, faultable, "parked"
            self._turn = None
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._turn is delivery or self._aborted, timeout=WAIT_SECONDS):
                raise Abandoned("never scheduled again")
            if self._aborted:
                raise Abandoned("the exploration ended")
            delivery.state = "running"
            fault, delivery.granted = delivery.granted, None
            return fault

    def _deliver(self, delivery: Delivery) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._turn is delivery or self._aborted, timeout=WAIT_SECONDS)
            delivery.state = "running"
        try:
            if self._aborted:
                raise Abandoned("the exploration ended")
            kube = InMemoryKube(
                self.cluster,
                field_manager=CONFIG.field_manager,
                name=REGION.cluster.name,
                gate=lambda step, faultable: self._park(delivery, step, faultable),
                writer=delivery.label,
                watch_ticks=self.scenario.watch_ticks,
            )
            deployer = RegionDeployer(
                config=CONFIG,
                region=REGION,
                kube=kube,  # type: ignore[arg-type]
                publish_result=lambda result: self._publish(delivery, result),
                log=BoundLogger(self._logger, {"delivery": delivery.label}),
                now=self.cluster.now,
                monotonic=self.cluster.monotonic,
            )
            result = deployer.handle(delivery.message.request)
            delivery.outcome, delivery.detail = "ack", f"returned {result.status if result else None}"
        except PermanentError as e:  # as functions/_entry.py: logged and acked
            delivery.outcome, delivery.detail = "ack", f"PermanentError {e.reason}"
        except Abandoned:
            delivery.outcome, delivery.detail = "abandoned", "the exploration ended"
        except Crash as e:
            delivery.outcome, delivery.detail = "redeliver", f"crashed: {e}"
        except (NotYet, TransientError) as e:
            delivery.outcome, delivery.detail = "redeliver", f"{type(e).__name__}: {str(e)[:120]}"
        except Exception as e:
            delivery.outcome, delivery.detail = "redeliver", f"unexpected {type(e).__name__}: {e}"
            delivery.unexpected = traceback.format_exc()
        finally:
            with self._cond:
                delivery.state = "finished"
                self._turn = None
                self._cond.notify_all()

    def _publish(self, delivery: Delivery, result: DeployResult) -> None:
        fault = self._park(delivery, f"publish {result.status}", True)
        if fault is not None and fault.kind == "crash" and fault.when == "before":
            raise Crash(f"publish {result.status}: injected crash before the call")
        if fault is not None and fault.kind == "publish_fails":
            raise TransientError(f"publish {result.status}: the results topic failed (injected)")
        self.published.append(Published(result, delivery.label, self.cluster.tick))
        self.trace.append(f"t={self.cluster.tick:3} {delivery.label}:     published {result.status} {result.reason}")
        if fault is not None and fault.kind == "crash":
            raise Crash(f"publish {result.status}: injected crash after the call")

    def logged(self, label: str, event: str, fields: dict[str, Any]) -> None:
        delivery = self._by_label.get(label)
        if delivery is not None:
            delivery.events.append((event, fields))
            self.events.append((len(self.events), label, event, fields))
        if event in _TRACED_EVENTS:
            shown = {k: v for k, v in fields.items() if k in ("action", "reason", "status", "superseded_release")}
            self.trace.append(f"t={self.cluster.tick:3} {label}:     · {event} {shown or ''}".rstrip())

    # --- reading the end state --------------------------------------------------------------

    def delivery(self, label: str) -> Delivery:
        return self._by_label[label]

    def record(self) -> ReleaseRecord:
        return ReleaseStore(InMemoryKube(self.cluster), APP).read()[0]  # type: ignore[arg-type]

    def results_of(self, release_id: str) -> list[DeployResult]:
        return [p.result for p in self.published if p.result.release_id == release_id]

    def report(self) -> str:
        record = self.record()
        lines = [
            f"scenario: {self.scenario}",
            "requests: " + ", ".join(f"{m.label} ({m.key}, issued {m.request.issued_at:%H:%M})" for m in self.messages),
            "schedule:",
            *(f"  {line}" for line in self.trace),
            "record (newest first): "
            + ", ".join(f"{r.release_id}={r.status}{'/' + r.reason if r.reason else ''}" for r in record.history),
            "Deployment writes: "
            + ", ".join(
                f"t={w.tick} {w.release} by {w.writer}"
                for w in self.cluster.deployment_writes
                if w.verb in ("apply", "create")
            ),
        ]
        return "\n".join(lines)


_TRACED_EVENTS = {
    "request_decided",
    "release_claimed",
    "release_superseded",
    "release_refused",
    "rollout_failed",
    "rollout_succeeded",
    "rollback_impossible",
    "release_reapplied",
    "duplicate_ignored",
    "release_record_changed",
    "request_already_handled",
}


# --- the invariants ---------------------------------------------------------------------------

# Findings this exploration made, each written down below as a replay. A violation it can
# tell is one of them is labelled so. The exploration tolerates only the OPEN ones (their
# replays are xfail), so it stays useful for finding new ones until they are fixed;
# GEODEPLOY_EXPLORE_STRICT=1 tolerates none. F1-F4 are fixed (their replays are plain
# regression tests now): met again, they fail the run like any new violation.
DUPLICATE_FORGETS_ITS_ORDER = "F1 duplicate-forgets-its-order"
UNGUARDED_CREATE_RACE = "F2 unguarded-create-race"
REFUSED_SUPERSEDED_WRITE = "F3 refused-superseded-write"
FAILED_IMAGE_REAPPLIED = "F4 failed-image-reapplied-never-decides"
OPEN_FINDINGS: frozenset[str] = frozenset()  # none: F1-F4 are fixed
STRICT = os.environ.get("GEODEPLOY_EXPLORE_STRICT", "") not in ("", "0")


@dataclass(frozen=True)
class Violation:
    invariant: int
    text: str
    known: str | None = None  # the finding it is an instance of, if it is one already written down

    def __str__(self) -> str:
        return f"{self.invariant}: {self.text}" + (f"   [{self.known}]" if self.known else "")


def violations(x: Exploration) -> list[Violation]:
    record = x.record()
    found = []
    if x.cycling_message is not None:
        f4 = _reapplied_over_itself(x, x.cycling_message.label)
        found.append(Violation(6, x.cycling, FAILED_IMAGE_REAPPLIED if f4 else None))
    for d in x.deliveries:
        if d.unexpected:
            found.append(Violation(0, f"{d.label} died of an {d.detail}\n{d.unexpected}"))
    deployment = x.cluster.read(DEPLOYMENT_KEY)
    running = _image_of(deployment)

    # 1. every claimed release ends; every request published a terminal result
    for r in record.history:
        if not r.finished:
            known = REFUSED_SUPERSEDED_WRITE if _refused_at(x, _request_of(r.release_id), "superseded write") else None
            known = FAILED_IMAGE_REAPPLIED if _reapplied_over_itself(x, r.release_id) else known
            found.append(Violation(1, f"release {r.release_id} was claimed and left {r.status!r}", known))
    for m in x.messages:
        if not m.acked or _terminal_results(x, m.label):
            continue  # not acked: only when cycling, reported above
        if _ignored_as_duplicate(x, m) is not None:
            owners = [r for r in record.history if r.image == m.request.image and r.release_id != m.label]
            if not any(_terminal_results(x, _request_of(r.release_id)) for r in owners):
                found.append(Violation(1, f"{m.label} was ignored as a duplicate, and no owner of its image ended"))
            continue
        statuses = [r.status for r in x.results_of(m.label)]
        found.append(Violation(1, f"{m.label} was acked with no terminal result (published: {statuses})"))

    # 3. no older apply lands after a newer one
    highest: tuple[Any, str] | None = None
    last_apply_was_a_lost_create_race = False  # F2: the region ends running the older apply
    for w in x.cluster.deployment_writes:
        if w.verb not in ("apply", "create"):
            continue
        if w.order is None:
            found.append(Violation(3, f"t={w.tick} {w.writer} applied the Deployment without a release stamp"))
        elif highest is not None and w.order < highest[0]:
            known = None if w.guarded else UNGUARDED_CREATE_RACE
            text = f"t={w.tick} {w.writer} applied {w.release} after {highest[1]} (a newer release) had been applied"
            found.append(Violation(3, text + ("" if w.guarded else ", unguarded: the Deployment was new"), known))
            last_apply_was_a_lost_create_race = not w.guarded
        elif w.order is not None:
            last_apply_was_a_lost_create_race = False
        if w.order is not None and (highest is None or w.order > highest[0]):
            highest = (w.order, w.release or "")

    # 2. the record matches the cluster
    current = record.current
    refused = any(m.refused for m in x.messages)
    if current is None:
        if deployment is not None:
            found.append(Violation(2, f"the Deployment runs {_key_of(running)} but the record has no release"))
    elif current.status == "succeeded":
        if running != current.image:
            text = (
                f"the record's current {current.release_id} succeeded with {_key_of(current.image)}, "
                f"but the Deployment runs {_key_of(running)}"
            )
            found.append(Violation(2, text, UNGUARDED_CREATE_RACE if last_apply_was_a_lost_create_race else None))
    elif current.status == "failed" and (refused or record.last_good(current.image, APP.repository) is None):
        if running != current.image and not refused:
            found.append(Violation(2, f"{current.release_id} failed with no earlier good release, yet {running} runs"))
    else:
        known = (
            REFUSED_SUPERSEDED_WRITE if _refused_at(x, _request_of(current.release_id), "superseded write") else None
        )
        known = FAILED_IMAGE_REAPPLIED if _reapplied_over_itself(x, current.release_id) else known
        found.append(Violation(2, f"the record's current release {current.release_id} ended {current.status!r}", known))

    # 4 and 5. the newest request's fate
    newest = max(x.messages, key=lambda m: m.request.issued_at)
    results = _terminal_results(x, newest.label)
    same_image_refused = any(m.refused for m in x.messages if m.request.image == newest.request.image)
    if newest.refused or any(r.status == "rejected" for r in results):
        return found  # a refusal ended it on purpose
    if _ignored_as_duplicate(x, newest) is not None and same_image_refused:
        return found  # ignored as a duplicate of a release that a refusal ended
    known = DUPLICATE_FORGETS_ITS_ORDER if _older_took_over_a_duplicate(x, newest, record) else None
    if last_apply_was_a_lost_create_race:
        known = UNGUARDED_CREATE_RACE
    if _reapplied_over_itself(x, newest.label):
        known = FAILED_IMAGE_REAPPLIED
    entry = record.find(newest.label) or next((r for r in record.history if r.image == newest.request.image), None)
    if newest.broken:
        if entry is None:
            found.append(Violation(4, f"the broken newest {newest.label} was never claimed", known))
            return found
        owner_results = results or _terminal_results(x, _request_of(entry.release_id))
        reported = [r.status for r in owner_results]
        older = record.history[record.history.index(entry) + 1 :]
        target = next((r for r in older if r.status == "succeeded" and r.image != entry.image), None)
        if target is not None:
            if running != target.image:
                text = (
                    f"the broken newest {newest.label} should have been rolled back to {_key_of(target.image)}; "
                    f"the Deployment runs {_key_of(running)}"
                )
                found.append(Violation(4, text, known))
            if not any(r.status == "rolled_back" and r.rolled_back_to == target.image for r in owner_results):
                text = f"the broken newest {newest.label} never reported rolled_back (reported: {reported})"
                found.append(Violation(4, text, known))
        elif not any(r.status == "failed" for r in owner_results):
            text = f"the broken newest {newest.label}, with no earlier good release, never reported failed ({reported})"
            found.append(Violation(4, text, known))
    elif running != newest.request.image or current is None or current.image != newest.request.image:
        text = (
            f"the newest request {newest.label} ({newest.key}) is not what runs at the end: the Deployment runs "
            f"{_key_of(running)}, the record's current is {current.release_id if current else None}"
        )
        found.append(Violation(5, text, known))
    return found


def _terminal_results(x: Exploration, release_id: str) -> list[DeployResult]:
    return [r for r in x.results_of(release_id) if r.status in TERMINAL_RESULTS]


def _request_of(release_id: str) -> str:
    return release_id.removesuffix(ROLLBACK_SUFFIX)


def _ignored_as_duplicate(x: Exploration, m: Message) -> int | None:
    """The event number at which an acked delivery of `m` logged duplicate_ignored."""
    return next(
        (
            seq
            for seq, label, event, _ in x.events
            if event == "duplicate_ignored" and x.delivery(label).message is m and x.delivery(label).outcome == "ack"
        ),
        None,
    )


def _older_took_over_a_duplicate(x: Exploration, m: Message, record: ReleaseRecord) -> bool:
    """F1: `m` was ignored as a duplicate of the release then current (so it left no trace
    of its order in the record), and the region ends with a release of an older request."""
    current = record.current
    if _ignored_as_duplicate(x, m) is None or current is None:
        return False
    owner = next((o for o in x.messages if o.label == _request_of(current.release_id)), None)
    return owner is not None and owner.request.issued_at < m.request.issued_at


def _reapplied_over_itself(x: Exploration, release_id: str) -> bool:
    """F4: the release's first apply found its own image already in the Deployment, with
    the previous release's rollout ended ProgressDeadlineExceeded: no new rollout starts,
    and the old condition predates the release, so the watch can never decide."""
    writes = [w for w in x.cluster.deployment_writes if w.verb in ("apply", "create")]
    first = next((i for i, w in enumerate(writes) if w.release == release_id), None)
    return first is not None and first > 0 and writes[first - 1].image == writes[first].image


def _refused_at(x: Exploration, release_id: str, step: str) -> bool:
    return any(
        label.startswith(f"{release_id}#") and at == step and fault in REFUSALS for label, at, fault in x.injected
    )


def _image_of(deployment: dict[str, Any] | None) -> str | None:
    containers = ((deployment or {}).get("spec") or {}).get("template", {}).get("spec", {}).get("containers", [])
    return containers[0].get("image") if containers else None


def _key_of(image: str | None) -> str | None:
    return next((k for k, v in IMAGES.items() if v == image), image)


def assert_invariants(x: Exploration, *, tolerate_known: bool = False) -> None:
    found = violations(x)
    for v in found:
        if v.known:
            KNOWN_SEEN[v.known] += 1
    new = [v for v in found if not (tolerate_known and v.known in OPEN_FINDINGS)]
    assert not new, "invariants violated:\n" + "\n".join(map(str, found)) + "\n\n" + x.report()


KNOWN_SEEN: Counter[str] = Counter()


# --- Hypothesis draws the schedule --------------------------------------------------------------


class DrawnSchedule:
    """Picks the next delivery from Hypothesis's `data`, and injects a drawn fault at the
    calls named in `plan`: (step, n) is the n-th call of that step in the schedule."""

    def __init__(self, data: st.DataObject, plan: set[tuple[str, int]]) -> None:
        self._data = data
        self._plan = plan
        self._seen: Counter[str] = Counter()

    def pick(self, options: Sequence[Option]) -> int:
        return self._data.draw(st.integers(0, len(options) - 1)) if len(options) > 1 else 0

    def fault(self, delivery: Delivery, allowed: Sequence[Fault]) -> Fault | None:
        self._seen[delivery.step] += 1
        if (delivery.step, self._seen[delivery.step]) not in self._plan:
            return None
        return self._data.draw(st.sampled_from(list(allowed)))

    def finished(self, delivery: Delivery) -> None:
        pass


# Every step a delivery can be at when a fault is injected (see InMemoryKube and _publish).
FAULT_STEPS = (
    "record read",
    "namespace apply",
    "claim write",
    "Service apply",
    "Deployment read",
    "Deployment create",
    "Deployment apply",
    "HorizontalPodAutoscaler apply",
    "PodDisruptionBudget apply",
    "initial scale",
    "progressing write",
    "watch",
    "succeeded write",
    "failed write",
    "superseded write",
    "confirm write",
    "publish progressing",
    "publish rolling_back",
    "rollback claim write",
    "bake watch",
    "publish succeeded",
    "publish failed",
    "publish rolled_back",
    "publish superseded",
    "publish unchanged",
    "publish rejected",
)
fault_plans = st.sets(st.tuples(st.sampled_from(FAULT_STEPS), st.integers(1, 2)), min_size=1, max_size=MAX_FAULTS)


timings = {
    "complete_after": st.integers(2, 8),
    "fail_after": st.integers(3, 10),
    "watch_ticks": st.integers(2, 8),
}
scenarios = st.one_of(
    st.builds(
        Scenario,
        images=st.lists(st.sampled_from(["v1", "v2", "v3", "bad"]), min_size=2, max_size=4).map(tuple),
        seeded=st.booleans(),
        **timings,
    ),
    # A broken push after a good release: the automatic rollback's steps, raced and faulted.
    st.builds(
        Scenario,
        images=st.tuples(
            st.lists(st.sampled_from(["v1", "v2"]), max_size=2), st.lists(st.sampled_from(["v3", "bad"]), max_size=1)
        ).map(lambda parts: (*parts[0], "bad", *parts[1])),
        seeded=st.just(True),
        **timings,
    ),
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios, plan=fault_plans, data=st.data())
def _explore(scenario: Scenario, plan: set[tuple[str, int]], data: st.DataObject) -> None:
    STATS["schedules"] += 1
    x = Exploration(scenario, DrawnSchedule(data, plan)).run()
    STATS["faults"] += x.faults
    assert_invariants(x, tolerate_known=not STRICT)


def test_every_schedule_keeps_the_invariants() -> None:
    started = time.monotonic()
    _explore()
    print(
        f"\nexploration: {STATS['schedules']} schedules, {STATS['deliveries']} deliveries, {STATS['faults']} faults "
        f"in {time.monotonic() - started:.1f} s"
    )


@pytest.fixture(scope="module", autouse=True)
def _coverage_report() -> Iterator[None]:
    """After the module's tests (shown with -s): which faults landed where."""
    yield
    print("\nfaults injected, by step (exploration and sweep):")
    for (step, fault), n in sorted(COVERAGE.items()):
        print(f"  {step:32} {fault:22} {n}")
    print("steps met but never faulted:", sorted(set(STEPS_SEEN) - {step for step, _ in COVERAGE}))
    print("findings met (open ones tolerated unless GEODEPLOY_EXPLORE_STRICT=1):", dict(KNOWN_SEEN))


# --- every fault at every step, on a few fixed schedules -------------------------------------------


class SweepSchedule:
    """Injects each (step, fault) of `plan` at the first call of that step; runs the oldest
    ready delivery first or (rotate) each ready one in turn, so deliveries interleave."""

    def __init__(self, plan: Sequence[tuple[str, Fault]], *, rotate: bool) -> None:
        self._plan = list(plan)
        self._rotate = rotate
        self._turns = 0

    @property
    def injected(self) -> bool:
        return not self._plan

    def pick(self, options: Sequence[Option]) -> int:
        self._turns += 1
        return self._turns % len(options) if self._rotate else 0

    def fault(self, delivery: Delivery, allowed: Sequence[Fault]) -> Fault | None:
        if self._plan and delivery.step == self._plan[0][0] and self._plan[0][1] in allowed:
            return self._plan.pop(0)[1]
        return None

    def finished(self, delivery: Delivery) -> None:
        pass


SWEEP_SCENARIOS = (
    # v1 rolls out (slowly: a NotYet first), then a broken push fails, is rolled back to v1, baked.
    (Scenario(("v1", "bad"), seeded=True, complete_after=8, fail_after=6, watch_ticks=3), False),
    # Three pushes racing, one a duplicate of another's digest.
    (Scenario(("v1", "v2", "v1"), complete_after=3, watch_ticks=4), True),
    # The same digest pushed twice: the second confirms the first and reports `unchanged`.
    (Scenario(("v1", "v1")), False),
    # A broken first release: nothing to roll back to.
    (Scenario(("bad",), fail_after=4), False),
)
ALL_FAULTS = (*KUBE_FAULTS, *REFUSALS, Fault("publish_fails"))
# Steps only a first fault leads to: (the step, the fault that leads there).
LED_TO_BY = {"publish rejected": ("claim write", Fault("kube_403"))}


def test_every_fault_at_every_step_keeps_the_invariants() -> None:
    """Each fault kind at the first call of each step, in each of SWEEP_SCENARIOS."""
    started, runs = time.monotonic(), 0
    failures = []
    for scenario, rotate in SWEEP_SCENARIOS:
        for step in FAULT_STEPS:
            for fault in ALL_FAULTS:
                plan = [LED_TO_BY[step], (step, fault)] if step in LED_TO_BY else [(step, fault)]
                schedule = SweepSchedule(plan, rotate=rotate)
                x = Exploration(scenario, schedule).run()
                if not schedule.injected:
                    continue  # this step never met this fault here (e.g. refusals of reads)
                runs += 1
                found = violations(x)
                for v in found:
                    if v.known:
                        KNOWN_SEEN[v.known] += 1
                unknown = [v for v in found if STRICT or v.known not in OPEN_FINDINGS]
                if unknown:
                    failures.append(f"{step} ← {fault} in {scenario}:\n" + "\n".join(map(str, unknown)))
    print(f"\nsweep: {runs} faulted schedules in {time.monotonic() - started:.1f} s")
    assert not failures, "\n\n".join(failures)


# --- replays: a schedule written down step by step ----------------------------------------------


@dataclass(frozen=True)
class Step:
    """Run `request`'s current delivery (delivering it anew if none is in flight) until it
    is about to make the call `until` (its `occurrence`-th time in this step), then inject
    `fault` into that call, or leave it parked there if no fault (`past`: let it make that
    call, then park at its next one). `until=None`: run the delivery to its end."""

    request: str
    until: str | None = None
    fault: Fault | None = None
    occurrence: int = 1
    past: bool = False


def run_until(request: str, step: str, occurrence: int = 1) -> Step:
    return Step(request, step, None, occurrence)


def fault_at(request: str, step: str, fault: Fault, occurrence: int = 1) -> Step:
    return Step(request, step, fault, occurrence)


def run_past(request: str, step: str, occurrence: int = 1) -> Step:
    return Step(request, step, None, occurrence, past=True)


def run_to_end(request: str) -> Step:
    return Step(request)


class ScriptError(Exception):
    """The replay's script cannot be followed (the flow took another path): not a finding."""


class ScriptedSchedule:
    """Follows the steps; once they are done, runs whatever is ready, oldest message first,
    with no faults."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self._steps = list(steps)
        self._seen = 0
        self._pending: Fault | None = None
        self._passing: Delivery | None = None  # made the call of a `past` step: stop at its next

    def pick(self, options: Sequence[Option]) -> int:
        while self._steps:
            if self._passing is not None:
                self._passing = None
                self._steps.pop(0)
                continue
            step = self._steps[0]
            index = next((i for i, o in enumerate(options) if o.message.label == step.request), None)
            if index is None:
                raise ScriptError(f"the script's step {step} cannot run: ready are {[str(o) for o in options]}")
            delivery = options[index].delivery
            if step.until is not None and delivery is not None and delivery.step == step.until:
                self._seen += 1
                if self._seen == step.occurrence:
                    self._seen = 0
                    if step.past:
                        self._passing = delivery
                        return index
                    self._steps.pop(0)
                    if step.fault is None:
                        continue
                    self._pending = step.fault
            return index
        return 0

    def fault(self, delivery: Delivery, allowed: Sequence[Fault]) -> Fault | None:
        fault, self._pending = self._pending, None
        return fault

    def finished(self, delivery: Delivery) -> None:
        if not self._steps:
            return
        step = self._steps[0]
        if self._passing is delivery:
            self._passing = None
            self._steps.pop(0)
        elif step.request == delivery.message.label:
            if step.until is not None:
                raise ScriptError(f"{delivery.label} ended ({delivery.detail}) before reaching {step.until!r}")
            self._steps.pop(0)


def replay(scenario: Scenario, steps: Sequence[Step]) -> Exploration:
    schedule = ScriptedSchedule(steps)
    x = Exploration(scenario, schedule).run()
    if schedule._steps:
        raise ScriptError(f"the script did not run to its end: {schedule._steps}")
    return x


def test_the_replay_harness_runs_a_plain_sequential_deploy() -> None:
    x = replay(Scenario(("v1", "v2"), seeded=True), [run_to_end("rel-1-v1"), run_to_end("rel-2-v2")])
    assert_invariants(x)
    assert [r.status for r in x.results_of("rel-2-v2") if r.status in TERMINAL_RESULTS] == ["succeeded"]
    assert _image_of(x.cluster.read(DEPLOYMENT_KEY)) == IMAGES["v2"]


def test_the_replay_harness_rolls_a_broken_image_back() -> None:
    x = replay(Scenario(("bad",), seeded=True, fail_after=3), [run_to_end("rel-1-bad")])
    assert_invariants(x)
    assert "rolled_back" in [r.status for r in x.results_of("rel-1-bad")]
    assert _image_of(x.cluster.read(DEPLOYMENT_KEY)) == IMAGES["v0"]


def test_a_crash_after_the_claim_is_finished_by_the_redelivery() -> None:
    x = replay(
        Scenario(("v1",), seeded=True),
        [fault_at("rel-1-v1", "claim write", Fault("crash", "after")), run_to_end("rel-1-v1")],
    )
    assert_invariants(x)
    assert x.messages[1].deliveries == 2


def test_two_first_releases_racing_to_create_the_deployment_leave_the_newer_running() -> None:
    """Was F2, found on the flow as first handed over: the older release read "no
    Deployment", then applied with no resourceVersion to guard it after the newer release
    had created the Deployment and finished, so the region ran v1 while its record said
    v2 succeeded (nobody was left watching to apply v2 again). The flow now POSTs a new
    Deployment (409 if it exists). Kept as a regression test:

    1. rel-1-v1 (12:01) is delivered: reads the record (empty), claims, applies the
       Namespace and Service, reads the Deployment (none yet) and stops right there;
    2. rel-2-v2 (12:02) is delivered and runs to its end: claims on top, creates the
       Deployment, watches it roll out, records and reports `succeeded`;
    3. rel-1-v1 goes on from its Deployment read, to its end."""
    x = replay(
        Scenario(("v1", "v2")),
        [run_past("rel-1-v1", "Deployment read"), run_to_end("rel-2-v2"), run_to_end("rel-1-v1")],
    )
    assert_invariants(x)
    assert _image_of(x.cluster.read(DEPLOYMENT_KEY)) == IMAGES["v2"]


def test_an_older_push_delivered_after_a_newer_duplicate_does_not_replace_it() -> None:
    """Was F1, found on the flow as first handed over (a duplicate was ignored without a
    trace of its issued_at, so an older push delivered after it took the region over; the
    record now keeps `confirmed_by`). No fault at all, one delivery each, in this order:

    1. rel-1-v1 (v1, issued 12:01) is delivered and runs to its end: v1 rolls out, `succeeded`;
    2. rel-3-v1 (the same digest under another tag, issued 12:03) is delivered: a
       duplicate of the running release → `unchanged`, acked;
    3. rel-2-v2 (v2, issued 12:02) is delivered late. It must not replace v1: the newest
       push (12:03) asked for v1."""
    x = replay(
        Scenario(("v1", "v2", "v1")),
        [run_to_end("rel-1-v1"), run_to_end("rel-3-v1"), run_to_end("rel-2-v2")],
    )
    assert_invariants(x)
    assert _image_of(x.cluster.read(DEPLOYMENT_KEY)) == IMAGES["v1"]


def test_a_newer_duplicate_of_a_release_in_progress_is_not_lost_to_an_older_push() -> None:
    """Was F1's second form: the newest request, a duplicate of a release still rolling
    out, was acked with no result; an older push then superseded its owner, and nobody
    ever reported what became of the newest request. v0 already runs; then, no fault:

    1. rel-1-bad (broken image, issued 12:01) is delivered: claims its release, applies
       the Namespace, and stops before applying the Service;
    2. rel-3-bad (the same broken digest, issued 12:03) is delivered: a duplicate of the
       release in progress → no result of its own, acked;
    3. rel-2-v2 (issued 12:02) is delivered and runs to its end;
    4. rel-1-bad goes on, to its end (it must fail and be rolled back to v0, reported)."""
    x = replay(
        Scenario(("bad", "v2", "bad"), seeded=True),
        [
            run_until("rel-1-bad", "Service apply"),
            run_to_end("rel-3-bad"),
            run_to_end("rel-2-v2"),
            run_to_end("rel-1-bad"),
        ],
    )
    assert_invariants(x)


def test_a_refused_write_of_a_superseded_release_still_leaves_it_ended() -> None:
    """Was F3, found on the flow as first handed over: a 403 on the write that marked a
    release `superseded` was not handled, so its request reported `rejected` (meant for
    "refused before anything was claimed") and the release stayed `applying` in the
    record for good. A claim now supersedes every unfinished release in the same write.
    One refusal, nothing else:

    1. rel-1-v1 (issued 12:01) is delivered: reads the empty record, claims, applies the
       Namespace and stops before the Service;
    2. rel-2-v2 (issued 12:02) is delivered: claims on top of rel-1-v1, applies the
       Namespace and stops before the Service;
    3. rel-1-v1 goes on, and its next record write is refused with 403 (injected);
    4. rel-2-v2 runs to its end: `succeeded`."""
    x = replay(
        Scenario(("v1", "v2")),
        [
            run_until("rel-1-v1", "Service apply"),
            run_until("rel-2-v2", "Service apply"),
            fault_at("rel-1-v1", "progressing write", Fault("kube_403")),
            run_to_end("rel-2-v2"),
        ],
    )
    assert_invariants(x)
    assert "rejected" not in [r.status for r in x.results_of("rel-1-v1")]


# --- F4, fixed: every release is a rollout of its own (the release stamp on the pod template) -------


def test_f4_a_second_push_of_a_digest_that_failed_in_place_ends() -> None:
    """No fault at all, one message after the other:

    1. rel-1-bad (a broken image, issued 12:01) is delivered to an empty region and runs
       to its end: claims, creates the Deployment, the rollout ends ProgressDeadlineExceeded,
       there is no earlier good release → recorded and reported `failed`, acked. The
       Deployment keeps the broken pod template and the ProgressDeadlineExceeded condition;
    2. rel-2-bad (the same digest under another tag, issued 12:02) is delivered: the
       current release failed, so it is not a duplicate → claimed and applied. The pod
       template is unchanged, so the spec (and generation) do not change and no rollout
       starts; the condition's lastUpdateTime is before rel-2-bad's applied_at, so
       evaluate_rollout takes it for the previous rollout's and reports "progressing"
       (0 of 3 available). The watch runs out → `progressing`, NotYet, redelivered;
    3. every redelivery of rel-2-bad resumes, watches the same unchanging Deployment and
       raises NotYet again, until the delivery bound (12) is reached.

    The same happens when an operator deploys a failed digest again, or when the
    rollback after a failed release was itself refused: whatever reapplies an unchanged
    template over a ProgressDeadlineExceeded can never decide."""
    x = replay(Scenario(("bad", "bad"), fail_after=4, watch_ticks=2), [run_to_end("rel-1-bad")])
    found = violations(x)
    assert found == [], "\n".join(map(str, found)) + "\n\n" + x.report()


def test_duplicates_confirming_a_release_one_after_another_cost_it_no_second_apply() -> None:
    """Found in the sandbox (one digest pushed under three tags): the release's status
    write lost to one duplicate's confirmation, merged it, and lost again to the next
    one's, which sent it back to deciding and to applying its manifests once more. v0
    runs; then, no fault:

    1. rel-1-v1 (v1) is delivered: claims, applies, and stops before its `progressing` write;
    2. rel-2-v1 (the same digest, another tag) confirms it, acked;
    3. rel-1-v1's write conflicts; it re-reads, and stops before writing again;
    4. rel-3-v1 (a third tag) confirms it too, acked;
    5. rel-1-v1 goes on to its end: the second conflict is merged like the first."""
    x = replay(
        Scenario(("v1", "v1", "v1"), seeded=True),
        [
            run_until("rel-1-v1", "progressing write"),
            run_to_end("rel-2-v1"),
            run_until("rel-1-v1", "progressing write", occurrence=2),
            run_to_end("rel-3-v1"),
            run_to_end("rel-1-v1"),
        ],
    )
    assert_invariants(x)
    applies = [w for w in x.cluster.deployment_writes if w.verb in ("apply", "create") and w.release == "rel-1-v1"]
    assert len(applies) == 1
    current = x.record().current
    assert current is not None
    assert (current.release_id, current.status, current.confirmed_by) == ("rel-1-v1", "succeeded", "rel-3-v1")
