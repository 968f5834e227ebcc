"""check_drift's job: compare what runs with what was released, in every region and in
Cloudflare; report every difference; heal when asked.

    for each app and region: read the release record → render that release → for each
    object: live read + server-side-apply dry run → differences → (heal: repair lists,
    apply) ; then Cloudflare: desired objects vs live (reads only) → (heal: ask
    reconcile_traffic to heal it) → publish one report

Cloudflare is only read here: reconcile_traffic is its one writer (one instance, one
request at a time), so a heal never races a drain decided on other health. With healing
on, when a region of the steered app was healed or Cloudflare drifted, the check asks
reconcile_traffic for a reconcile (a TrafficHealRequest) after its own heals, so that
reconcile reads the healed health.

A region that cannot be reached is reported as unreachable, not as drifted (reason
no_answer when it did not answer within the config's region_deadline_seconds); one whose
cluster refuses the check's identity (a missing grant) as permission_denied, naming what
was refused; a region whose release record cannot be read (a hand edit) as unreadable,
with the reason; a region whose release is still rolling out is skipped, so the check
never fights a deploy. A heal the API server refuses leaves the region drifted: the
report keeps the differences and says why each object could not be healed. A heal that
loses an optimistic-lock race compares that object again and heals once more. A deleted
object is re-created, except a workload (Deployment, StatefulSet, DaemonSet): a deploy or
rollback re-creates it, ordered by its release, and the report says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from shared.adapters.kube import KubeClient, KubeConflict, KubeRejected
from shared.adapters.release_store import ReleaseStore
from shared.config import App, Config, Region
from shared.contracts import ImageRef, TrafficHealReason
from shared.drift import Difference, compare_object, list_repairs
from shared.errors import (
    PERMISSION_DENIED,
    ClusterUnreachable,
    GeodeployError,
    PermanentError,
    PermissionMissing,
    RecordUnreadable,
)
from shared.flows.regions import NO_ANSWER, each_region
from shared.flows.traffic import find_oldest
from shared.log_events import DRIFT_CHECKED, DRIFT_DETECTED, DRIFT_IN_CLOUDFLARE, DRIFT_IN_KUBERNETES
from shared.logs import BoundLogger
from shared.manifest_sources import WORKLOAD_KINDS
from shared.releases import Release, ReleaseRecord, stamp_order, stamped
from shared.rendering import RenderedRelease, object_key, render_release
from shared.traffic import (
    changed_fields,
    desired_load_balancer,
    desired_monitor,
    desired_pool,
    monitor_description,
)

__all__ = ["CloudflareReader", "DriftReport", "RegionStatus", "check_drift"]

Object = dict[str, Any]


class CloudflareReader(Protocol):
    """What the check may do to Cloudflare: read. (CloudflareLB is one.)"""

    def list_monitors(self) -> list[Object]: ...
    def list_pools(self) -> list[Object]: ...
    def list_load_balancers(self) -> list[Object]: ...


class RegionStatus(StrEnum):
    IN_SYNC = "in_sync"
    DRIFTED = "drifted"
    UNREACHABLE = "unreachable"
    UNREADABLE = "unreadable"  # the release record is there but cannot be read
    PERMISSION_DENIED = PERMISSION_DENIED  # the cluster refused the check's identity
    NO_RELEASE = "no_release"
    RELEASE_IN_PROGRESS = "release_in_progress"


# Why an object could not be healed, besides the API server's refusal (KubeRejected.reason).
HEAL_CONFLICT = "conflict"  # it kept changing under the heal
HEAL_UNREACHABLE = "cluster_unreachable"  # the cluster stopped answering mid-heal
# A deleted Deployment is left to a deploy or rollback, which orders it by release.
HEAL_WORKLOAD_ABSENT = "workload_absent"


@dataclass
class RegionDrift:
    app: str
    region: str
    status: RegionStatus
    release: str | None = None
    image: str | None = None
    differences: list[Object] = field(default_factory=list)
    healed: bool = False
    detail: str = ""
    reason: str = ""  # why the region could not be checked (unreadable, permission_denied, no_answer)
    # Objects a heal was asked for but could not repair: {"object", "reason", "detail"}.
    heal_failures: list[Object] = field(default_factory=list)


@dataclass
class DriftReport:
    checked_at: datetime
    heal: bool
    regions: list[RegionDrift]
    cloudflare: list[Object] = field(default_factory=list)
    # Why reconcile_traffic was asked to heal Cloudflare; empty: it was not asked.
    traffic_heal_requested: list[TrafficHealReason] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return any(r.status is RegionStatus.DRIFTED for r in self.regions) or bool(self.cloudflare)

    def as_message(self) -> Object:
        return {
            "version": 1,
            "checked_at": self.checked_at.isoformat(),
            "heal": self.heal,
            "drifted": self.drifted,
            "regions": [r.__dict__ for r in self.regions],
            "cloudflare": {"differences": self.cloudflare, "heal_requested": bool(self.traffic_heal_requested)},
        }


def check_drift(
    config: Config,
    *,
    connect: Callable[[Region], KubeClient],
    cloudflare: CloudflareReader | None,
    heal: bool,
    now: datetime,
    log: BoundLogger,
    apps: list[str] | None = None,
    regions: list[str] | None = None,
    request_traffic_heal: Callable[[list[TrafficHealReason]], None] | None = None,
) -> DriftReport:
    """`request_traffic_heal` asks reconcile_traffic to heal Cloudflare (publishes a
    TrafficHealRequest); without it, nothing is asked and Cloudflare drift stays reported."""
    report = DriftReport(checked_at=now, heal=heal, regions=[])
    checked_apps = [a for a in config.apps if not apps or a.name in apps]
    checked_regions = [r for r in config.regions if not regions or r.name in regions]

    def read(region: Region) -> _RegionRead:
        return _read_region(checked_apps, region, connect)

    def no_answer(region: Region, deadline: float) -> _RegionRead:
        detail = f"no answer within {deadline:.0f} s"
        return None, [
            RegionDrift(a.name, region.name, RegionStatus.UNREACHABLE, reason=NO_ANSWER, detail=detail)
            for a in checked_apps
        ]

    # The deadline is for reaching each region (its records). A region that answered is
    # then compared and healed in full, however long that takes: a slow region is not
    # an unreachable one, and no heal lands after the report that says it did not.
    reached = each_region(checked_regions, read, timed_out=no_answer, deadline=config.region_deadline_seconds)
    reads = {r.name: found for r, found in zip(checked_regions, reached, strict=True)}

    def compare(region: Region) -> list[RegionDrift]:
        kube, found = reads[region.name]
        results: list[RegionDrift] = []
        for app, item in zip(checked_apps, found, strict=True):
            if isinstance(item, RegionDrift):
                results.append(item)  # could not be read: reported as it is
            else:
                assert kube is not None  # the record was read through it
                results.append(_check_release(config, app, region, kube, item, heal))
        return results

    checked = each_region(checked_regions, compare)
    by_region = {r.name: results for r, results in zip(checked_regions, checked, strict=True)}
    for index, app in enumerate(checked_apps):
        for region in checked_regions:
            result = by_region[region.name][index]
            report.regions.append(result)
            for d in result.differences:
                log.warning(
                    DRIFT_DETECTED,
                    system=DRIFT_IN_KUBERNETES,
                    app=app.name,
                    region=region.name,
                    healed=result.healed,
                    **d,
                )
            for failure in result.heal_failures:
                log.error("heal_failed", app=app.name, region=region.name, **failure)
            if result.status is RegionStatus.UNREACHABLE:
                log.warning("region_unreachable", app=app.name, region=region.name, detail=result.detail)
            if result.status in (RegionStatus.UNREADABLE, RegionStatus.PERMISSION_DENIED):
                log.error(result.reason, app=app.name, region=region.name, detail=result.detail)
    if cloudflare is not None and (not apps or config.cloudflare.app in apps):
        report.cloudflare = _cloudflare_differences(config, cloudflare)
        for d in report.cloudflare:
            log.warning(DRIFT_DETECTED, system=DRIFT_IN_CLOUDFLARE, **d)
    reasons = _traffic_heal_reasons(config, report)
    if reasons and request_traffic_heal is not None:
        # Last, after every cluster heal: the reconcile it asks for must see the healed health.
        request_traffic_heal(reasons)
        report.traffic_heal_requested = reasons
        log.info("traffic_heal_requested", reasons=reasons)
    log.info(
        DRIFT_CHECKED,
        drifted=report.drifted,
        heal=heal,
        regions={f"{r.app}/{r.region}": r.status for r in report.regions},
        cloudflare_differences=len(report.cloudflare),
        traffic_heal_requested=bool(report.traffic_heal_requested),
    )
    return report


def _traffic_heal_reasons(config: Config, report: DriftReport) -> list[TrafficHealReason]:
    """Why reconcile_traffic should heal Cloudflare after this check (empty: no need)."""
    if not report.heal:
        return []
    reasons = []
    # A heal attempt may have changed a steered region's health, even one that failed half-way.
    if any(r.app == config.cloudflare.app and r.status is RegionStatus.DRIFTED for r in report.regions):
        reasons.append(TrafficHealReason.CLUSTERS_HEALED)
    if report.cloudflare:
        reasons.append(TrafficHealReason.CLOUDFLARE_DRIFTED)
    return reasons


# A region's client (None: it could not be reached) and, per app, its release record or
# why the app could not be checked there.
_RegionRead = tuple[KubeClient | None, list[ReleaseRecord | RegionDrift]]


def _read_region(apps: list[App], region: Region, connect: Callable[[Region], KubeClient]) -> _RegionRead:
    try:
        kube = connect(region)
    except GeodeployError as e:
        return None, [_not_checked(app, region, e) for app in apps]
    found: list[ReleaseRecord | RegionDrift] = []
    for app in apps:
        try:
            found.append(ReleaseStore(kube, app).read()[0])
        except GeodeployError as e:
            found.append(_not_checked(app, region, e))
    return kube, found


def _not_checked(app: App, region: Region, error: GeodeployError) -> RegionDrift:
    """Why an app could not be checked in a region; an error of no known kind is raised."""
    if isinstance(error, RecordUnreadable):
        return RegionDrift(
            app.name, region.name, RegionStatus.UNREADABLE, reason=error.reason, detail=error.detail[:300]
        )
    if isinstance(error, PermissionMissing):  # one region's missing grant must not stop the others' check
        return RegionDrift(
            app.name, region.name, RegionStatus.PERMISSION_DENIED, reason=PERMISSION_DENIED, detail=str(error)[:300]
        )
    if isinstance(error, (ClusterUnreachable, PermanentError)):
        return RegionDrift(app.name, region.name, RegionStatus.UNREACHABLE, detail=str(error)[:200])
    raise error


def _check_release(
    config: Config, app: App, region: Region, kube: KubeClient, record: ReleaseRecord, heal: bool
) -> RegionDrift:
    try:
        current = record.current
        if current is None:
            return RegionDrift(app.name, region.name, RegionStatus.NO_RELEASE)
        result = RegionDrift(app.name, region.name, RegionStatus.IN_SYNC, current.release_id, current.image)
        if current.status in ("applying", "progressing"):
            result.status = RegionStatus.RELEASE_IN_PROGRESS
            return result
        rendered = render_release(config, app, region, ImageRef.parse(current.image))
        if rendered.manifest_hash != current.manifest_hash:
            result.detail = "the config changed since this release; comparing with the current config"
        drifted: list[tuple[Object, list[Difference]]] = []
        for desired in rendered.objects:
            differences = _compare_live(kube, desired)
            if differences:
                drifted.append((desired, differences))
                result.differences += [d.as_dict() for d in differences]
    except GeodeployError as e:
        return _not_checked(app, region, e)
    if drifted:
        # From here on the differences are known: whatever the heal meets, they are reported.
        result.status = RegionStatus.DRIFTED
        if heal:
            result.heal_failures = _heal_all(kube, drifted, current, rendered)
            result.healed = not result.heal_failures
    return result


def _heal_all(
    kube: KubeClient, drifted: list[tuple[Object, list[Difference]]], release: Release, rendered: RenderedRelease
) -> list[Object]:
    """Heals each drifted object; returns why each one that could not be healed was not."""
    failures: list[Object] = []
    for index, (desired, differences) in enumerate(drifted):
        try:
            _heal_with_one_retry(kube, desired, differences, release, rendered.restarts(desired))
        except KubeRejected as e:  # e.g. an admission policy: retrying cannot help
            failures.append(_heal_failure(desired, e.reason, e.detail))
        except _WorkloadAbsent as e:
            failures.append(_heal_failure(desired, HEAL_WORKLOAD_ABSENT, str(e)))
        except KubeConflict as e:
            failures.append(_heal_failure(desired, HEAL_CONFLICT, str(e)))
        except PermissionMissing as e:
            failures.append(_heal_failure(desired, PERMISSION_DENIED, str(e)))
        except ClusterUnreachable as e:
            # The objects not healed yet would only time out too.
            failures += [_heal_failure(d, HEAL_UNREACHABLE, str(e)) for d, _ in drifted[index:]]
            break
    return failures


def _heal_with_one_retry(
    kube: KubeClient, desired: Object, differences: list[Difference], release: Release, restarts: bool
) -> None:
    try:
        _heal(kube, desired, differences, release, restarts)
    except KubeConflict:
        # It changed between our read and our write (a hand edit, a controller): compare
        # it again and heal what still differs, once; a second conflict is reported.
        differences = _compare_live(kube, desired)
        if differences:
            _heal(kube, desired, differences, release, restarts)


class _WorkloadAbsent(Exception):
    """A heal does not re-create a workload: only a release may, in release order."""


def _heal_failure(desired: Object, reason: str, detail: str) -> Object:
    return {"object": object_key(desired), "reason": reason, "detail": detail[:300]}


def _compare_live(kube: KubeClient, desired: Object) -> list[Difference]:
    meta = desired["metadata"]
    live = kube.get(desired["apiVersion"], desired["kind"], meta["name"], meta.get("namespace"))
    dry_run = None
    if live is not None:
        try:
            dry_run = kube.apply(desired, dry_run=True)
        except KubeRejected:
            dry_run = None  # e.g. a hand-added list item clashes with ours: compare as rendered
    return compare_object(object_key(desired), desired, live, dry_run)


def _heal(kube: KubeClient, desired: Object, differences: list[Difference], release: Release, restarts: bool) -> None:
    """Lists altered by hand are replaced whole (guarded by the resourceVersion just read);
    then a server-side apply with our field manager restores every field we own. A
    workload is healed only while no newer release's stamp is on it, with the stamp of
    the release it is healed to (as that release's apply stamped it: `restarts`) and
    guarded by its resourceVersion: a heal racing a new deploy must never put the older
    image back."""
    repairs = list_repairs(differences, desired)
    meta = desired["metadata"]
    live = None
    workload = _is_workload(desired)
    if repairs or workload:
        live = kube.get(desired["apiVersion"], desired["kind"], meta["name"], meta.get("namespace"))
    if workload:
        if live is None:
            raise _WorkloadAbsent(f"{object_key(desired)} is absent; a deploy or rollback re-creates it")
        newer = stamp_order(live)
        if newer is not None and newer > release.order:
            raise KubeConflict(f"{object_key(desired)}: a newer release was applied since this check read it")
    if repairs and live is not None:
        # A resourceVersion in the patched object is a precondition: if the object moved
        # since this read, the API server answers 409 (KubeConflict). (A JSON-patch "test"
        # of it would fail as a 422, indistinguishable from a refusal.)
        guard = {
            "op": "replace",
            "path": "/metadata/resourceVersion",
            "value": live["metadata"]["resourceVersion"],
        }
        live = kube.json_patch(
            desired["apiVersion"], desired["kind"], meta["name"], meta.get("namespace"), [guard, *repairs]
        )
    kube.apply(stamped(desired, release, live, pod_template=restarts) if workload else desired)


def _is_workload(obj: Object) -> bool:
    return obj["apiVersion"] == "apps/v1" and obj["kind"] in WORKLOAD_KINDS


def _cloudflare_differences(config: Config, cloudflare: CloudflareReader) -> list[Object]:
    found: list[Object] = []
    description = monitor_description(config)
    # Looked up as reconcile_traffic does, so both mean the same object when twins exist.
    monitor = find_oldest(cloudflare.list_monitors(), "description", description)
    if monitor is None:
        found.append({"object": "monitor", "path": "", "expected": "present", "live": "<absent>"})
    else:
        found += _field_differences("monitor", desired_monitor(config), monitor)
    live_pools = cloudflare.list_pools()
    pools = {r.cloudflare.pool: p for r in config.regions if (p := find_oldest(live_pools, "name", r.cloudflare.pool))}
    for region in config.regions:
        pool = pools.get(region.cloudflare.pool)
        if pool is None:
            found.append(
                {"object": f"pool/{region.cloudflare.pool}", "path": "", "expected": "present", "live": "<absent>"}
            )
            continue
        # `enabled` follows the regions' health (reconcile_traffic's job), not the config.
        desired = {
            k: v for k, v in desired_pool(region, monitor["id"] if monitor else "", True).items() if k != "enabled"
        }
        found += _field_differences(f"pool/{region.cloudflare.pool}", desired, pool)
    hostname = config.cloudflare.hostname
    lb = find_oldest(cloudflare.list_load_balancers(), "name", hostname)
    if lb is None:
        found.append({"object": f"load_balancer/{hostname}", "path": "", "expected": "present", "live": "<absent>"})
    elif all(r.cloudflare.pool in pools for r in config.regions):
        pool_ids = {r.name: str(pools[r.cloudflare.pool]["id"]) for r in config.regions}
        found += _field_differences(f"load_balancer/{hostname}", desired_load_balancer(config, pool_ids), lb)
    return found


def _field_differences(name: str, desired: Object, live: Object) -> list[Object]:
    return [
        {"object": name, "path": key, "expected": value, "live": live.get(key)}
        for key, value in changed_fields(desired, live).items()
    ]
