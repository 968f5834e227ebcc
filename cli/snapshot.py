"""One read of a region: the app's workloads and its release record, or why it could not
be read (shared.flows.status, which the status page reads through too). Regions are read
in parallel, so one slow cluster does not slow the others."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.status import RegionSnapshot

if TYPE_CHECKING:
    from cli.context import Context
    from shared.config import Region

__all__ = ["RegionSnapshot", "read_regions"]


def read_regions(ctx: Context, regions: list[Region]) -> list[RegionSnapshot]:
    """Every region at once (the functions' parallel read), waiting for every region."""
    from shared.flows.status import read_regions as read

    if len(regions) > 1:
        ctx.clusters  # noqa: B018  (built here, once, before the threads share it)
    return read(ctx.config, ctx.app, regions, ctx.connect, on_unreachable=lambda r, e: _unreachable(ctx, r, e))


def _unreachable(ctx: Context, region: Region, e: Exception) -> str:
    # Next time, ask GKE for the endpoint again: the cluster may have moved.
    ctx.clusters.forget(region.cluster)
    from cli.views import brief

    return brief(str(e))
