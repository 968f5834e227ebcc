"""Plans which regions get which deploy request. Pure."""

from __future__ import annotations

from datetime import datetime

from shared.config import App, Config
from shared.contracts import DeployRequest, ImageRef, Trigger

__all__ = ["plan_region_requests"]


def plan_region_requests(
    config: Config,
    app: App,
    *,
    release_id: str,
    image: ImageRef | None,
    trigger: Trigger,
    issued_at: datetime,
    kind: str = "deploy",
    wave: int | None = None,
    regions: list[str] | None = None,
) -> list[DeployRequest]:
    """One request per target region: the given wave's regions (the first wave by
    default), or exactly `regions` when named (rollbacks go everywhere at once)."""
    if regions is not None:
        targets = [config.region(name) for name in regions]
    else:
        wave = config.waves[0] if wave is None else wave
        targets = config.regions_in_wave(wave)
    return [
        DeployRequest(
            kind="rollback" if kind == "rollback" else "deploy",
            release_id=release_id,
            app=app.name,
            region=region.name,
            image=image.reference if image else None,
            trigger=trigger,
            issued_at=issued_at,
            wave=region.wave,
            follow_waves=regions is None,
        )
        for region in targets
    ]
