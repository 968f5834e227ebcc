"""The status page: one HTML document from a status snapshot. Pure: no I/O, no clock.

Per app and region: what runs (digest and tag), the rollout, the current release, the
region's health, its pool at Cloudflare, the last drift check; the waves waiting at a
gate; each region's release history with who or what triggered each release. Every
value printed is escaped. The page reloads itself (a meta refresh): no script at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from html import escape

from shared.config import App
from shared.display import NONE, when
from shared.display import short_image as _short
from shared.releases import Release
from shared.status import DriftMark, GateWait, PoolState, RegionSnapshot

__all__ = ["AppStatus", "PageStatus", "render_page"]

HISTORY_SHOWN = 6  # releases per region


@dataclass(frozen=True)
class AppStatus:
    app: App
    snapshots: list[RegionSnapshot]
    pools: list[PoolState] | None = None  # None: Cloudflare does not steer this app
    pools_error: str | None = None
    gates: list[GateWait] = field(default_factory=list)


@dataclass(frozen=True)
class PageStatus:
    name: str  # the installation (config `name`)
    project: str
    hostname: str
    generated_at: datetime
    refresh_seconds: int
    apps: list[AppStatus]


def render_page(status: PageStatus) -> str:
    body = "".join(_app_section(a) for a in status.apps)
    title = f"geodeploy status · {status.name}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{int(status.refresh_seconds)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><p>project {_e(status.project)} · load balancer {_e(status.hostname)}"
        f' · read at <time id="generated-at">{_e(when(status.generated_at))}</time>'
        f" · refreshes every {int(status.refresh_seconds)} s</p></header>"
        f"<main>{body}</main></body></html>\n"
    )


def _app_section(a: AppStatus) -> str:
    app = a.app.name
    rows = "".join(_region_row(a, s, _pool_of(a, s.region.name)) for s in a.snapshots)
    pools_note = f'<p class="error">Cloudflare: unavailable: {_e(a.pools_error)}</p>' if a.pools_error else ""
    return (
        f'<section class="app" id="app-{_e(app)}"><h2>{_e(app)} <small>namespace {_e(a.app.namespace)}</small></h2>'
        f"{pools_note}"
        '<table class="regions"><thead><tr><th>Region</th><th>Running</th><th>Tag</th><th>Rollout</th>'
        "<th>Release</th><th>Health</th><th>Cloudflare pool</th><th>Last drift check</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        f"{_gates_section(app, a.gates)}"
        f'<h3>Release history</h3><div class="history">{"".join(_history(s) for s in a.snapshots)}</div>'
        "</section>"
    )


def _pool_of(a: AppStatus, region: str) -> PoolState | None:
    return next((p for p in a.pools or [] if p.region == region), None)


def _region_row(a: AppStatus, s: RegionSnapshot, pool: PoolState | None) -> str:
    region = s.region.name
    pool_cell = _pool_cell(a, pool)
    drift_cell = _drift_cell(s.drift, s.reachable)
    if not s.reachable:
        return (
            f'<tr id="region-{_e(region)}" class="unreachable"><th>{_e(region)}</th>'
            f'<td colspan="5" class="bad">unreachable: {_e(s.error)}</td>{pool_cell}{drift_cell}</tr>'
        )
    current = s.record.current
    if s.deployed:
        state = s.rollout()
        running, tag = _short(state.image), _tag_of(state.image, s.record.history)
        phase = state.phase.value
        rollout = f'<span class="{_e(phase)}">{_e(phase)}</span> {state.available}/{state.desired} available'
        if state.reason and phase != "complete":
            rollout += f"<br><small>{_e(state.reason)}</small>"
    else:
        running, tag, rollout = NONE, NONE, "not deployed"
    health = s.health()
    release = (
        f'{_e(current.release_id)}<br><span class="{_e(current.status)}">{_e(current.status)}</span>'
        + (f" <small>{_e(current.reason)}</small>" if current.reason else "")
        if current
        else NONE
    )
    return (
        f'<tr id="region-{_e(region)}"><th>{_e(region)}</th>'
        f'<td class="digest">{_e(running)}</td><td>{_e(tag)}</td><td class="rollout">{rollout}</td>'
        f'<td class="release">{release}</td>'
        f'<td class="health"><span class="{_e(health.state)}">{_e(health.state)}</span>'
        f" <small>{_e(health.reason)}</small></td>{pool_cell}{drift_cell}</tr>"
    )


def _pool_cell(a: AppStatus, pool: PoolState | None) -> str:
    if a.pools is None:
        return f'<td class="pool">{NONE} <small>not steered</small></td>'
    if pool is None or not pool.exists:
        return '<td class="pool bad">missing</td>'
    state = '<span class="serving">serving</span>' if pool.enabled else '<span class="drained">drained</span>'
    seen = {True: "healthy", False: "unhealthy", None: "not probed"}[pool.healthy]
    return f'<td class="pool">{state} <small>{_e(pool.pool)}, Cloudflare: {_e(seen)}</small></td>'


def _drift_cell(mark: DriftMark | None, reachable: bool) -> str:
    if not reachable:  # its record of the last check could not be read either
        return f'<td class="drift">{NONE} <small>not read</small></td>'
    if mark is None:
        return f'<td class="drift">{NONE} <small>no check recorded</small></td>'
    found = f"{mark.differences} difference{'s' if mark.differences != 1 else ''}" if mark.differences else ""
    healed = " (healed)" if mark.healed else ""
    cloudflare = f", Cloudflare: {mark.cloudflare_differences}" if mark.cloudflare_differences else ""
    detail = ", ".join(x for x in (found + healed + cloudflare, mark.reason) if x)
    return (
        f'<td class="drift"><span class="{_e(mark.status)}">{_e(_words(mark.status))}</span>'
        f"<br><small>{_e(when(mark.checked_at))}{' · ' + _e(detail) if detail else ''}</small></td>"
    )


def _gates_section(app: str, gates: list[GateWait]) -> str:
    if not gates:
        items = '<p class="empty">Nothing waits at a gate.</p>'
    else:
        items = (
            "<ul>"
            + "".join(
                f"<li><b>wave {g.wave}</b> of {_e(g.release_id)} ({_e(', '.join(g.regions))}): {_e(g.gate)}"
                + (f" <small>{_e(g.detail)}</small>" if g.detail else "")
                + "</li>"
                for g in gates
            )
            + "</ul>"
        )
    return f'<h3>Waiting at a gate</h3><div class="gates" id="gates-{_e(app)}">{items}</div>'


def _history(s: RegionSnapshot) -> str:
    region = s.region.name
    if not s.reachable:
        return f'<h4>{_e(region)}</h4><p class="bad">unreachable: {_e(s.error)}</p>'
    releases = s.record.history[:HISTORY_SHOWN]
    if not releases:
        return f'<h4>{_e(region)}</h4><p class="empty">No releases yet.</p>'
    rows = "".join(
        f"<tr><td>{_e(r.release_id)}</td><td>{_e(r.kind)}</td><td class='digest'>{_e(_short(r.image))}</td>"
        f"<td>{_e(r.trigger.tag or NONE)}</td>"
        f'<td><span class="{_e(r.status)}">{_e(r.status)}</span> <small>{_e(r.reason)}</small></td>'
        f"<td>{_e(_triggered_by(r))}</td><td>{_e(when(r.issued_at))}</td>"
        f"<td>{_e(when(r.finished_at))}</td></tr>"
        for r in releases
    )
    shown = f"{len(releases)} of {len(s.record.history)}"
    return (
        f'<h4>{_e(region)} <small>{shown}, newest first</small></h4><table id="history-{_e(region)}">'
        "<thead><tr><th>Release</th><th>Kind</th><th>Image</th><th>Tag</th><th>Status</th>"
        "<th>Triggered by</th><th>Issued</th><th>Finished</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _triggered_by(r: Release) -> str:
    """What started a release and, for a hand-made one, who."""
    t = r.trigger
    what = {"push": "image push", "manual": "manual deploy", "rollback": "rollback", "wave": "wave"}[t.type]
    by = f" by {t.requested_by}" if t.requested_by else ""
    of = f" of {r.rollback_of}" if r.rollback_of else ""
    return f"{what}{of}{by}"


def _tag_of(image: str | None, history: Iterable[Release]) -> str:
    """The tag the running image was pushed with: the newest release of it that names one."""
    return next((r.trigger.tag for r in history if r.image == image and r.trigger.tag), NONE)


def _words(name: str) -> str:
    """A status as words: in_sync reads "in sync"."""
    return name.replace("_", " ")


def _e(value: object) -> str:
    return escape(str(value), quote=True)


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d232b;background:#f5f6f8}
header{background:#1d232b;color:#fff;padding:10px 20px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#c5cbd3}main{padding:8px 20px}
section.app{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:8px 16px 16px;margin:12px 0}
h2{margin:6px 0;font-size:18px}h2 small,h4 small{color:#69717d;font-weight:normal;font-size:12px}
h3{font-size:15px;margin:14px 0 6px}h4{margin:10px 0 4px;font-size:13px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceef1;
vertical-align:top}thead th{font-size:12px;color:#69717d;font-weight:600}
table.regions td,table.regions th{padding:6px 8px}table.regions tbody th{white-space:nowrap}small{color:#69717d}
.digest{font-family:ui-monospace,monospace}
.complete,.succeeded,.healthy,.serving,.in_sync{color:#16794c;font-weight:600}
.progressing,.applying,.release_in_progress{color:#9a6700;font-weight:600}
.failed,.unhealthy,.unreachable,.drifted,.drained,.bad,.error,.unreadable,.permission_denied{color:#c62828;
font-weight:600}.superseded,.no_release{color:#69717d}
tr.unreachable{background:#fdecea}.empty{color:#69717d;font-style:italic;margin:4px 0}
"""
