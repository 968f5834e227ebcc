"""Wave advance: when every region of a wave has run a release successfully, the next
wave's regions get their deploy requests. A failed region halts the release there.

The truth is read from the clusters' release records, not from the results seen so far,
so duplicate or reordered results cannot advance a wave early; publishing the next
wave twice is harmless (the regions treat it as a redelivery).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.adapters.kube import KubeClient
from shared.adapters.pubsub import Publisher
from shared.adapters.release_store import ReleaseStore
from shared.config import App, Approval, Config, Region
from shared.contracts import DeployResult, ImageRef
from shared.errors import PermanentError, TransientError
from shared.flows.promotion import EdgeVerdict, promote_waiting
from shared.flows.regions import each_region
from shared.flows.requests import send_deploy_requests
from shared.logs import BoundLogger
from shared.planning import plan_region_requests
from shared.releases import release_order

__all__ = ["advance_waves"]


@dataclass(frozen=True)
class WaveStatus:
    wave: int
    succeeded: list[str]
    pending: list[str]  # still rolling out, or not yet reporting
    failed: list[str]
    unknown: list[str]  # unreachable, or a record that cannot be read


def advance_waves(
    result: DeployResult,
    *,
    config: Config,
    connect: Callable[[Region], KubeClient],
    publisher: Publisher,
    log: BoundLogger,
    edge: EdgeVerdict,
) -> list[str]:
    """Returns the regions that were sent the next wave (empty when nothing advanced, or
    when a gate decided: see shared.flows.promotion)."""
    log = log.bind(app=result.app, release=result.release_id, wave=result.wave)
    if result.kind != "deploy" or not result.follow_waves:
        return []  # rollbacks and deploys to named regions do not start waves
    if result.status not in ("succeeded", "unchanged", "failed", "rolling_back", "rolled_back"):
        return []  # progressing, superseded, rejected: nothing to decide yet
    if result.status not in ("succeeded", "unchanged"):
        log.warning("wave_halted", region=result.region, status=result.status, reason=result.reason)
        return []
    app = config.known_app(result.app)
    following = config.next_wave(result.wave)
    if following is None:
        log.info("all_waves_done")
        return []
    status = _wave_status(result, app, config, connect)
    if status.unknown:
        # Acking now could lose the wave: this result may be the last one it gets.
        raise TransientError(f"wave {result.wave}: cannot read {', '.join(status.unknown)}; retrying")
    if status.failed or status.pending:
        log.info("wave_not_complete", succeeded=status.succeeded, pending=status.pending, failed=status.failed)
        return []
    if result.image is None:
        raise PermanentError("invalid_message", "a succeeded result names no image")
    gate = config.gate_after(result.wave)
    if gate.require_edge_healthy or gate.approval is Approval.MANUAL:
        # A gate that may hold the release (a soak is over once every region succeeded).
        promote_waiting(app, config=config, connect=connect, edge=edge, publisher=publisher, log=log)
        return []
    requests = plan_region_requests(
        config,
        app,
        release_id=result.release_id,
        image=ImageRef.parse(result.image),
        trigger=result.trigger,
        issued_at=result.issued_at,
        wave=following,
    )
    send_deploy_requests(requests, config, publisher)
    regions = [r.region for r in requests]
    log.info("wave_advanced", next_wave=following, regions=regions)
    return regions


def _wave_status(result: DeployResult, app: App, config: Config, connect: Callable[[Region], KubeClient]) -> WaveStatus:
    regions = config.regions_in_wave(result.wave)
    states = each_region(
        regions,
        lambda region: _region_state(result, app, region, connect),
        timed_out=lambda _region, _deadline: _UNKNOWN,  # no answer is not success
        deadline=config.region_deadline_seconds,
    )
    by_state: dict[str, list[str]] = {_SUCCEEDED: [], _PENDING: [], _FAILED: [], _UNKNOWN: []}
    for region, state in zip(regions, states, strict=True):
        by_state[state].append(region.name)
    return WaveStatus(result.wave, by_state[_SUCCEEDED], by_state[_PENDING], by_state[_FAILED], by_state[_UNKNOWN])


_SUCCEEDED, _PENDING, _FAILED, _UNKNOWN = "succeeded", "pending", "failed", "unknown"


def _region_state(result: DeployResult, app: App, region: Region, connect: Callable[[Region], KubeClient]) -> str:
    """Where the result's release stands in one region of its wave."""
    try:
        record, _ = ReleaseStore(connect(region), app).read()
    except TransientError:
        return _UNKNOWN  # unknown is not success, and not "will report later"
    except PermanentError:  # e.g. an unreadable record: it cannot succeed, so the wave halts
        return _FAILED
    release = record.standing_for(result.release_id, result.image, release_order(result.issued_at, result.release_id))
    if release is None or release.status in ("applying", "progressing"):
        return _PENDING
    return _SUCCEEDED if release.status == "succeeded" else _FAILED
