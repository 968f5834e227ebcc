"""Where a region keeps its release record: a ConfigMap in the app's namespace.

Writes carry the resourceVersion that was read, so two function calls racing on the
same region cannot both claim a release: the loser gets KubeConflict and re-decides.
"""

from __future__ import annotations

from pydantic import ValidationError

from shared import releases
from shared.adapters.kube import KubeClient
from shared.config import App
from shared.errors import RecordUnreadable
from shared.releases import ReleaseRecord

__all__ = ["ReleaseStore", "record_name"]

RECORD_KEY = "releases.json"


def record_name(app: App) -> str:
    return releases.record_name(app.name)


class ReleaseStore:
    def __init__(self, kube: KubeClient, app: App) -> None:
        self._kube = kube
        self._app = app

    def read(self) -> tuple[ReleaseRecord, str | None]:
        """The record and its resourceVersion (None when no release was ever made)."""
        obj = self._kube.get("v1", "ConfigMap", record_name(self._app), self._app.namespace)
        if obj is None:
            return ReleaseRecord(), None
        raw = (obj.get("data") or {}).get(RECORD_KEY, "{}")
        try:
            record = ReleaseRecord.model_validate_json(raw)
        except (ValidationError, ValueError, RecursionError) as e:
            # A hand edit, most likely. Never guess, never overwrite it: say where it is.
            first = e.errors()[0] if isinstance(e, ValidationError) and e.errors() else None
            where = ".".join(str(p) for p in first["loc"]) + f": {first['msg']}" if first else type(e).__name__
            raise RecordUnreadable(
                f"ConfigMap {self._app.namespace}/{record_name(self._app)} key {RECORD_KEY}: {where}"[:300]
            ) from None
        return record, obj["metadata"]["resourceVersion"]

    def write(self, record: ReleaseRecord, version: str | None) -> str:
        """Writes the record if nobody changed it since `version`; returns the new version."""
        current = record.current
        data = {RECORD_KEY: record.model_dump_json()}
        if current is not None:
            # Plain keys so `kubectl get configmap -o yaml` answers "what runs here?" at a glance.
            data.update({"image": current.image, "release": current.release_id, "status": current.status})
        metadata: dict[str, object] = {
            "name": record_name(self._app),
            "namespace": self._app.namespace,
            "labels": {"app.kubernetes.io/name": self._app.name, "app.kubernetes.io/managed-by": "geodeploy"},
        }
        obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
        if version is None:
            written = self._kube.create(obj)
        else:
            metadata["resourceVersion"] = version
            written = self._kube.replace(obj)
        return str(written["metadata"]["resourceVersion"])
