"""An in-memory stand-in for one region's Kubernetes API, for the fast tier.

`InMemoryCluster` is the API server's state: objects keyed by (apiVersion, kind,
namespace, name), one resourceVersion counter for all of them, a logical clock that
advances one tick per API call, and a fake Deployment controller that moves rollouts on
with the ticks. `InMemoryKube` is one caller's client on it, duck-typed like
`shared.adapters.kube.KubeClient` (same methods, same signatures, same exceptions), with
a `gate` called before every call: the place where a test schedules callers against each
other and injects faults (a crash, a refusal, an unreachable cluster) before or after
the call does its work.

What it models, and only that:
- `create` answers 409 (KubeConflict) when the object exists; `replace` is a PUT that
  honours `metadata.resourceVersion` (KubeConflict when it moved, kube_404 when missing);
- `apply` is server-side apply as geodeploy uses it: the fields given replace the live
  ones, `spec.replicas` set through the scale subresource is kept when the applied
  object has none, `metadata.generation` goes up when the spec changes, and a
  `metadata.resourceVersion` in the applied object is a precondition (KubeConflict);
- a namespaced object cannot be written into a Namespace that does not exist (kube_404);
- the Deployment controller: a spec change is observed one tick later; a changed pod
  template completes `complete_after` ticks after the change, except an image whose digest
  starts with `sha256:0badc0de`, whose rollout never gets available pods and ends with a
  `Progressing` condition of reason `ProgressDeadlineExceeded` (lastUpdateTime: that
  tick) `fail_after` ticks after the change. Status changes bump the resourceVersion,
  as the real controller's status writes do;
- the HorizontalPodAutoscaler: `hpa_sync` ticks after it is written, it scales its
  Deployment up to minReplicas if it runs fewer;
- `watch_object` advances ticks until `until(obj)` holds, the `deadline` passes on the
  cluster's clock, or the client's watch budget (ticks per function call, standing for
  the call budget) runs out; it returns the last state either way.

Every Deployment write that lands is kept in `deployment_writes` (tick, image, release
stamp, writer), for ordering checks.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from shared.adapters.kube import KubeConflict, KubeRejected, resource_path
from shared.errors import ClusterUnreachable, PermissionMissing
from shared.releases import RELEASE_ANNOTATION, ReleaseOrder, stamp_order

__all__ = [
    "BROKEN_DIGEST_PREFIX",
    "Crash",
    "DeploymentWrite",
    "Fault",
    "InMemoryCluster",
    "InMemoryKube",
    "RolloutTiming",
    "broken_image",
]

Object = dict[str, Any]
Key = tuple[str, str, str, str]  # apiVersion, kind, namespace ("" if cluster-scoped), name

BROKEN_DIGEST_PREFIX = "sha256:0badc0de"
RECORD_PREFIX = "geodeploy-releases-"
RECORD_KEY = "releases.json"
CLOCK_START = datetime(2026, 3, 1, 13, 0, tzinfo=UTC)


class Crash(BaseException):
    """The function instance died here. A BaseException, so no `except Exception` in the
    code under test can swallow it: nothing after this point of the call runs."""


# rbac_403: RBAC refused the caller (a missing grant), as KubeClient reports it.
FaultKind = Literal["crash", "kube_403", "kube_422", "rbac_403", "unreachable", "publish_fails"]


@dataclass(frozen=True)
class Fault:
    """What goes wrong at one call. `before`: the call never reached the server.
    `after`: it did its work, then the caller never learned (a crash, a lost answer)."""

    kind: FaultKind
    when: Literal["before", "after"] = "before"

    def __str__(self) -> str:
        return f"{self.kind} {self.when}"

    def error(self, where: str) -> BaseException:
        detail = f"{where}: injected {self.kind} {self.when} the call"
        if self.kind == "crash":
            return Crash(detail)
        if self.kind in ("kube_403", "kube_422"):
            return KubeRejected(self.kind, detail)
        if self.kind == "unreachable":
            return ClusterUnreachable(detail)
        if self.kind == "rbac_403":
            return PermissionMissing(f'{where}: forbidden: User "geodeploy" cannot do this (injected {self.when})')
        raise ValueError(f"{self.kind} is not a Kubernetes API fault")


Gate = Callable[[str, bool], Fault | None]  # (step, faultable) → the fault to inject, if any


def no_gate(_step: str, _faultable: bool) -> Fault | None:
    return None


def broken_image(repository: str, seed: str) -> str:
    """An image whose rollout never becomes available (its digest starts with 0badc0de)."""
    import hashlib

    tail = hashlib.sha256(seed.encode()).hexdigest()[: 64 - len("0badc0de")]
    return f"{repository}@{BROKEN_DIGEST_PREFIX}{tail}"


@dataclass(frozen=True)
class RolloutTiming:
    complete_after: int = 3  # ticks from a spec change to a complete rollout
    fail_after: int = 4  # ticks from a spec change to ProgressDeadlineExceeded (broken images)
    hpa_sync: int = 3  # ticks from an HPA's write to its first scaling of the Deployment


@dataclass(frozen=True)
class DeploymentWrite:
    tick: int
    image: str | None
    release: str | None  # the geodeploy.dev/release annotation after the write
    order: ReleaseOrder | None  # the stamp's release order
    writer: str
    verb: str  # apply, scale, ...
    guarded: bool  # the write carried a resourceVersion precondition


@dataclass
class _Rollout:
    changed_tick: int
    broken: bool
    old_available: int


@dataclass
class InMemoryCluster:
    timing: RolloutTiming = field(default_factory=RolloutTiming)
    clock_start: datetime = CLOCK_START
    tick: int = 0
    deployment_writes: list[DeploymentWrite] = field(default_factory=list)
    calls: int = 0
    _objects: dict[Key, Object] = field(default_factory=dict)
    _rv: itertools.count = field(default_factory=lambda: itertools.count(1))
    _rollouts: dict[Key, _Rollout] = field(default_factory=dict)
    _written_at: dict[Key, int] = field(default_factory=dict)  # the tick of each object's last write
    # The release record's data at each of its resourceVersions, to name record writes.
    _record_versions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    # --- clock and controller ---------------------------------------------------------

    def now(self) -> datetime:
        return self.clock_start + timedelta(seconds=self.tick)

    def monotonic(self) -> float:
        return float(self.tick)

    def timestamp(self, tick: int) -> str:
        return (self.clock_start + timedelta(seconds=tick)).isoformat().replace("+00:00", "Z")

    def advance(self, ticks: int = 1) -> None:
        with self.lock:
            for _ in range(ticks):
                self.tick += 1
                self._run_controller()

    def _run_controller(self) -> None:
        self._run_autoscalers()
        for key, rollout in self._rollouts.items():
            deployment = self._objects.get(key)
            if deployment is None or self.tick < rollout.changed_tick + 1:
                continue
            status = self._status(deployment, rollout)
            if status != deployment.get("status"):
                deployment["status"] = status
                deployment["metadata"]["resourceVersion"] = self._next_rv()

    def _run_autoscalers(self) -> None:
        """The HPA: `hpa_sync` ticks after it was written, it scales its Deployment up to
        minReplicas if it runs fewer (it owns `replicas`; the flow scales only a new one)."""
        for key, hpa in list(self._objects.items()):
            if key[1] != "HorizontalPodAutoscaler" or self.tick < self._written_at.get(key, 0) + self.timing.hpa_sync:
                continue
            target = ("apps/v1", "Deployment", key[2], hpa["spec"]["scaleTargetRef"]["name"])
            deployment = self._objects.get(target)
            minimum = int(hpa["spec"].get("minReplicas", 1))
            if deployment is not None and int(deployment["spec"].get("replicas", 1)) < minimum:
                scaled = copy.deepcopy(deployment)
                scaled["spec"]["replicas"] = minimum
                self.store(target, scaled, writer="horizontal-pod-autoscaler", verb="scale")

    def _status(self, deployment: Object, rollout: _Rollout) -> Object:
        desired = int(deployment["spec"].get("replicas", 1))
        t = self.timing
        observed = {"observedGeneration": deployment["metadata"]["generation"]}
        in_progress = {
            **observed,
            "replicas": desired + rollout.old_available,
            "updatedReplicas": desired,
            "availableReplicas": rollout.old_available,
            "conditions": [_progressing("True", "ReplicaSetUpdated", self.timestamp(rollout.changed_tick + 1))],
        }
        if rollout.broken:
            failed_at = rollout.changed_tick + t.fail_after
            if self.tick < failed_at:
                return in_progress
            condition = _progressing("False", "ProgressDeadlineExceeded", self.timestamp(failed_at))
            return {**in_progress, "conditions": [condition]}
        done_at = rollout.changed_tick + t.complete_after
        if self.tick < done_at:
            return in_progress
        return {
            **observed,
            "replicas": desired,
            "updatedReplicas": desired,
            "availableReplicas": desired,
            "conditions": [_progressing("True", "NewReplicaSetAvailable", self.timestamp(done_at))],
        }

    def _next_rv(self) -> str:
        return str(next(self._rv))

    # --- storage ----------------------------------------------------------------------

    def read(self, key: Key) -> Object | None:
        with self.lock:
            obj = self._objects.get(key)
            return copy.deepcopy(obj) if obj is not None else None

    def objects(self) -> dict[Key, Object]:
        with self.lock:
            return copy.deepcopy(self._objects)

    def record_history_at(self, version: str | None) -> list[dict[str, Any]]:
        """The release record's history (plain dicts) as it was at `version`."""
        return self._record_versions.get(version or "", [])

    def store(self, key: Key, obj: Object, *, writer: str, verb: str, guarded: bool = False) -> Object:
        """Stores `obj` (metadata and spec already merged) as the live object."""
        live = self._objects.get(key)
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        meta["resourceVersion"] = self._next_rv()
        if live is None:
            meta["uid"] = f"uid-{meta['resourceVersion']}"
            meta["creationTimestamp"] = self.timestamp(self.tick)
        if "spec" in obj:
            previous = live.get("spec") if live else None
            generation = int(live["metadata"].get("generation", 1)) if live else 0
            meta["generation"] = generation + 1 if obj["spec"] != previous else generation
        self._objects[key] = obj
        self._written_at[key] = self.tick
        if key[1] == "Deployment":
            self._deployment_written(key, live, obj, writer, verb, guarded)
        if key[1] == "ConfigMap" and key[3].startswith(RECORD_PREFIX):
            self._record_versions[meta["resourceVersion"]] = _history_of(obj)
        return copy.deepcopy(obj)

    def _deployment_written(
        self, key: Key, live: Object | None, obj: Object, writer: str, verb: str, guarded: bool
    ) -> None:
        if live is None or obj["spec"] != live["spec"]:
            template_changed = live is None or obj["spec"].get("template") != live["spec"].get("template")
            image = _image_of(obj)
            previous = self._rollouts.get(key)
            self._rollouts[key] = _Rollout(
                changed_tick=self.tick,
                broken=bool(image and _is_broken(image)) if template_changed or previous is None else previous.broken,
                old_available=int((live or {}).get("status", {}).get("availableReplicas", 0)),
            )
        annotations = obj["metadata"].get("annotations") or {}
        self.deployment_writes.append(
            DeploymentWrite(
                tick=self.tick,
                image=_image_of(obj),
                release=annotations.get(RELEASE_ANNOTATION),
                order=stamp_order(obj),
                writer=writer,
                verb=verb,
                guarded=guarded,
            )
        )


