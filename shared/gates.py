"""Promotion gates between waves (config `gates`): which release waits at which gate,
and what holds it. Pure: the flows read the release records and Cloudflare, this decides.

A gate's state is not written anywhere of its own: it is read from the release records
of the regions, so it survives redelivery and restarts and cannot disagree with them.
A release waits at the gate after wave N when every region of wave N runs it (soaked,
if the wave soaks), no region of the next wave has it, and no region has claimed a
newer deploy since: a newer push cancels a waiting promotion by being newer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.config import App, Approval, Config
from shared.releases import Release, ReleaseRecord

__all__ = ["Hold", "Promotion", "pending_promotion"]


class Hold(StrEnum):
    """What keeps a release at a gate."""

    SOAK = "soak"  # a region of the wave is still soaking (or rolling out)
    EDGE = "edge"  # Cloudflare's monitor does not call every pool of the wave healthy
    APPROVAL = "approval"  # the gate wants a `promote` control message


@dataclass(frozen=True)
class Promotion:
    """A release between two waves, and what (if anything) the gate still waits for."""

    app: str
    release: Release  # as recorded in the wave's first region
    wave: int
    next_wave: int
    holds: tuple[Hold, ...]  # empty: nothing holds it (yet it was not promoted)
    since: datetime | None  # when the wave's last region finished (None: still soaking)
    soaking: tuple[str, ...] = ()  # regions of the wave still soaking
    edge_detail: str = ""  # why Cloudflare holds it (EDGE)
    # Regions of the next wave that already have it: the gate was passed, and only the
    # others still need their requests (a publish cut short, or requests in flight).
    promoted_to: tuple[str, ...] = ()

    @property
    def at_gate(self) -> str:
        return f"wave {self.wave} → wave {self.next_wave}"


def pending_promotion(config: Config, app: App, records: Mapping[str, ReleaseRecord]) -> Promotion | None:
    """The newest deploy waiting at a gate, by the release records of every region
    (`records`: region name → record; every region must be present). Only gated waves
    are considered: an open gate promotes on the wave's last result. `holds` lists SOAK
    and APPROVAL; whether Cloudflare holds it (EDGE) is for the caller to ask."""
    newest = _newest_deploy(records.values())
    if newest is None:
        return None
    for wave in config.waves:
        following = config.next_wave(wave)
        gate = config.gate_after(wave)
        if following is None:
            return None
        in_wave = [_as_recorded(records[r.name], newest) for r in config.regions_in_wave(wave)]
        if any(r is None or not _runs_or_soaks(r) for r in in_wave):
            return None  # not (yet) through this wave: waiting on rollouts, or halted
        first = in_wave[0]
        assert first is not None
        next_regions = config.regions_in_wave(following)
        # The promotion sends `first`'s id; a region may also hold the push as its duplicate.
        sent = tuple(
            r.name
            for r in next_regions
            if records[r.name].find(first.release_id) or _as_recorded(records[r.name], newest)
        )
        if len(sent) == len(next_regions):
            continue  # promoted past this gate already
        if not _gated(gate.soak_seconds, gate.require_edge_healthy, gate.approval):
            return None  # an open gate: the wave's last result promotes (or will)
        if any(records[name].find(first.release_id) or records[name].find(newest.release_id) for name in sent):
            # Promoted (a region of the next wave recorded the very release), but not every
            # region got it: a publish cut short, or requests still in flight. The gate was
            # passed; what is left is to send the rest. (A region that only runs the same
            # image, by a deploy of its own, passes no gate: the gate still holds then.)
            return Promotion(app.name, first, wave, following, (), None, promoted_to=sent)
        soaking = tuple(
            r.name
            for r, rel in zip(config.regions_in_wave(wave), in_wave, strict=True)
            if rel is not None and rel.status != "succeeded"
        )
        holds: list[Hold] = []
        if soaking:
            holds.append(Hold.SOAK)
        if gate.approval is Approval.MANUAL:
            holds.append(Hold.APPROVAL)
        finished = [rel.finished_at for rel in in_wave if rel is not None and rel.finished_at is not None]
        since = max(finished) if finished and not soaking else None
        return Promotion(app.name, first, wave, following, tuple(holds), since, soaking)
    return None


def _gated(soak_seconds: int, require_edge_healthy: bool, approval: Approval) -> bool:
    return bool(soak_seconds) or require_edge_healthy or approval is Approval.MANUAL


def _runs_or_soaks(release: Release) -> bool:
    return release.status == "succeeded" or (release.status == "progressing" and release.soaked_from is not None)


def _newest_deploy(records: Iterable[ReleaseRecord]) -> Release | None:
    """The newest release any region has claimed, if it is a deploy that follows the
    waves: after a rollback (by hand, or automatic in one region) or a deploy to named
    regions, nothing is promoted."""
    claimed = [r for record in records for r in record.history]
    newest = max(claimed, key=lambda r: r.claim_order, default=None)
    if newest is None or newest.kind != "deploy" or newest.rollback_of or not newest.follow_waves:
        return None
    return newest


def _as_recorded(record: ReleaseRecord, release: Release) -> Release | None:
    """The release as one region recorded it, as the wave advance finds it."""
    return record.standing_for(release.release_id, release.image, release.order)
