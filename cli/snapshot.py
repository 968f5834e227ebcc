"""One read of a region: the app's workloads and its release record, or why it could not
be read. Regions are read in parallel, so one slow cluster does not slow the others."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cli.context import Context
    from shared.adapters.kube import KubeClient
    from shared.config import Region
    from shared.releases import ReleaseRecord
    from shared.rendering import RenderedRelease
    from shared.rollout import RolloutState
    from shared.traffic import RegionHealth

__all__ = ["RegionSnapshot", "read_regions"]


def _empty_record() -> ReleaseRecord:
    from shared.releases import ReleaseRecord

    return ReleaseRecord()


@dataclass(frozen=True)
class RegionSnapshot:
    region: Region
    shape: RenderedRelease | None = None  # what a release consists of: its health targets
    workloads: list[dict[str, Any] | None] = field(default_factory=list)  # as read, in the shape's order
    record: ReleaseRecord = field(default_factory=_empty_record)
    error: str | None = None  # set when the region could not be read

    @property
    def reachable(self) -> bool:
        return self.error is None

    @property
    def deployed(self) -> bool:
        """Whether the app's first workload exists."""
        return bool(self.workloads) and self.workloads[0] is not None

    def rollout(self) -> RolloutState:
        assert self.shape is not None
        current = self.record.current
        # A deadline condition older than the current release belongs to the one before.
        applied_at = current.applied_at if current is not None else None
        return self.shape.rollout(self.workloads, applied_at)

    def health(self) -> RegionHealth:
        from shared.traffic import RegionHealth, assess_rollout

        if self.error is not None:
            return RegionHealth(self.region.name, "unreachable", self.error)
        return assess_rollout(self.region.name, self.rollout() if self.deployed else None, self.record)


def read_region(ctx: Context, region: Region, kube: KubeClient | None = None) -> RegionSnapshot:
    from shared.adapters.release_store import ReleaseStore
    from shared.errors import ClusterUnreachable, PermanentError
    from shared.rendering import render_shape

    app = ctx.app
    shape = render_shape(ctx.config, app, region)
    try:
        kube = kube or ctx.connect(region)
        workloads = [kube.get("apps/v1", t.kind, t.name, t.namespace) for t in shape.health_targets]
        record, _ = ReleaseStore(kube, app).read()
    except (ClusterUnreachable, PermanentError) as e:
        return _unreachable(ctx, region, e)
    except ValueError as e:  # a release record that is not valid JSON of a record
        return RegionSnapshot(region, error=f"unreadable release record: {str(e).splitlines()[0][:150]}")
    return RegionSnapshot(region, shape, workloads, record)


def read_regions(ctx: Context, regions: list[Region]) -> list[RegionSnapshot]:
    """Every region at once (the functions' parallel read), waiting for every region."""
    if len(regions) <= 1:
        return [read_region(ctx, r) for r in regions]
    from shared.flows.regions import each_region

    ctx.clusters  # noqa: B018  (built here, once, before the threads share it)
    return each_region(regions, lambda region: read_region(ctx, region))


def _unreachable(ctx: Context, region: Region, e: Exception) -> RegionSnapshot:
    # Next time, ask GKE for the endpoint again: the cluster may have moved.
    ctx.clusters.forget(region.cluster)
    from cli.views import brief

    return RegionSnapshot(region, error=brief(str(e)))