def _progressing(status: str, reason: str, when: str) -> Object:
    return {
        "type": "Progressing",
        "status": status,
        "reason": reason,
        "message": f"ReplicaSet: {reason}",
        "lastUpdateTime": when,
        "lastTransitionTime": when,
    }


def _image_of(obj: Object | None) -> str | None:
    containers = ((obj or {}).get("spec") or {}).get("template", {}).get("spec", {}).get("containers", [])
    return containers[0].get("image") if containers else None


def _is_broken(image: str) -> bool:
    return image.partition("@")[2].startswith(BROKEN_DIGEST_PREFIX)


def _history_of(config_map: Object) -> list[dict[str, Any]]:
    try:
        return list(json.loads((config_map.get("data") or {}).get(RECORD_KEY, "{}")).get("history", []))
    except (ValueError, AttributeError):
        return []


def _key(api_version: str, kind: str, name: str, namespace: str | None) -> Key:
    resource_path(api_version, kind, name, namespace)  # unsupported kinds: KubeRejected, as the real client
    return (api_version, kind, namespace or "", name)


def _key_of(obj: Object) -> Key:
    meta = obj["metadata"]
    return _key(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))


class InMemoryKube:
    """One caller's client on an InMemoryCluster, with KubeClient's methods.

    `gate(step, faultable)` is called before every call (a scheduling point); it returns
    the fault to inject at that call, if any. `watch_ticks` is how many ticks all of this
    client's watches may wait in total (the function call's budget)."""

    def __init__(
        self,
        cluster: InMemoryCluster,
        *,
        field_manager: str = "geodeploy",
        name: str = "in-memory",
        gate: Gate = no_gate,
        writer: str = "",
        watch_ticks: int = 1000,
    ) -> None:
        self._cluster = cluster
        self.field_manager = field_manager
        self.cluster = name
        self._gate = gate
        self._writer = writer or field_manager
        self.watch_ticks_left = watch_ticks

    # --- plumbing -------------------------------------------------------------------

    def _call(self, step: str, op: Callable[[], Any]) -> Any:
        fault = self._gate(step, True)
        if fault is not None and fault.when == "before":
            raise fault.error(f"{self.cluster}: {step}")
        with self._cluster.lock:
            self._cluster.calls += 1
            self._cluster.advance()
            result = op()
        if fault is not None and fault.when == "after":
            raise fault.error(f"{self.cluster}: {step}")
        return result

    def _namespace_must_exist(self, key: Key) -> None:
        if key[2] and ("v1", "Namespace", "", key[2]) not in self._cluster._objects:
            raise KubeRejected("kube_404", f'{self.cluster}: namespaces "{key[2]}" not found')

    def _check_precondition(self, key: Key, obj: Object) -> Object | None:
        live = self._cluster._objects.get(key)
        wanted = obj["metadata"].get("resourceVersion")
        if wanted is not None and (live is None or live["metadata"]["resourceVersion"] != str(wanted)):
            raise KubeConflict(
                f"{self.cluster}: {key[1]} {key[3]}: the object has been modified; "
                "please apply your changes to the latest version and try again"
            )
        return live

    def _step_for_write(self, verb: str, obj: Object) -> str:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind == "Namespace":
            return "namespace apply"
        if kind == "ConfigMap" and name.startswith(RECORD_PREFIX):
            return _record_step(
                self._cluster.record_history_at(obj["metadata"].get("resourceVersion")), _history_of(obj)
            )
        return f"{kind} {verb}"

    # --- reads ----------------------------------------------------------------------

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Object | None:
        key = _key(api_version, kind, name, namespace)
        step = "record read" if kind == "ConfigMap" and name.startswith(RECORD_PREFIX) else f"{kind} read"
        return self._call(step, lambda: self._cluster.read(key))

    def list_objects(self, api_version: str, kind: str, namespace: str, label_selector: str = "") -> list[Object]:
        _key(api_version, kind, "x", namespace)
        wanted = dict(part.split("=", 1) for part in label_selector.split(",") if "=" in part)

        def op() -> list[Object]:
            return [
                copy.deepcopy(obj)
                for (v, k, ns, _), obj in sorted(self._cluster._objects.items())
                if (v, k, ns) == (api_version, kind, namespace)
                and all((obj["metadata"].get("labels") or {}).get(a) == b for a, b in wanted.items())
            ]

        return list(self._call(f"{kind} list", op))

    def server_version(self) -> str:
        return str(self._call("version", lambda: "v1.33.0-inmemory"))

    # --- writes ---------------------------------------------------------------------

    def apply(self, obj: Object, *, dry_run: bool = False) -> Object:
        key = _key_of(obj)

        def op() -> Object:
            self._namespace_must_exist(key)
            live = self._check_precondition(key, obj)
            merged = copy.deepcopy(obj)
            guarded = merged["metadata"].pop("resourceVersion", None) is not None
            if live is not None:
                for system in ("uid", "creationTimestamp", "generation"):
                    if system in live["metadata"]:
                        merged["metadata"][system] = live["metadata"][system]
                if "status" in live:
                    merged["status"] = copy.deepcopy(live["status"])
            if key[1] == "Deployment":
                spec = merged.setdefault("spec", {})
                if "replicas" not in spec:  # owned by the scale subresource's manager
                    spec["replicas"] = (live or {}).get("spec", {}).get("replicas", 1)
                merged.setdefault("status", {})
            if dry_run:
                return merged
            return self._cluster.store(key, merged, writer=self._writer, verb="apply", guarded=guarded)

        return dict(self._call(self._step_for_write("apply", obj), op))

    def create(self, obj: Object) -> Object:
        key = _key_of(obj)
        if obj["metadata"].get("resourceVersion"):
            raise KubeRejected("kube_422", "resourceVersion should not be set on objects to be created")

        def op() -> Object:
            self._namespace_must_exist(key)
            if key in self._cluster._objects:
                raise KubeConflict(f'{self.cluster}: {key[1]} "{key[3]}" already exists')
            created = copy.deepcopy(obj)
            if key[1] == "Deployment":
                created.setdefault("spec", {}).setdefault("replicas", 1)  # the API server's default
                created.setdefault("status", {})
            # A create is guarded too: it fails (409) if anyone created the object first.
            return self._cluster.store(key, created, writer=self._writer, verb="create", guarded=True)

        return dict(self._call(self._step_for_write("create", obj), op))

    def replace(self, obj: Object) -> Object:
        """PUT; with metadata.resourceVersion set, fails with KubeConflict if it moved."""
        key = _key_of(obj)

        def op() -> Object:
            if key not in self._cluster._objects:
                raise KubeRejected("kube_404", f'{self.cluster}: {key[1]} "{key[3]}" not found')
            live = self._check_precondition(key, obj)
            assert live is not None
            replaced = copy.deepcopy(obj)
            for system in ("uid", "creationTimestamp", "generation"):
                if system in live["metadata"]:
                    replaced["metadata"][system] = live["metadata"][system]
            if "status" in live:
                replaced["status"] = copy.deepcopy(live["status"])
            guarded = obj["metadata"].get("resourceVersion") is not None
            return self._cluster.store(key, replaced, writer=self._writer, verb="replace", guarded=guarded)

        return dict(self._call(self._step_for_write("replace", obj), op))

    def json_patch(self, api_version: str, kind: str, name: str, namespace: str | None, ops: list[Object]) -> Object:
        key = _key(api_version, kind, name, namespace)

        def op() -> Object:
            live = self._cluster._objects.get(key)
            if live is None:
                raise KubeRejected("kube_404", f'{self.cluster}: {kind} "{name}" not found')
            patched = copy.deepcopy(live)
            for operation in ops:
                *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]]
                node: Any = patched
                for part in parents:
                    node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
                if operation["op"] in ("add", "replace"):
                    if isinstance(node, list):
                        node.insert(len(node) if last == "-" else int(last), operation["value"])
                    else:
                        node[last] = operation["value"]
                elif operation["op"] == "remove":
                    del node[int(last) if isinstance(node, list) else last]
                else:
                    raise KubeRejected("kube_422", f"unsupported JSON patch op {operation['op']}")
            return self._cluster.store(key, patched, writer=self._writer, verb="patch")

        return dict(self._call(f"{kind} patch", op))

    def scale_deployment(self, name: str, namespace: str, replicas: int, *, manager: str) -> None:
        self.scale("apps/v1", "Deployment", name, namespace, replicas, manager=manager)

    def scale(self, api_version: str, kind: str, name: str, namespace: str, replicas: int, *, manager: str) -> None:
        key = _key(api_version, kind, name, namespace)

        def op() -> None:
            live = self._cluster._objects.get(key)
            if live is None:
                raise KubeRejected("kube_404", f'{self.cluster}: {kind} "{name}" not found')
            scaled = copy.deepcopy(live)
            scaled["spec"]["replicas"] = replicas
            self._cluster.store(key, scaled, writer=f"{self._writer} ({manager})", verb="scale")

        step = "initial scale" if manager.endswith("-initial-scale") else "scale"
        self._call(step, op)

    def delete(
        self, api_version: str, kind: str, name: str, namespace: str | None, *, resource_version: str | None = None
    ) -> None:
        key = _key(api_version, kind, name, namespace)

        def op() -> None:
            live = self._cluster._objects.get(key)
            if live is not None and resource_version not in (None, live["metadata"]["resourceVersion"]):
                raise KubeConflict(f"{self.cluster}: {kind} {name}: the object has been modified")
            self._cluster._objects.pop(key, None)

        self._call("delete", op)

    # --- watching -------------------------------------------------------------------

    def watch_object(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str,
        *,
        until: Callable[[Object | None], bool],
        deadline: float,
        on_change: Callable[[Object | None], None] | None = None,
        start: Object | None = None,
    ) -> Object | None:
        """Advances ticks until `until(obj)` holds, the deadline passes on the cluster's
        clock or this client's watch budget is spent; returns the last state either way.
        (The flow watches with `on_change` while rolling out and without it while baking
        a rollback, which is how the step is named.) With `start`, the watch begins from
        that object as the real one does (its opening is still a step that may fail)."""
        key = _key(api_version, kind, name, namespace)
        step = "watch" if on_change is not None else "bake watch"
        obj = self._call(step, lambda: self._cluster.read(key) if start is None else start)
        if on_change:
            on_change(obj)
        while not until(obj) and self.watch_ticks_left > 0 and self._cluster.monotonic() < deadline:
            self.watch_ticks_left -= 1
            self._gate(f"{step} tick", False)  # others may run while we wait; no fault here
            self._cluster.advance()
            seen = self._cluster.read(key)
            if seen != obj:
                obj = seen
                if on_change:
                    on_change(obj)
        return obj


def _record_step(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> str:
    """Names a release record write by what it changes: `claim write` or `rollback claim
    write` (whatever else the claim changes), else `progressing write`, `succeeded write`,
    `failed write`, `superseded write`, else `confirm write` (a duplicate recorded on the
    release it asked for again)."""
    old = {r.get("release_id"): r for r in before}
    claims, statuses, confirms = [], [], []
    for entry in after:
        previous = old.get(entry.get("release_id"))
        if previous is None:
            claims.append("rollback claim" if entry.get("kind") == "rollback" else "claim")
        elif previous.get("status") != entry.get("status"):
            statuses.append(str(entry.get("status")))
        elif previous.get("confirmed_by") != entry.get("confirmed_by"):
            confirms.append("confirm")
    return (" + ".join(claims or statuses or confirms) or "unchanged record") + " write"
