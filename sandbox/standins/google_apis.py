"""Google APIs stand-in: GKE GetCluster, Secret Manager AccessSecretVersion, OAuth2.

Point the real clients at it with the REST transport and an explicit endpoint (with
the scheme, or they use https):

    opts = {"api_endpoint": url}
    container_v1.ClusterManagerClient(transport="rest", client_options=opts, ...)
    secretmanager.SecretManagerServiceClient(transport="rest", client_options=opts, ...)

Routes (the query string, e.g. ``?$alt=json;enum-encoding=int``, is ignored):
  GET  /v1/projects/{p}/locations/{l}/clusters/{c}       registered cluster, else 404
  GET  /v1/projects/{p}/secrets/{s}/versions/{v}:access  v: number or "latest" (the
       highest enabled); ``name`` carries the resolved number, plus ``dataCrc32c``
  POST /token   OAuth2 refresh_token grant, form-encoded, client auth in body or Basic
  POST /v2/projects/{p}/locations/{l}/services/{s}:testIamPermissions  Cloud Run Admin
       API: which of the body's ``permissions`` the caller (its bearer) holds on the
       service, as ``{"permissions": [...]}`` (the sandbox's Cloud Run ingress asks it
       for ``run.routes.invoke`` with the caller's token, sandbox/cloud_run.py)

Identities and IAM (what the sandbox runs with): each identity has its own refresh token
(in its own credentials file) and gets its own access token from /token. With
``enforce_iam``, GetCluster needs ``container.clusters.get`` on the project and
AccessSecretVersion needs ``secretmanager.versions.access`` on the secret (or the
project), granted to the caller's identity in ``iam``; otherwise the answer is Google's
403 PERMISSION_DENIED (PermissionDenied in google-api-core), worded as Google words it.

Errors have Google's shape ``{"error": {"code", "message", "status"}}``. Over REST,
google-api-core picks the exception by HTTP status alone: NotFound (404), BadRequest
(400, even for FAILED_PRECONDITION on a disabled version), Unauthorized (401: only with
``require_auth``, when the bearer is not the configured access token) and, for injected
faults, TooManyRequests / InternalServerError / BadGateway / ServiceUnavailable.

Credentials: google-auth 2.63 ignores ``token_uri`` in an ``authorized_user`` file (it
always refreshes at oauth2.googleapis.com), so `write_authorized_user_credentials`
writes the ``external_account_authorized_user`` type, whose ``token_url`` is honoured.

Control API (JSON, no auth; `GoogleStandinControl`): the common routes of
`StandinServer` (requests, faults without success_false, state, reset) plus
  POST /__standin/clusters  {"name": "projects/p/locations/l/clusters/c", "endpoint",
                             "ca_pem", "status"?, "current_master_version"?}
  POST /__standin/secrets   {"name": "projects/p/secrets/s", "data", "enabled"?}
                            -> {"version": n}
  POST /__standin/secret-versions  {"name": ".../versions/n", "enabled": bool}
  POST /__standin/iam       {"member", "permission", "resource", "granted": bool}
                            grants or revokes one permission
--state-file: {"clusters": [cluster...], "secrets": [secret...], "access_token"?,
               "identities"?: [{"email", "refresh_token", "access_token"}...],
               "iam"?: [{"member", "permission", "resource"}...], "enforce_iam"?: bool}.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import google_crc32c

from sandbox.standins._http import (
    ControlClient,
    FaultRule,
    Request,
    Response,
    Router,
    StandinServer,
    run_cli,
)

DEFAULT_ACCESS_TOKEN = "sandbox-google-access-token"
DEFAULT_MASTER_VERSION = "1.33.5-gke.1125000"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
FAULT_STATUS = {
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
}


class GoogleError(Exception):
    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message

    def response(self, headers: dict[str, str] | None = None) -> Response:
        error = {"code": self.code, "message": self.message, "status": self.status}
        return Response(self.code, {"error": error}, headers or {})


def _not_found(message: str) -> GoogleError:
    return GoogleError(404, "NOT_FOUND", message)


def _split_name(name: str, shape: str) -> list[str]:
    """`shape` like "projects/*/secrets/*"; returns the * parts or raises ValueError."""
    parts, pattern = name.split("/"), shape.split("/")
    if len(parts) != len(pattern) or any(
        not value or (want != "*" and want != value) for want, value in zip(pattern, parts, strict=True)
    ):
        raise ValueError(f"name must look like {shape}: {name!r}")
    return [v for want, v in zip(pattern, parts, strict=True) if want == "*"]


class GoogleApisStandin(StandinServer):
    """Serve with `start()`; clients use the returned URL as ``api_endpoint``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        access_token: str = DEFAULT_ACCESS_TOKEN,
        require_auth: bool = False,
        state: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(host, port)
        self.access_token = access_token
        self.require_auth = require_auth
        self._lock = threading.Lock()
        self._clusters: dict[str, dict[str, Any]] = {}
        self._secrets: dict[str, list[dict[str, Any]]] = {}  # name -> versions
        self._identities: dict[str, str] = {}  # access token -> email
        self._refresh: dict[str, str] = {}  # refresh token -> access token
        self._grants: set[tuple[str, str, str]] = set()  # (member, permission, resource)
        self.enforce_iam = False
        self._router = Router()
        clusters = "/v1/projects/{project}/locations/{location}/clusters/{cluster}"
        self._router.add("GET", clusters, self._get_cluster)
        secret = "/v1/projects/{project}/secrets/{secret}/versions/{version}:access"
        self._router.add("GET", secret, self._access_secret)
        self._router.add("POST", "/token", self._token)
        service = "/v2/projects/{project}/locations/{location}/services/{service}:testIamPermissions"
        self._router.add("POST", service, self._test_service_permissions)
        if state:
            self.load_state(state)

    # ---- control ----

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("access_token"):
            self.access_token = state["access_token"]
        for cluster in state.get("clusters", []):
            self.register_cluster(**cluster)
        for secret in state.get("secrets", []):
            self.add_secret_version(**secret)
        for identity in state.get("identities", []):
            self._identities[identity["access_token"]] = identity["email"]
            self._refresh[identity["refresh_token"]] = identity["access_token"]
        for grant in state.get("iam", []):
            self.set_grant(grant["member"], grant["permission"], grant["resource"], True)
        self.enforce_iam = bool(state.get("enforce_iam", self.enforce_iam))

    def set_grant(self, member: str, permission: str, resource: str, granted: bool) -> None:
        with self._lock:
            if granted:
                self._grants.add((member, permission, resource))
            else:
                self._grants.discard((member, permission, resource))

    def _authorize(self, req: Request, permission: str, resource: str, message: str) -> None:
        """Google's answer to a caller without `permission` on `resource` (or a parent)."""
        if not self.enforce_iam:
            return
        if not self._holds(req, permission, resource):
            raise GoogleError(403, "PERMISSION_DENIED", message)

    def _holds(self, req: Request, permission: str, resource: str) -> bool:
        """Whether the caller's identity (its bearer) is granted `permission` on `resource`
        or a parent of it."""
        bearer = req.headers.get("Authorization", "").removeprefix("Bearer ")
        member = self._identities.get(bearer)
        parents = {"/".join(resource.split("/")[:n]) for n in range(2, resource.count("/") + 2)}
        with self._lock:
            return member is not None and any((member, permission, r) in self._grants for r in parents)

    def register_cluster(
        self,
        name: str,
        endpoint: str,
        ca_pem: str,
        status: str = "RUNNING",
        current_master_version: str = DEFAULT_MASTER_VERSION,
    ) -> None:
        """Register or replace; `endpoint` is host[:port] without scheme, as GKE's."""
        _, location, cluster = _split_name(name, "projects/*/locations/*/clusters/*")
        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        dns = {"endpoint": f"gke-{digest}.{location}.gke.goog"}
        with self._lock:
            self._clusters[name] = {
                "name": cluster,
                "location": location,
                "endpoint": endpoint,
                "status": status,
                "currentMasterVersion": current_master_version,
                "masterAuth": {"clusterCaCertificate": base64.b64encode(ca_pem.encode()).decode()},
                "selfLink": f"https://container.googleapis.com/v1/{name}",
                "controlPlaneEndpointsConfig": {"dnsEndpointConfig": {**dns, "allowExternalTraffic": False}},
            }

    def add_secret_version(self, name: str, data: str, enabled: bool = True) -> int:
        """Adds a version to `projects/p/secrets/s`; returns its number (from 1)."""
        _split_name(name, "projects/*/secrets/*")
        with self._lock:
            versions = self._secrets.setdefault(name, [])
            versions.append({"data": data.encode(), "enabled": enabled})
            return len(versions)

    def set_secret_version_enabled(self, version_name: str, enabled: bool) -> None:
        shape = "projects/*/secrets/*/versions/*"
        project, secret, number = _split_name(version_name, shape)
        with self._lock:
            versions = self._secrets.get(f"projects/{project}/secrets/{secret}", [])
            if not number.isdigit() or not 1 <= int(number) <= len(versions):
                raise KeyError(f"no such secret version {version_name}")
            versions[int(number) - 1]["enabled"] = enabled

    def control(self, route: tuple[str, str], req: Request) -> Response | None:
        if route == ("POST", "/clusters"):
            self.register_cluster(**req.json())
        elif route == ("POST", "/secrets"):
            return Response(200, {"version": self.add_secret_version(**req.json())})
        elif route == ("POST", "/secret-versions"):
            body = req.json()
            self.set_secret_version_enabled(body["name"], bool(body["enabled"]))
        elif route == ("POST", "/iam"):
            body = req.json()
            self.set_grant(body["member"], body["permission"], body["resource"], bool(body["granted"]))
        else:
            return None
        return Response(200, {"ok": True})

    def state(self) -> dict[str, Any]:
        with self._lock:
            secrets = {
                name: [
                    {"version": n, "data": v["data"].decode(), "enabled": v["enabled"]}
                    for n, v in enumerate(versions, 1)
                ]
                for name, versions in self._secrets.items()
            }
            return {
                "clusters": dict(self._clusters),
                "secrets": secrets,
                "access_token": self.access_token,
            }

    def reset_state(self) -> None:
        with self._lock:
            self._clusters.clear()
            self._secrets.clear()

    def fault_response(self, rule: FaultRule) -> Response | None:
        if rule.status is None:
            return None  # a pure delay
        headers = {}
        if rule.retry_after is not None:
            headers["Retry-After"] = f"{rule.retry_after:g}"
        err = GoogleError(rule.status, FAULT_STATUS[rule.status], "injected fault")
        return err.response(headers)

    # ---- API ----

    def serve(self, req: Request) -> tuple[Response, bool]:
        try:
            found = self._router.match(req.method, req.path)
            if found is None:
                raise _not_found(f"The requested URL {req.path} was not found.")
            handler, params = found
            bearer = req.headers.get("Authorization", "").removeprefix("Bearer ")
            bearer_ok = bearer == self.access_token or bearer in self._identities
            if self.require_auth and handler != self._token and not bearer_ok:
                raise GoogleError(
                    401,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials. Expected OAuth 2 access token.",
                )
            return handler(req, **params), False  # nothing here writes state
        except GoogleError as exc:
            return exc.response(), False

    def _get_cluster(self, req: Request, project: str, location: str, cluster: str) -> Response:
        name = f"projects/{project}/locations/{location}/clusters/{cluster}"
        self._authorize(
            req, "container.clusters.get", name, f'Required "container.clusters.get" permission(s) for "{name}".'
        )
        with self._lock:
            found = self._clusters.get(name)
        if found is None:
            raise _not_found(f"Not found: {name}.")
        return Response(200, found)

    def _access_secret(self, req: Request, project: str, secret: str, version: str) -> Response:
        name = f"projects/{project}/secrets/{secret}"
        self._authorize(
            req,
            "secretmanager.versions.access",
            name,
            f"Permission 'secretmanager.versions.access' denied for resource "
            f"'{name}/versions/{version}' (or it may not exist).",
        )
        with self._lock:
            versions = list(self._secrets.get(name, []))
        if not versions:
            raise _not_found(f"Secret [{name}] not found or has no versions.")
        if version == "latest":
            enabled = [n for n, v in enumerate(versions, 1) if v["enabled"]]
            if not enabled:
                raise _not_found(f"Secret [{name}] has no enabled versions.")
            number = enabled[-1]
        elif version.isdigit() and 1 <= int(version) <= len(versions):
            number = int(version)
        else:
            raise _not_found(f"Secret Version [{name}/versions/{version}] not found.")
        chosen = versions[number - 1]
        if not chosen["enabled"]:
            raise GoogleError(
                400,
                "FAILED_PRECONDITION",
                f"Secret Version [{name}/versions/{number}] is in DISABLED state.",
            )
        data: bytes = chosen["data"]
        payload = {
            "data": base64.b64encode(data).decode(),
            # int64 travels as a JSON string; the client does not check it, we do.
            "dataCrc32c": str(google_crc32c.value(data)),
        }
        return Response(200, {"name": f"{name}/versions/{number}", "payload": payload})

    def _test_service_permissions(self, req: Request, project: str, location: str, service: str) -> Response:
        name = f"projects/{project}/locations/{location}/services/{service}"
        asked = (req.json_or_none() or {}).get("permissions") or []
        held = [p for p in asked if not self.enforce_iam or self._holds(req, str(p), name)]
        # Google answers the subset the caller holds (an empty object when it holds none).
        return Response(200, {"permissions": held} if held else {})

    def _token(self, req: Request) -> Response:
        form = req.form()
        if form.get("grant_type") != "refresh_token":
            message = "only the refresh_token grant is supported"
            error = {"error": "unsupported_grant_type", "error_description": message}
            return Response(400, error)
        if not form.get("refresh_token"):
            message = "Missing required parameter: refresh_token"
            error = {"error": "invalid_request", "error_description": message}
            return Response(400, error)
        token = self.access_token
        if self._refresh:  # per-identity credentials: only a known refresh token is honoured
            found = self._refresh.get(form["refresh_token"])
            if found is None:
                return Response(400, {"error": "invalid_grant", "error_description": "Bad Request"})
            token = found
        return Response(
            200,
            {
                "access_token": token,
                "expires_in": 3600,
                "token_type": "Bearer",
                "scope": SCOPE,
            },
        )


