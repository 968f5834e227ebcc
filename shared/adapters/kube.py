"""Kubernetes adapter: the few verbs geodeploy needs, on the kubernetes client's ApiClient.

Not a general client. It knows the kinds geodeploy renders and speaks to their REST
paths directly (no discovery round-trips, no model classes: a light import for cold
starts). Every library error is translated here, once, into geodeploy's families:
a cluster that does not answer is ClusterUnreachable (transient), a write the API server
refuses is KubeRejected (permanent), an optimistic-lock loss is KubeConflict (transient,
caught where a flow can re-read).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from shared.errors import ClusterUnreachable, PermanentError, PermissionMissing, TransientError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["KubeClient", "KubeConflict", "KubeRejected"]

Object = dict[str, Any]

# (apiVersion, kind) → (path prefix, plural, namespaced)
_RESOURCES: dict[tuple[str, str], tuple[str, str, bool]] = {
    ("v1", "Namespace"): ("/api/v1", "namespaces", False),
    ("v1", "Service"): ("/api/v1", "services", True),
    ("v1", "ConfigMap"): ("/api/v1", "configmaps", True),
    ("v1", "Pod"): ("/api/v1", "pods", True),
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments", True),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): ("/apis/autoscaling/v2", "horizontalpodautoscalers", True),
    ("policy/v1", "PodDisruptionBudget"): ("/apis/policy/v1", "poddisruptionbudgets", True),
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

    def __init__(self, api: ApiClient, *, field_manager: str, cluster: str) -> None:
        self._api = api
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

    def scale_deployment(self, name: str, namespace: str, replicas: int, *, manager: str) -> None:
        """Sets replicas through the scale subresource, the way the HPA itself does."""
        path = resource_path("apps/v1", "Deployment", name, namespace) + "/scale"
        body = {"spec": {"replicas": replicas}}
        self._call(
            "PATCH", path, query=[("fieldManager", manager)], body=body, content_type="application/merge-patch+json"
        )

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
    ) -> Object | None:
        """Watches one object until `until(obj)` holds or the monotonic deadline passes.

        Returns the last seen state either way. Reconnects when the server closes the
        stream (it does, at timeoutSeconds); re-reads when the watch expires (410).
        """
        obj = self.get(api_version, kind, name, namespace)
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
        response = self._raw("GET", path, query=query, timeout=(5, seconds + 5))
        try:
            for line in _lines(response):
                event = json.loads(line)
                if event.get("type") == "BOOKMARK":
                    continue
                yield event.get("type", ""), event.get("object") or {}
        except Exception as e:  # a dropped stream is just the end of this watch
            if not _is_connection_error(e):
                raise
        finally:
            response.response.release_conn()

    # --- plumbing -------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        missing_ok: bool = False,
    ) -> Object | None:
        response = self._raw(method, path, query=query, body=body, content_type=content_type, missing_ok=missing_ok)
        if response is None:
            return None
        data = response.read()
        return json.loads(data) if data else {}

    def _raw(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        missing_ok: bool = False,
        timeout: tuple[float, float] = _REQUEST_TIMEOUT,
    ) -> Any:
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        request = self._api.param_serialize(
            method, path, query_params=query, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            response = self._api.call_api(*request, _request_timeout=timeout)
        except ApiException as e:  # raised by the REST layer for some statuses
            raise self._translate(method, path, e.status, e.body) from e
        except Exception as e:
            if _is_connection_error(e):
                raise ClusterUnreachable(f"{self.cluster}: {method} {path}: {_short(e)}") from e
            raise
        if response.status == 404 and missing_ok:
            response.read()
            return None
        if not 200 <= response.status < 300:
            raise self._translate(method, path, response.status, response.read())
        return response

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
    """Newline-delimited JSON from a streaming urllib3 response."""
    buffer = b""
    for chunk in response.response.stream(4096, decode_content=True):
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


def _is_connection_error(e: BaseException) -> bool:
    import urllib3.exceptions

    return isinstance(e, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError | OSError)


def _short(e: BaseException) -> str:
    """The root cause, e.g. "Connection refused", not urllib3's long wrapper text."""
    while True:
        inner = getattr(e, "reason", None) or e.__cause__ or e.__context__
        if not isinstance(inner, BaseException) or inner is e:
            break
        e = inner
    text = f"{type(e).__name__}: {e}"
    return text if len(text) < 240 else text[:240] + "…"
