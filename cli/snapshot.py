"""One read of a region: its Deployment and its release record, or why it could not be
read. Regions are read in parallel, so one slow cluster does not slow the others."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cli.context import Context
    from shared.adapters.kube import KubeClient
    from shared.config import Region
    from shared.releases import ReleaseRecord
    from shared.rollout import RolloutState
    from shared.traffic import RegionHealth

__all__ = ["RegionSnapshot", "read_regions"]


def _empty_record() -> ReleaseRecord:
    from shared.releases import ReleaseRecord

    return ReleaseRecord()


@dataclass(frozen=True)
class RegionSnapshot:
    region: Region
    deployment: dict[str, Any] | None = None
    record: ReleaseRecord = field(default_factory=_empty_record)
    error: str | None = None  # set when the region could not be read

    @property
    def reachable(self) -> bool:
        return self.error is None

    def rollout(self, min_available: int) -> RolloutState:
        from shared.rollout import evaluate_rollout

        current = self.record.current
        # A deadline condition older than the current release belongs to the one before.
        applied_at = current.applied_at if current is not None else None
        return evaluate_rollout(self.deployment, min_available, applied_at)

    def health(self, min_available: int) -> RegionHealth:
        from shared.traffic import RegionHealth, assess_region

        if self.error is not None:
            return RegionHealth(self.region.name, "unreachable", self.error)
        return assess_region(self.region.name, self.deployment, self.record, min_available)


def read_region(ctx: Context, region: Region, kube: KubeClient | None = None) -> RegionSnapshot:
    from shared.adapters.release_store import ReleaseStore
    from shared.errors import ClusterUnreachable, PermanentError

    app = ctx.app
    try:
        kube = kube or ctx.connect(region)
        deployment = kube.get("apps/v1", "Deployment", app.name, app.namespace)
        record, _ = ReleaseStore(kube, app).read()
    except (ClusterUnreachable, PermanentError) as e:
        return _unreachable(ctx, region, e)
    except ValueError as e:  # a release record that is not valid JSON of a record
        return RegionSnapshot(region, error=f"unreadable release record: {str(e).splitlines()[0][:150]}")
    return RegionSnapshot(region, deployment, record)


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