class GoogleStandinControl(ControlClient):
    """Control client: register_cluster(), add_secret_version(), requests(), ..."""

    def register_cluster(self, name: str, endpoint: str, ca_pem: str, **extra: str) -> None:
        body = {"name": name, "endpoint": endpoint, "ca_pem": ca_pem, **extra}
        self._call("POST", "/clusters", body)

    def add_secret_version(self, name: str, data: str, enabled: bool = True) -> int:
        body = {"name": name, "data": data, "enabled": enabled}
        return int(self._call("POST", "/secrets", body)["version"])

    def set_secret_version_enabled(self, version_name: str, enabled: bool) -> None:
        body = {"name": version_name, "enabled": enabled}
        self._call("POST", "/secret-versions", body)

    def set_grant(self, member: str, permission: str, resource: str, granted: bool) -> None:
        body = {"member": member, "permission": permission, "resource": resource, "granted": granted}
        self._call("POST", "/iam", body)

    def token_requests(self) -> int:
        return int(self.requests()["counts"].get("POST /token", 0))


def write_authorized_user_credentials(path: str | Path, token_uri: str, refresh_token: str = "sandbox") -> Path:
    """Write a credentials file that `google.auth.default()` refreshes at `token_uri`.

    Use it through GOOGLE_APPLICATION_CREDENTIALS. The type is
    ``external_account_authorized_user``: google-auth 2.63 replaces the ``token_uri``
    of a plain ``authorized_user`` file with Google's own endpoint.
    """
    info = {
        "type": "external_account_authorized_user",
        "audience": "//iam.googleapis.com/locations/global/workforcePools/geodeploy-sandbox/providers/sandbox",
        "client_id": "geodeploy-sandbox",
        "client_secret": "sandbox",
        "refresh_token": refresh_token,
        "token_url": token_uri,
        "universe_domain": "googleapis.com",
    }
    target = Path(path)
    target.write_text(json.dumps(info, indent=2) + "\n")
    return target


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--access-token", help="the token /token hands out")
    parser.add_argument("--state-file", type=Path, help="clusters/secrets to preload")
    parser.add_argument("--require-auth", action="store_true", help="401 unless Bearer <access token>")


def _build(args: argparse.Namespace) -> GoogleApisStandin:
    state = json.loads(args.state_file.read_text()) if args.state_file else None
    server = GoogleApisStandin(host=args.host, port=args.port, require_auth=args.require_auth, state=state)
    if args.access_token:  # the flag wins over the state file
        server.access_token = args.access_token
    return server


def main(argv: Sequence[str] | None = None) -> int:
    description = "Google APIs stand-in (GKE, Secret Manager, OAuth2 token)"
    return run_cli(argv, description, _add_arguments, _build)


if __name__ == "__main__":
    raise SystemExit(main())
