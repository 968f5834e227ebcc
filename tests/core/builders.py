"""Small builders for the fast test tier: configs, images, requests, releases and the
Kubernetes objects the pure core reads. No I/O except `shipped_config`, which reads one
of the repository's own config files."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from shared.config import Config, load_config, parse_config
from shared.contracts import DeployRequest, ImageRef, Trigger
from shared.releases import Release, ReleaseRecord

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "config"
SHIPPED_CONFIGS = ("example", "sandbox", "sandbox-waves", "examples/seed")

SHOP_REPO = "europe-docker.pkg.dev/geo-test-project/apps/shop"
WORKER_REPO = "europe-docker.pkg.dev/geo-test-project/apps/worker"
OTHER_REPO = "us-docker.pkg.dev/someone-else/images/shop"

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    """A time `minutes` after T0 (negative: before)."""
    return T0 + timedelta(minutes=minutes)


# --- configs ---------------------------------------------------------------------------


@cache
def shipped_config(name: str) -> Config:
    return load_config(CONFIG_DIR / f"{name}.yaml")


def config_data(*, waves: bool = False, worker: bool = False) -> dict[str, Any]:
    """A fresh, valid three-region config as plain data (the shape of the YAML file).
    waves=True puts europe-west1 in wave 1 and the others in wave 2; worker=True adds a
    second app that the load balancer does not steer to."""
    data: dict[str, Any] = {
        "version": 1,
        "project": "geo-test-project",
        "cloudflare": {
            "account_id": "0123456789abcdef0123456789abcdef",
            "zone_id": "fedcba9876543210fedcba9876543210",
            "hostname": "shop.example.test",
            "app": "shop",
        },
        "apps": [{"name": "shop", "repository": SHOP_REPO, "namespace": "shop"}],
        "regions": [
            _region("europe-west1", "europe-west1-b", "192.0.2.10", ["WEU", "EEU", "ME", "NAF", "SAF"], 1),
            _region("us-west1", "us-west1-a", "192.0.2.20", ["WNAM", "ENAM", "NSAM", "SSAM"], 2 if waves else 1),
            _region("asia-east1", "asia-east1-a", "192.0.2.30", ["SEAS", "NEAS", "SAS", "OC"], 2 if waves else 1),
        ],
    }
    if worker:
        data["apps"].append({"name": "worker", "repository": WORKER_REPO, "namespace": "worker"})
    return data


def _region(name: str, location: str, address: str, geo: list[str], wave: int) -> dict[str, Any]:
    return {
        "name": name,
        "cluster": {"location": location, "name": f"shop-{name}"},
        "static_ip": {"name": f"shop-{name}", "address": address},
        "cloudflare": {"pool": f"shop-{name}", "geo_regions": list(geo)},
        "wave": wave,
    }


def build_config(data: dict[str, Any] | None = None, source: str = "test.yaml") -> Config:
    """Parses `data` through the same path a config file takes (YAML text → parse_config).
    Configs are frozen, so equal texts share one parse (keeps the tier fast)."""
    text = yaml.dump(config_data() if data is None else data, Dumper=_Dumper, sort_keys=False)
    return _parse(text, source)


_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@cache
def _parse(text: str, source: str) -> Config:
    return parse_config(text, source)


@dataclass(frozen=True)
class MemoryFiles:
    """The files beside a config, held in memory (a SourceFiles): {"deploy/k8s.yaml": text}."""

    files: dict[str, str]

    def read_text(self, path: str) -> str:
        if path not in self.files:
            raise ValueError(f"{path}: cannot read: No such file or directory")
        return self.files[path]

    def list_names(self, directory: str) -> list[str]:
        return [p.rpartition("/")[2] for p in self.files if p.rpartition("/")[0] == directory]


def build_sourced_config(
    source: Any, files: dict[str, str], data: dict[str, Any] | None = None, source_file: str = "test.yaml"
) -> Config:
    """`data` (default: config_data()) with the first app's objects from `source`, e.g.
    {"template": "deploy/k8s.yaml"}, its files given as text."""
    data = changed(config_data() if data is None else data, "apps[0].source", source)
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False)
    return parse_config(text, source_file, MemoryFiles(files))


_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _path(path: str) -> list[str | int]:
    return [int(index) if index else key for key, index in _TOKEN.findall(path)]


def set_at(data: Any, path: str, value: Any) -> Any:
    """Sets `value` at `regions[1].cluster.name`-style `path` (creating mappings on the way)."""
    *parents, last = _path(path)
    node = data
    for part in parents:
        if isinstance(part, str) and part not in node:
            node[part] = {}
        node = node[part]
    node[last] = value
    return data


def delete_at(data: Any, path: str) -> Any:
    *parents, last = _path(path)
    node = data
    for part in parents:
        node = node[part]
    del node[last]
    return data


def changed(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `data` with `value` at `path`."""
    return set_at(copy.deepcopy(data), path, value)


