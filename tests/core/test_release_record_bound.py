"""A region's release record (a ConfigMap, which Kubernetes refuses past 1 MiB) stays
under MAX_RECORD_BYTES however many releases it has seen and whatever they carried: a
record that outgrew the limit would fail every later release's claim in the region."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from shared.adapters.release_store import RECORD_KEY, ReleaseStore, record_name
from shared.contracts import (
    MAX_EVENT_ID_LENGTH,
    MAX_RELEASE_ID_LENGTH,
    MAX_REQUESTED_BY_LENGTH,
    MAX_TAG_LENGTH,
    DeployRequest,
    Trigger,
)
from shared.errors import NotYet
from shared.flows.deploy import RegionDeployer
from shared.logs import BoundLogger
from shared.releases import MAX_RECORD_BYTES, ReleaseRecord
from tests.core.builders import at, build_config, changed, config_data, record, ref, release
from tests.core.inmemory_kube import InMemoryCluster, InMemoryKube

KUBERNETES_CONFIGMAP_LIMIT = 1024 * 1024
HISTORY_LIMIT = 50  # the most rollout.history_limit allows
CONFIG = build_config(changed(config_data(), "rollout.history_limit", HISTORY_LIMIT))
APP = CONFIG.app("shop")
REGION = CONFIG.region("europe-west1")

# The widest character UTF-8 has: every string as many bytes as its bound allows.
WIDE = "\U0001d11e"


def maximal_request(n: int, cluster: InMemoryCluster) -> DeployRequest:
    release_id = f"max-{n:06d}-".ljust(MAX_RELEASE_ID_LENGTH, "x")
    return DeployRequest(
        release_id=release_id,
        app=APP.name,
        region=REGION.name,
        image=ref(f"v{n}", APP.repository),
        trigger=Trigger(
            type="manual",
            event_id=f"{n}".ljust(MAX_EVENT_ID_LENGTH, "e"),
            tag=f"v{n}".ljust(MAX_TAG_LENGTH, WIDE),
            requested_by=WIDE * MAX_REQUESTED_BY_LENGTH,
        ),
        issued_at=cluster.now(),
    )


def test_many_maximal_releases_keep_the_record_under_its_bound():
    cluster = InMemoryCluster()
    kube = InMemoryKube(cluster, field_manager=CONFIG.field_manager)
    store = ReleaseStore(kube, APP)  # type: ignore[arg-type]
    deployer = RegionDeployer(
        config=CONFIG,
        region=REGION,
        kube=kube,  # type: ignore[arg-type]
        publish_result=lambda _result: None,
        log=BoundLogger(logging.getLogger("geodeploy.test"), {}),
        now=cluster.now,
        monotonic=cluster.monotonic,
    )
    sizes = []
    for n in range(HISTORY_LIMIT + 20):
        request = maximal_request(n, cluster)
        while True:
            try:
                deployer.handle(request)
                break
            except NotYet:
                continue
        config_map = kube.get("v1", "ConfigMap", record_name(APP), APP.namespace)
        assert config_map is not None
        sizes.append(len(config_map["data"][RECORD_KEY].encode()))
        assert len(json.dumps(config_map, ensure_ascii=False).encode()) < KUBERNETES_CONFIGMAP_LIMIT // 2

    final, _ = store.read()
    assert len(final.history) == HISTORY_LIMIT
    assert final.current is not None and final.current.trigger.requested_by == WIDE * MAX_REQUESTED_BY_LENGTH
    assert max(sizes) <= MAX_RECORD_BYTES


def oversized(n: int, kilobytes: int):
    """An entry far larger than any message could make it (e.g. one written before
    messages had bounds, or a very long reason)."""
    return release(f"rel-{n:08d}", ref(f"v{n}"), issued_at=at(n)).model_copy(update={"reason": "r" * kilobytes * 1024})


def test_the_oldest_entries_go_when_the_record_would_outgrow_its_bound():
    rec = record(*(oversized(n, 20) for n in reversed(range(40))))  # 40 × 20 KiB, newest first
    newest = oversized(40, 20)
    bounded = rec.with_release(newest, limit=HISTORY_LIMIT)
    assert len(bounded.model_dump_json().encode()) <= MAX_RECORD_BYTES
    assert bounded.current == newest
    # Newest first, and only from the old end: the releases kept are the newest ones.
    kept = [r.release_id for r in bounded.history]
    assert kept == [f"rel-{n:08d}" for n in range(40, 40 - len(kept), -1)]


def test_an_update_that_grows_an_entry_keeps_the_record_bounded_and_the_entry():
    rec = ReleaseRecord(history=tuple(oversized(n, 12) for n in reversed(range(20))))
    assert len(rec.model_dump_json().encode()) <= MAX_RECORD_BYTES
    oldest = rec.history[-1]
    grown = oldest.model_copy(update={"reason": "r" * 64 * 1024, "status": "superseded"})
    updated = rec.updated(grown)
    assert len(updated.model_dump_json().encode()) <= MAX_RECORD_BYTES
    assert updated.find(oldest.release_id) == grown
    assert updated.current == rec.current


def test_a_single_entry_over_the_bound_is_still_kept():
    # Never drop the release being claimed: the claim must land (and ends the request).
    huge = oversized(1, MAX_RECORD_BYTES // 1024 + 1)
    assert ReleaseRecord().with_release(huge, limit=HISTORY_LIMIT).history == (huge,)


def test_the_size_accounting_matches_the_serialized_record():
    rec = record(*(release(f"rel-{n:08d}", ref(f"v{n}"), issued_at=at(n)) for n in range(3)))
    rec = rec.with_inventory(["apps/v1/Deployment/web", "v1/ConfigMap/settings"])
    entries = ",".join(r.model_dump_json() for r in rec.history)
    rest = '"inventory":["apps/v1/Deployment/web","v1/ConfigMap/settings"]'
    assert rec.model_dump_json() == '{"history":[' + entries + "]," + rest + "}"


def test_a_stored_trigger_longer_than_todays_bounds_is_still_readable():
    # A record written before messages had bounds: cut on reading, never unreadable.
    cluster = InMemoryCluster()
    kube = InMemoryKube(cluster)
    store = ReleaseStore(kube, APP)  # type: ignore[arg-type]
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP.namespace}})
    entry = json.loads(release("rel-old-0001", ref("v1"), issued_at=at(0)).model_dump_json())
    entry["trigger"].update(requested_by="x" * 100_000, tag="v" * 1000, event_id="e" * 1000)
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": record_name(APP), "namespace": APP.namespace},
            "data": {RECORD_KEY: json.dumps({"history": [entry]})},
        }
    )
    rec, _ = store.read()
    assert rec.current is not None
    trigger = rec.current.trigger
    assert (len(trigger.requested_by or ""), len(trigger.tag or ""), len(trigger.event_id)) == (
        MAX_REQUESTED_BY_LENGTH,
        MAX_TAG_LENGTH,
        MAX_EVENT_ID_LENGTH,
    )
    assert rec.current.applied_at - rec.current.issued_at == timedelta(seconds=5)
