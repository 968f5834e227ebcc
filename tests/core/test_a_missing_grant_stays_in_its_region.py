"""A cluster that refuses a central function's identity (RBAC: a binding not applied yet,
e.g. in a region just added) is that region's trouble: traffic, drift and the control
function's `previous` carry on with the other regions and name the refusal, instead of
failing the whole call. A drift heal re-creates a deleted Service, HPA or PDB, never a
Deployment, and a refused heal is reported per object.

The flows run for real on in-memory clusters where the real deploy flow released the app;
the refusal is the in-memory API server's (what KubeClient raises for an RBAC 403)."""

from __future__ import annotations

import pytest

from shared.config import Region
from shared.contracts import ControlMessage
from shared.errors import PERMISSION_DENIED, PermissionMissing
from shared.flows.control import _resolve_previous
from shared.flows.drift import HEAL_WORKLOAD_ABSENT, RegionStatus, check_drift
from shared.flows.traffic import read_region_health
from tests.core.builders import at, ref
from tests.core.inmemory_kube import CLOCK_START, Fault, InMemoryKube
from tests.core.test_drift_leaves_traffic_to_reconcile_traffic import CONFIG, GOOD, LOG, Regions

REFUSING = "asia-east1"


class OneRegionRefuses(Regions):
    """Every call to REFUSING's API server is refused by RBAC; `refuse_steps` narrows
    that to the named steps (e.g. "Deployment apply") in every region."""

    def __init__(self) -> None:
        self.refused_region: str | None = None
        self.refuse_steps: set[str] = set()
        super().__init__(CONFIG)  # releases the apps through connect()

    def connect(self, region: Region) -> InMemoryKube:
        def gate(step: str, _faultable: bool) -> Fault | None:
            if region.name == self.refused_region or step in self.refuse_steps:
                return Fault("rbac_403")
            return None

        return InMemoryKube(
            self.clusters[region.name], field_manager=self.config.field_manager, name=region.name, gate=gate
        )

    def delete(self, region: str, kind: str, app: str = "shop") -> None:
        """`kubectl delete`: the object is gone."""
        api = {"Deployment": "apps/v1", "HorizontalPodAutoscaler": "autoscaling/v2", "Service": "v1"}[kind]
        with self.clusters[region].lock:
            del self.clusters[region]._objects[(api, kind, self.config.app(app).namespace, app)]

    def exists(self, region: str, kind: str, api: str, app: str = "shop") -> bool:
        return self.clusters[region].read((api, kind, self.config.app(app).namespace, app)) is not None


@pytest.fixture
def regions() -> OneRegionRefuses:
    return OneRegionRefuses()


def test_traffic_counts_a_refusing_region_out_and_names_the_refusal(regions):
    regions.refused_region = REFUSING
    health = {r.name: read_region_health(CONFIG, r, regions.connect) for r in CONFIG.regions}  # type: ignore[arg-type]
    assert (health[REFUSING].state, health[REFUSING].reason) == ("unreachable", PERMISSION_DENIED)
    assert "forbidden" in health[REFUSING].detail
    assert all(h.healthy for name, h in health.items() if name != REFUSING)


def test_drift_reports_a_refusing_region_and_checks_the_others(regions):
    regions.refused_region = REFUSING
    regions.hand_edit("us-west1", "shop")
    report = check_drift(CONFIG, connect=regions.connect, cloudflare=None, heal=True, now=CLOCK_START, log=LOG)  # type: ignore[arg-type]
    by_region = {(r.app, r.region): r for r in report.regions}
    refused = by_region[("shop", REFUSING)]
    assert (refused.status, refused.reason) == (RegionStatus.PERMISSION_DENIED, PERMISSION_DENIED)
    assert "forbidden" in refused.detail
    assert by_region[("shop", "us-west1")].status is RegionStatus.DRIFTED and by_region[("shop", "us-west1")].healed
    assert regions.running("us-west1", "shop") == GOOD["shop"]