# --- images, requests, releases ----------------------------------------------------------


def digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def image(seed: str = "v1", repository: str = SHOP_REPO) -> ImageRef:
    return ImageRef(repository, digest(seed))


def ref(seed: str = "v1", repository: str = SHOP_REPO) -> str:
    """`repository@sha256:...` for `seed`."""
    return image(seed, repository).reference


def trigger(type: str = "push", event_id: str = "evt-1", tag: str | None = None) -> Trigger:
    return Trigger(type=type, event_id=event_id, tag=tag)  # type: ignore[arg-type]


def deploy_request(
    image_ref: str | None = None,
    *,
    release_id: str = "rel-new-0001",
    issued_at: datetime | None = None,
    kind: str = "deploy",
    region: str = "europe-west1",
    app: str = "shop",
    trigger_type: str | None = None,
) -> DeployRequest:
    if image_ref is None and kind == "deploy":
        image_ref = ref("new")
    return DeployRequest(
        kind=kind,  # type: ignore[arg-type]
        release_id=release_id,
        app=app,
        region=region,
        image=image_ref,
        trigger=trigger(trigger_type or ("rollback" if kind == "rollback" else "push"), event_id=release_id),
        issued_at=at(10) if issued_at is None else issued_at,
    )


HASH = "sha256:" + "0" * 64  # the manifest hash every image renders to unless a test says otherwise


def release(
    release_id: str,
    image_ref: str,
    *,
    status: str = "succeeded",
    issued_at: datetime | None = None,
    manifest_hash: str = HASH,
    kind: str = "deploy",
    rollback_of: str | None = None,
) -> Release:
    issued = at(0) if issued_at is None else issued_at
    return Release(
        release_id=release_id,
        kind=kind,  # type: ignore[arg-type]
        image=image_ref,
        trigger=trigger("rollback" if kind == "rollback" else "push", event_id=release_id),
        issued_at=issued,
        manifest_hash=manifest_hash,
        status=status,  # type: ignore[arg-type]
        applied_at=issued + timedelta(seconds=5),
        finished_at=None if status in ("applying", "progressing") else issued + timedelta(minutes=2),
        rollback_of=rollback_of,
    )


def record(*releases: Release) -> ReleaseRecord:
    """A release record, newest release first."""
    return ReleaseRecord(history=tuple(releases))


# --- Kubernetes objects as the API server returns them --------------------------------------


def deployment(
    *,
    image_ref: str | None = None,
    replicas: int = 3,
    generation: int = 2,
    observed: int | None = None,
    updated: int | None = None,
    total: int | None = None,
    available: int | None = None,
    condition_reason: str | None = "NewReplicaSetAvailable",
) -> dict[str, Any]:
    """A Deployment with a status; by default fully rolled out with `replicas` pods."""
    status: dict[str, Any] = {
        "observedGeneration": generation if observed is None else observed,
        "replicas": replicas if total is None else total,
        "updatedReplicas": replicas if updated is None else updated,
        "availableReplicas": replicas if available is None else available,
    }
    if condition_reason is not None:
        status["conditions"] = [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {
                "type": "Progressing",
                "status": "False" if condition_reason == "ProgressDeadlineExceeded" else "True",
                "reason": condition_reason,
                "message": f"ReplicaSet shop-abc: {condition_reason}",
            },
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "shop", "namespace": "shop", "generation": generation},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "app", "image": image_ref or ref("v1")}]}},
        },
        "status": status,
    }


# --- Pub/Sub -------------------------------------------------------------------------------


def pubsub_event_data(payload: Any, *, raw: bytes | None = None) -> dict[str, Any]:
    """The CloudEvent `data` functions-framework builds from a Pub/Sub push body
    (research/gcp-event-formats-and-clients.md §2): base64 `message.data`, no subscription."""
    body = raw if raw is not None else json.dumps(payload).encode()
    return {
        "message": {
            "@type": "type.googleapis.com/google.pubsub.v1.PubsubMessage",
            "data": base64.b64encode(body).decode(),
            "attributes": {},
            "messageId": "1234567890",
            "publishTime": "2026-03-01T12:00:00.000Z",
        }
    }
