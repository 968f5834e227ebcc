"""Kubernetes adapter: the few verbs geodeploy needs, as REST calls to the API server.

Not a general client. It knows the kinds geodeploy renders and speaks to their REST
paths directly over shared.adapters.http (no discovery round-trips, no kubernetes client
library: its import and kubeconfig machinery cost a cold start 0.3 s, for nothing
geodeploy uses). Every library error is translated here, once, into geodeploy's families:
a cluster that does not answer is ClusterUnreachable (transient), a write the API server
refuses is KubeRejected (permanent), an optimistic-lock loss is KubeConflict (transient,
caught where a flow can re-read).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from shared.adapters import http
from shared.errors import ClusterUnreachable, PermanentError, PermissionMissing, TransientError
from shared.kinds import KINDS

__all__ = ["KubeClient", "KubeConflict", "KubeRejected"]

Object = dict[str, Any]

# (apiVersion, kind) → (path prefix, plural, namespaced), from the one table of kinds.
_RESOURCES: dict[tuple[str, str], tuple[str, str, bool]] = {
    (k.api_version, k.kind): (k.path_prefix, k.plural, k.namespaced) for k in KINDS
}
_REQUEST_TIMEOUT = (5, 30)  # (connect, read) seconds
# How the API server words an RBAC denial: `... is forbidden: User "x" cannot get resource ...`
_RBAC_REFUSAL = re.compile(r'is forbidden: User ".*" cannot \w+ resource')


class KubeConflict(TransientError):
    """The object changed since it was read (HTTP 409); read again and re-decide. Flows
    that can re-read catch it; anywhere else it is transient: the event is redelivered."""


class KubeRejected(PermanentError):
    """The API server refused a write as invalid (HTTP 400/403/422): retrying cannot help."""


def resource_path(api_version: str, kind: str, name: str | None = None, namespace: str | None = None) -> str:
    try:
        prefix, plural, namespaced = _RESOURCES[(api_version, kind)]
    except KeyError:
        raise KubeRejected("unsupported_kind", f"{api_version} {kind}") from None
    path = f"{prefix}/namespaces/{namespace}/{plural}" if namespaced else f"{prefix}/{plural}"
    return f"{path}/{name}" if name else path


def _path_of(obj: Object) -> str:
    meta = obj["metadata"]
    return resource_path(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))


class KubeClient:
    """One region's cluster. `cluster` names it in errors and logs."""

    def __init__(
        self, base_url: str, *, ca_pem: str | None, token: Callable[[], str], field_manager: str, cluster: str
    ) -> None:
        """`token`: a bearer token, asked for on every call (the caller caches and
        refreshes it); `ca_pem`: the cluster CA that its serving certificate chains to."""
        self._base_url = base_url.rstrip("/")
        self._ca_pem = ca_pem
        self._token = token
        self.field_manager = field_manager
        self.cluster = cluster

    # --- reads ----------------------------------------------------------------------

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Object | None:
        return self._call("GET", resource_path(api_version, kind, name, namespace), missing_ok=True)

    def list_objects(self, api_version: str, kind: str, namespace: str, label_selector: str = "") -> list[Object]:
        query = [("labelSelector", label_selector)] if label_selector else None
        result = self._call("GET", resource_path(api_version, kind, None, namespace), query=query)
        return list(result.get("items", [])) if result else []

    def server_version(self) -> str:
        return str((self._call("GET", "/version") or {}).get("gitVersion", "unknown"))

    # --- writes ---------------------------------------------------------------------

    def apply(self, obj: Object, *, dry_run: bool = False) -> Object:
        """Server-side apply with our field manager; force: geodeploy owns what it renders."""
        query = [("fieldManager", self.field_manager), ("force", "true")]
        if dry_run:
            query.append(("dryRun", "All"))
        result = self._call("PATCH", _path_of(obj), query=query, body=obj, content_type="application/apply-patch+yaml")
        assert result is not None
        return result

    def create(self, obj: Object) -> Object:
        path = resource_path(obj["apiVersion"], obj["kind"], None, obj["metadata"].get("namespace"))
        result = self._call("POST", path, query=[("fieldManager", self.field_manager)], body=obj)
        assert result is not None
        return result

    def replace(self, obj: Object) -> Object:
        """PUT; with metadata.resourceVersion set, fails with KubeConflict if it moved."""
        result = self._call("PUT", _path_of(obj), query=[("fieldManager", self.field_manager)], body=obj)
        assert result is not None
        return result

    def delete(
        self, api_version: str, kind: str, name: str, namespace: str | None, *, resource_version: str | None = None
    ) -> None:
        """Deletes one object, its dependents in the background; an object already gone is
        no error (a redelivered prune finds it so). With `resource_version`, only that
        version of it (KubeConflict if it moved since it was read)."""
        body: Object = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if resource_version is not None:
            body["preconditions"] = {"resourceVersion": resource_version}
        self._call("DELETE", resource_path(api_version, kind, name, namespace), body=body, missing_ok=True)

    def json_patch(self, api_version: str, kind: str, name: str, namespace: str | None, ops: list[Object]) -> Object:
        path = resource_path(api_version, kind, name, namespace)
        result = self._call(
            "PATCH",
            path,
            query=[("fieldManager", self.field_manager)],
            body=ops,
            content_type="application/json-patch+json",
        )
        assert result is not None
        return result

    def scale(self, api_version: str, kind: str, name: str, namespace: str, replicas: int, *, manager: str) -> None:
        """Sets replicas through the object's scale subresource, the way an HPA does."""
        path = resource_path(api_version, kind, name, namespace) + "/scale"
        body = {"spec": {"replicas": replicas}}
        self._call(
            "PATCH", path, query=[("fieldManager", manager)], body=body, content_type="application/merge-patch+json"
        )

    def scale_deployment(self, name: str, namespace: str, replicas: int, *, manager: str) -> None:
        self.scale("apps/v1", "Deployment", name, namespace, replicas, manager=manager)

    # --- watching -------------------------------------------------------------------

    def watch_object(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str,
        *,
        until: Callable[[Object | None], bool],
        deadline: float,
        on_change: Callable[[Object | None], None] | None = None,
        start: Object | None = None,
    ) -> Object | None:
        """Watches one object until `until(obj)` holds or the monotonic deadline passes.

        Returns the last seen state either way. Reconnects when the server closes the
        stream (it does, at timeoutSeconds); re-reads when the watch expires (410).
        `start`: the object as a write just returned it, watched from there instead of
        read first (one request less per deploy).
        """
        obj = start if start is not None else self.get(api_version, kind, name, namespace)
        if on_change:
            on_change(obj)
        while not until(obj):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            version = obj["metadata"]["resourceVersion"] if obj else None
            for event_type, event_obj in self._watch_events(api_version, kind, name, namespace, version, remaining):
                if event_type == "ERROR":
                    break  # typically 410 Gone: fall through to a fresh read
                obj = None if event_type == "DELETED" else event_obj
                if on_change:
                    on_change(obj)
                if until(obj):
                    return obj
            obj = self.get(api_version, kind, name, namespace)
        return obj

    def _watch_events(
        self, api_version: str, kind: str, name: str, namespace: str, version: str | None, seconds: float
    ) -> Iterator[tuple[str, Object]]:
        query = [
            ("fieldSelector", f"metadata.name={name}"),
            ("watch", "true"),
            ("timeoutSeconds", str(max(1, int(seconds)))),
        ]
        if version:
            query.append(("resourceVersion", version))
        path = resource_path(api_version, kind, None, namespace)
        try:
            response = http.stream(
                "GET",
                self._base_url + path,
                query=query,
                headers=self._headers(),
                timeout=(5, seconds + 5),
                ca_pem=self._ca_pem,
            )
        except Exception as e:
            if http.is_connection_error(e):
                raise ClusterUnreachable(f"{self.cluster}: watch {path}: {_short(e)}") from e
            raise
        if not 200 <= response.status < 300:
            body = response.read()
            response.release_conn()
            raise self._translate("GET", path, response.status, body)
        try:
            for line in _lines(response):
                event = json.loads(line)
                if event.get("type") == "BOOKMARK":
                    continue
                yield event.get("type", ""), event.get("object") or {}
        except Exception as e:  # a dropped stream is just the end of this watch
            if not http.is_connection_error(e):
                raise
        finally:
            response.release_conn()

    # --- plumbing -------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        missing_ok: bool = False,
        timeout: tuple[float, float] = _REQUEST_TIMEOUT,
    ) -> Object | None:
        try:
            answer = http.request(
                method,
                self._base_url + path,
                query=query,
                headers=self._headers(),
                body=body,
                content_type=content_type,
                timeout=timeout,
                ca_pem=self._ca_pem,
            )
        except Exception as e:
            if http.is_connection_error(e):
                raise ClusterUnreachable(f"{self.cluster}: {method} {path}: {_short(e)}") from e
            raise
        if answer.status == 404 and missing_ok:
            return None
        if not answer.ok:
            raise self._translate(method, path, answer.status, answer.body)
        try:
            found = answer.json()
        except ValueError:
            raise ClusterUnreachable(f"{self.cluster}: {method} {path}: an answer that is not JSON") from None
        return found if isinstance(found, dict) else {}

    def _headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "Authorization": f"Bearer {self._token()}"}

    def _translate(self, method: str, path: str, status: int | None, body: Any) -> Exception:
        detail = _status_message(body)
        where = f"{self.cluster}: {method} {path}"
        if status == 409:
            return KubeConflict(f"{where}: {detail}")
        if status == 403 and _RBAC_REFUSAL.search(detail):
            # RBAC refused our identity (not an admission policy refusing the object): an
            # operator must grant it, so the event is kept (redelivered, then dead-lettered).
            return PermissionMissing(f"{where}: {detail}")
        if status in (400, 403, 404, 405, 415, 422):
            return KubeRejected(f"kube_{status}", f"{where}: {detail}")
        return ClusterUnreachable(f"{where}: HTTP {status}: {detail}")


def _lines(response: Any) -> Iterator[bytes]:
    """Newline-delimited JSON from a streamed response."""
    buffer = b""
    for chunk in response.stream(4096, decode_content=True):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


def _status_message(body: Any) -> str:
    if isinstance(body, bytes | bytearray):
        body = body.decode(errors="replace")
    try:
        return str(json.loads(body).get("message", body))[:300]
    except (TypeError, ValueError, AttributeError):
        return str(body)[:300]


def _short(e: BaseException) -> str:
    """The root cause, e.g. "Connection refused", not urllib3's long wrapper text."""
    while True:
        inner = getattr(e, "reason", None) or e.__cause__ or e.__context__
        if not isinstance(inner, BaseException) or inner is e:
            break
        e = inner
    text = f"{type(e).__name__}: {e}"
    return text if len(text) < 240 else text[:240] + "…"