def test_a_heal_recreates_a_deleted_hpa_and_service(regions):
    regions.delete("us-west1", "HorizontalPodAutoscaler")
    regions.delete("us-west1", "Service")
    report = check_drift(CONFIG, connect=regions.connect, cloudflare=None, heal=True, now=CLOCK_START, log=LOG)  # type: ignore[arg-type]
    region = next(r for r in report.regions if (r.app, r.region) == ("shop", "us-west1"))
    assert region.status is RegionStatus.DRIFTED and region.healed and not region.heal_failures
    assert regions.exists("us-west1", "HorizontalPodAutoscaler", "autoscaling/v2")
    assert regions.exists("us-west1", "Service", "v1")


def test_a_heal_leaves_a_deleted_deployment_to_a_release_and_says_so(regions):
    regions.delete("us-west1", "Deployment")
    report = check_drift(CONFIG, connect=regions.connect, cloudflare=None, heal=True, now=CLOCK_START, log=LOG)  # type: ignore[arg-type]
    region = next(r for r in report.regions if (r.app, r.region) == ("shop", "us-west1"))
    assert region.status is RegionStatus.DRIFTED and not region.healed
    assert [(f["object"], f["reason"]) for f in region.heal_failures] == [
        ("Deployment/shop/shop", HEAL_WORKLOAD_ABSENT)
    ]
    assert not regions.exists("us-west1", "Deployment", "apps/v1")


def test_a_heal_rbac_refuses_is_reported_per_object_and_the_check_goes_on(regions):
    # Re-creating a deleted HPA is a `create`: without that grant, the heal is refused.
    regions.delete("us-west1", "HorizontalPodAutoscaler")
    regions.delete("europe-west1", "HorizontalPodAutoscaler", app="worker")
    regions.hand_edit("us-west1", "shop")
    regions.refuse_steps = {"HorizontalPodAutoscaler apply"}
    report = check_drift(CONFIG, connect=regions.connect, cloudflare=None, heal=True, now=CLOCK_START, log=LOG)  # type: ignore[arg-type]
    for app, name in (("shop", "us-west1"), ("worker", "europe-west1")):
        region = next(r for r in report.regions if (r.app, r.region) == (app, name))
        assert region.status is RegionStatus.DRIFTED and not region.healed
        assert [(f["object"], f["reason"]) for f in region.heal_failures] == [
            (f"HorizontalPodAutoscaler/{CONFIG.app(app).namespace}/{app}", PERMISSION_DENIED)
        ]
    assert regions.running("us-west1", "shop") == GOOD["shop"]  # the other object was healed


def test_previous_waits_for_a_refusing_region_and_names_the_refusal(regions):
    # A second release everywhere, so "previous" means the first.
    for region in CONFIG.regions:
        regions.release(region.name, "shop", ref("v2"), "shop-v2-release", issued_at=at(20))
    regions.refused_region = REFUSING
    everywhere = ControlMessage(version=1, action="rollback", app="shop", target="previous")
    with pytest.raises(PermissionMissing, match=rf"while {REFUSING} cannot be read.*forbidden"):
        _resolve_previous(everywhere, CONFIG, regions.connect, LOG)  # type: ignore[arg-type]
    # Named, the regions control may read roll back without it.
    others = [r.name for r in CONFIG.regions if r.name != REFUSING]
    named = ControlMessage(version=1, action="rollback", app="shop", target="previous", regions=others)
    assert _resolve_previous(named, CONFIG, regions.connect, LOG).reference == GOOD["shop"]  # type: ignore[arg-type]


def test_previous_with_every_region_refusing_is_the_permission_error(regions):
    message = ControlMessage(version=1, action="rollback", app="shop", target="previous")
    regions.refuse_steps = {"record read"}
    with pytest.raises(PermissionMissing, match="forbidden"):
        _resolve_previous(message, CONFIG, regions.connect, LOG)  # type: ignore[arg-type]
