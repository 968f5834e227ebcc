"""Promotion through a gated wave: read every region's release record, find the release
waiting at a gate (shared.gates), ask Cloudflare if the gate wants it, and send the next
wave its deploy requests when nothing holds it.

Run on the wave's last result (on_deploy_result), on each scheduled drift-check tick
(the same function, so a release held by Cloudflare's verdict is looked at again), and
for a `promote` control message (on_control), which is the operator's word: it lifts an
approval and Cloudflare's verdict, never a soak. Sending a wave twice is harmless (the
regions treat it as a redelivery).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from shared.adapters.kube import KubeClient
from shared.adapters.pubsub import Publisher
from shared.adapters.release_store import ReleaseStore
from shared.config import App, Config, Region
from shared.contracts import ImageRef
from shared.errors import ClusterUnreachable, GeodeployError, TransientError
from shared.flows.regions import each_region
from shared.flows.requests import send_deploy_requests
from shared.gates import Hold, Promotion, pending_promotion
from shared.logs import BoundLogger
from shared.planning import plan_region_requests
from shared.releases import ReleaseRecord

__all__ = [
    "EdgeVerdict",
    "OperatorApproval",
    "promote_each_app",
    "promote_waiting",
    "read_records",
    "waiting_promotion",
]

# Whether Cloudflare's monitor calls a region's pool healthy (raises TransientError when
# Cloudflare cannot be read: no verdict is not a healthy one).
EdgeVerdict = Callable[[Region], bool]

# Log events (log-based metrics and the docs name them).
PROMOTION_HELD = "promotion_held"
WAVE_PROMOTED = "wave_promoted"
NOTHING_TO_PROMOTE = "nothing_to_promote"
PROMOTION_CHECK_FAILED = "promotion_check_failed"


@dataclass(frozen=True)
class OperatorApproval:
    """A promote control message: who approved which release at which wave's gate."""

    release_id: str
    wave: int
    by: str

    def approves(self, promotion: Promotion) -> bool:
        return (promotion.release.release_id, promotion.wave) == (self.release_id, self.wave)


def promote_each_app(
    config: Config,
    *,
    connect: Callable[[Region], KubeClient],
    edge: EdgeVerdict,
    publisher: Publisher,
    log: BoundLogger,
) -> None:
    """A drift-check tick: every app's waiting release looked at again. One app's
    trouble (a region down, a record unreadable) is logged and leaves the others to go
    on; the next tick looks again."""
    for app in config.apps:
        try:
            promote_waiting(app, config=config, connect=connect, edge=edge, publisher=publisher, log=log)
        except GeodeployError as e:
            log.warning(PROMOTION_CHECK_FAILED, app=app.name, error=type(e).__name__, detail=str(e))


def read_records(config: Config, app: App, connect: Callable[[Region], KubeClient]) -> dict[str, ReleaseRecord]:
    """Every region's record of the app. A gate is decided on all of them: a region not
    read may have claimed a newer release, which cancels the promotion."""

    def read(region: Region) -> ReleaseRecord:
        return ReleaseStore(connect(region), app).read()[0]

    def no_answer(region: Region, deadline: float) -> ReleaseRecord:
        raise ClusterUnreachable(f"{region.name}: no answer within {deadline:.0f} s")

    records = each_region(config.regions, read, timed_out=no_answer, deadline=config.region_deadline_seconds)
    return {r.name: record for r, record in zip(config.regions, records, strict=True)}


def waiting_promotion(
    config: Config,
    app: App,
    records: dict[str, ReleaseRecord],
    edge: EdgeVerdict | None,
) -> Promotion | None:
    """The release waiting at a gate and everything that holds it, Cloudflare's verdict
    included (asked only when the gate wants it and `edge` is given)."""
    promotion = pending_promotion(config, app, records)
    if promotion is None:
        return None
    gate = config.gate_after(promotion.wave)
    # Cloudflare steers one app: only its pools have a verdict to wait for.
    asks_cloudflare = edge is not None and gate.require_edge_healthy and app.name == config.cloudflare.app
    if not asks_cloudflare or promotion.soaking or promotion.promoted_to:
        return promotion
    assert edge is not None
    wave = config.regions_in_wave(promotion.wave)

    def no_verdict(region: Region, deadline: float) -> bool:
        raise TransientError(f"no verdict on {region.cloudflare.pool} within {deadline:.0f} s")

    try:
        # Every pool at once, under the regions' deadline: a Cloudflare that answers
        # slowly costs one deadline, not one per pool.
        verdicts = each_region(wave, edge, timed_out=no_verdict, deadline=config.region_deadline_seconds)
        unhealthy = [r.cloudflare.pool for r, healthy in zip(wave, verdicts, strict=True) if not healthy]
    except GeodeployError as e:  # no verdict is not a healthy one; the next tick asks again
        return replace(promotion, holds=(*promotion.holds, Hold.EDGE), edge_detail=f"Cloudflare: {e}")
    if not unhealthy:
        return promotion
    detail = f"Cloudflare calls {', '.join(unhealthy)} unhealthy"
    return replace(promotion, holds=(*promotion.holds, Hold.EDGE), edge_detail=detail)


def promote_waiting(
    app: App,
    *,
    config: Config,
    connect: Callable[[Region], KubeClient],
    edge: EdgeVerdict,
    publisher: Publisher,
    log: BoundLogger,
    approval: OperatorApproval | None = None,
) -> Promotion | None:
    """Sends the next wave the waiting release when nothing holds it (or only what an
    operator's `approval` lifts: of that release at that wave's gate, nothing else).
    Returns the promotion looked at (None: nothing waits, or not what was approved)."""
    log = log.bind(app=app.name)
    records = read_records(config, app, connect)
    # The operator's word needs no verdict from Cloudflare.
    promotion = waiting_promotion(config, app, records, None if approval else edge)
    if approval is not None and promotion is not None and not approval.approves(promotion):
        log.info(
            NOTHING_TO_PROMOTE,
            approved_release=approval.release_id,
            approved_wave=approval.wave,
            waiting_release=promotion.release.release_id,
            waiting_wave=promotion.wave,
            detail="what waits is not what was approved (a newer push, or a later gate)",
        )
        return None
    if promotion is None:
        log.info(NOTHING_TO_PROMOTE, approved_by=approval.by if approval else None)
        return None
    log = log.bind(release=promotion.release.release_id, wave=promotion.wave, next_wave=promotion.next_wave)
    holds = [h for h in promotion.holds if approval is None or h is Hold.SOAK]
    if holds:
        log.info(
            PROMOTION_HELD,
            holds=[h.value for h in holds],
            soaking=list(promotion.soaking),
            detail=promotion.edge_detail,
        )
        return promotion
    release = promotion.release
    requests = plan_region_requests(
        config,
        app,
        release_id=release.release_id,
        image=ImageRef.parse(release.image),
        trigger=release.trigger,
        issued_at=release.issued_at,
        wave=promotion.next_wave,
    )
    requests = [r for r in requests if r.region not in promotion.promoted_to]
    send_deploy_requests(requests, config, publisher)
    log.info(
        WAVE_PROMOTED,
        regions=[r.region for r in requests],
        already_sent=list(promotion.promoted_to),
        approved_by=approval.by if approval else None,
    )
    return promotion
