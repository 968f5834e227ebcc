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
from dataclasses import replace

from shared.adapters.kube import KubeClient
from shared.adapters.pubsub import Publisher
from shared.adapters.release_store import ReleaseStore
from shared.config import App, Config, Region
from shared.contracts import ImageRef
from shared.errors import ClusterUnreachable, TransientError
from shared.flows.regions import each_region
from shared.flows.requests import send_deploy_requests
from shared.gates import Hold, Promotion, pending_promotion
from shared.logs import BoundLogger
from shared.planning import plan_region_requests
from shared.releases import ReleaseRecord

__all__ = ["EdgeVerdict", "promote_waiting", "read_records", "waiting_promotion"]

# Whether Cloudflare's monitor calls a region's pool healthy (raises TransientError when
# Cloudflare cannot be read: no verdict is not a healthy one).
EdgeVerdict = Callable[[Region], bool]

# Log events (log-based metrics and the docs name them).
PROMOTION_HELD = "promotion_held"
WAVE_PROMOTED = "wave_promoted"
NOTHING_TO_PROMOTE = "nothing_to_promote"


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
    if not asks_cloudflare or promotion.soaking:
        return promotion
    assert edge is not None
    try:
        unhealthy = [r.cloudflare.pool for r in config.regions_in_wave(promotion.wave) if not edge(r)]
    except TransientError as e:  # no verdict is not a healthy one; the next tick asks again
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
    approved_by: str | None = None,
) -> Promotion | None:
    """Sends the next wave the waiting release when nothing holds it (or only what an
    operator's `approved_by` lifts). Returns the promotion looked at (None: nothing waits)."""
    log = log.bind(app=app.name)
    records = read_records(config, app, connect)
    # The operator's word needs no verdict from Cloudflare.
    promotion = waiting_promotion(config, app, records, None if approved_by else edge)
    if promotion is None:
        log.info(NOTHING_TO_PROMOTE, approved_by=approved_by)
        return None
    log = log.bind(release=promotion.release.release_id, wave=promotion.wave, next_wave=promotion.next_wave)
    holds = [h for h in promotion.holds if approved_by is None or h is Hold.SOAK]
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
    send_deploy_requests(requests, config, publisher)
    log.info(WAVE_PROMOTED, regions=[r.region for r in requests], approved_by=approved_by)
    return promotion
