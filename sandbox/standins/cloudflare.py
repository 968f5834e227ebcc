"""Cloudflare API v4 stand-in: the Load Balancing subset geodeploy uses.

Point the real SDK at it: ``Cloudflare(api_token=T, base_url=f"{url}/client/v4")``.

Routes under /client/v4 ({a} account id, {z} zone id):
  /accounts/{a}/load_balancers/monitors[/{id}]    GET POST | GET PUT PATCH DELETE
  /accounts/{a}/load_balancers/pools[/{id}]       GET (?monitor=id) POST | GET PUT ...
  /accounts/{a}/load_balancers/pools/{id}/health  GET, ``pop_health`` map by location
  /zones/{z}/load_balancers[/{id}]                GET POST | GET PUT PATCH DELETE

Imitated: the ``{success, errors, messages, result}`` envelope (``result_info`` on
lists only), 32-hex ids, RFC3339 ``created_on``/``modified_on``, API defaults filled
on create, PUT = full replacement (unsent fields revert to defaults), PATCH = merge of
the top-level fields sent, bearer-token auth with the token's permission groups and
resources (below). The contract is Cloudflare's published OpenAPI schema, whose
load-balancing part is kept in contracts/ (sandbox/standins/openapi_contract.py):
answers carry only the fields it declares, so pools and origins have no health of
their own; every monitor write must send ``expected_codes``; pool creation does not need
``check_regions``. With ``contract=`` (``--check-contract``) the stand-in checks each
request and answer against it and records what violates it (a record, never a refusal).
Health is reported only by the pool health endpoint, from what the control API set by
pool *name* (default healthy; a disabled pool reports its set value too); it survives
PUT/PATCH and re-creation.
Simplified: monitors and pools belong to an account, LBs to a zone, and an LB may
reference a pool of any account. Pool names need not be unique.

Tokens, as Cloudflare API tokens: each has allow policies ``{"permission_groups": [...],
"resources": [...]}``; a request passes if one policy holds a group that suffices *and*
a resource that covers the route's account or zone:
  /accounts/{a}/load_balancers/...  "Load Balancing: Monitors and Pools Read" or "... Write"
                                    on ``com.cloudflare.api.account.{a}``
  /zones/{z}/load_balancers[/{id}]  "Load Balancers Read" or "Load Balancers Write"
                                    on ``com.cloudflare.api.account.zone.{z}``
GET (and HEAD) need Read or Write, other methods Write. ``*`` as the id
(``com.cloudflare.api.account.*``, ``com.cloudflare.api.account.zone.*``) covers every
account or zone. ``--token``/``--token-file`` (constructor ``token=``) give one token all
four groups on every account and zone (`full_access()`); ``--token-policies-file``
(constructor ``tokens=``) gives tokens their own policies, JSON ``{"<token>": [policy,
...], ...}``; both may be used. With neither, the token is ``sandbox-cloudflare-token``
with full access. Unknown groups, malformed resources and unknown policy keys are refused.

Errors (HTTP status, code, message):
  400 1002  "<detail>: validation failed"  bad/missing field, unknown monitor/pool id
  400 1001  "Object referenced by other objects"  delete of a pool used by an LB
            (default_pools, fallback_pool, *_pools) or of a monitor used by a pool
  400 1003  "value not unique: validation failed"  two LBs with one name in a zone
  400 1004  "Health info unavailable"  /health of a pool without a monitor
  400 6007  "Malformed JSON in request body"
  403 10000 "Authentication error"  wrong/missing bearer token, or X-Auth-Email/Key, or
            a known token without the permission group or the resource the route needs
            (checked after routing: an unknown path is 404 for any known token)
  404 1000  "Not found"  unknown id, or an id of another account/zone
  404 7003 + 7000 "No route for that URI"  unknown path or method
  429 1015  "Please wait and consider throttling your request speed"  (fault)
  5xx 10001 "Internal server error (injected by stand-in)"  (fault; also the error of
            a ``success_false`` fault, answered with HTTP 200 and ``result: null``)
1000, 1001, 1004, 1015 and 10001 are stand-in choices (the schema's codes are >= 1000),
as are the 404 status of 7003 and the use of 1003 for duplicate names; the other codes
are seen in the wild. ``check_regions: null`` sent on a non-Enterprise plan is refused
with 1002 ("Probing from every data centre is not allowed ...").

Control API (JSON, no auth; `CloudflareStandinControl`): the common routes of
`StandinServer` (requests, faults, state, reset) plus
  POST /__standin/health  {"pool_name", "healthy", "origins"?: {origin_name: bool}}
  POST /__standin/token-policies  {"token", "policies": [policy, ...]}  replaces the
       token's policies (adds the token if new; ``[]`` leaves it known but allowed nothing);
       answers {"token", "policies"} normalised. Reset restores the tokens it started with.
  GET /__standin/contract-violations  {"checked": bool, "violations": [{method, path,
       status, part, where, message}, ...]}; DELETE clears them (reset does not).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from sandbox.standins._http import (
    WRITE_METHODS,
    BadRequestBody,
    ControlClient,
    FaultRule,
    Request,
    Response,
    Router,
    StandinServer,
    run_cli,
)
from sandbox.standins.openapi_contract import Contract, ViolationLog

Obj = dict[str, Any]
API_PREFIX = "/client/v4"
DEFAULT_TOKEN = "sandbox-cloudflare-token"

# fmt: off
# One representative PoP per region code, for the /health map.
REGION_POPS = {
    "WNAM": "Los Angeles, CA, US", "ENAM": "Ashburn, VA, US", "WEU": "Amsterdam, NL", "EEU": "Warsaw, PL",
    "NSAM": "Bogota, CO", "SSAM": "Sao Paulo, BR", "OC": "Sydney, AU", "ME": "Dubai, AE", "NAF": "Cairo, EG",
    "SAF": "Johannesburg, ZA", "SAS": "Mumbai, IN", "SEAS": "Singapore, SG", "NEAS": "Tokyo, JP",
}
CHECK_REGIONS = frozenset(REGION_POPS) | {"ALL_REGIONS"}
MONITOR_TYPES = frozenset({"http", "https", "tcp", "udp_icmp", "icmp_ping", "smtp"})
STEERING = frozenset({"off", "geo", "random", "dynamic_latency", "proximity", "least_outstanding_requests",
                      "least_connections", ""})
AFFINITY = frozenset({"none", "cookie", "ip_cookie", "header", ""})
GEO_MAPS = ("region_pools", "country_pools", "pop_pools")
READ_ONLY = frozenset({"id", "created_on", "modified_on", "healthy", "disabled_at", "zone_name"})
POOL_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
DEFAULTS: dict[str, dict[str, Any]] = {
    "monitor": {
        "type": "http", "method": "GET", "path": "/", "port": 0, "expected_codes": "200", "interval": 60,
        "retries": 2, "timeout": 5, "follow_redirects": False, "allow_insecure": False, "consecutive_up": 0,
        "consecutive_down": 0, "header": {}, "description": "",
    },
    "pool": {
        "enabled": True, "minimum_origins": 1, "check_regions": None, "monitor": None,
        "origin_steering": {"policy": "random"}, "description": "",
    },
    "load_balancer": {
        "enabled": True, "proxied": False, "ttl": 30, "steering_policy": "", "session_affinity": "none",
        "region_pools": {}, "country_pools": {}, "pop_pools": {},
    },
}
ORIGIN_DEFAULTS: dict[str, Any] = {"enabled": True, "weight": 1}
MONITOR_INTS = ("port", "interval", "retries", "timeout", "consecutive_up", "consecutive_down")
INJECTED = "Internal server error (injected by stand-in)"
THROTTLED = "Please wait and consider throttling your request speed"
# The schema's error codes are >= 1000; 1015 is the number Cloudflare gives rate limiting.
THROTTLED_CODE = 1015
# Cloudflare's permission group names -> (resource level, grants write).
PERMISSION_GROUPS: dict[str, tuple[str, bool]] = {
    "Load Balancing: Monitors and Pools Read": ("account", False),
    "Load Balancing: Monitors and Pools Write": ("account", True),
    "Load Balancers Read": ("zone", False),
    "Load Balancers Write": ("zone", True),
}
ZONE_RESOURCE = "com.cloudflare.api.account.zone."  # checked first: it extends the account prefix
ACCOUNT_RESOURCE = "com.cloudflare.api.account."
RESOURCE_ID = re.compile(r"^(\*|[A-Za-z0-9_-]+)$")
READ_METHODS = frozenset({"GET", "HEAD"})
# fmt: on


def _resource(resource: str) -> tuple[str, str]:
    """``com.cloudflare.api.account[.zone].<id>`` -> (level, id); ValueError otherwise."""
    for prefix, level in ((ZONE_RESOURCE, "zone"), (ACCOUNT_RESOURCE, "account")):
        if resource.startswith(prefix):
            ident = resource[len(prefix) :]
            if RESOURCE_ID.match(ident):
                return level, ident
    raise ValueError(
        f"resource {resource!r} is not com.cloudflare.api.account.<account id> "
        "or com.cloudflare.api.account.zone.<zone id> (or .* for all)"
    )


@dataclass(frozen=True)
class Policy:
    """One allow policy of an API token: these permission groups on these resources."""

    permission_groups: tuple[str, ...]
    resources: tuple[str, ...]

    def __post_init__(self) -> None:
        if isinstance(self.permission_groups, str) or isinstance(self.resources, str):
            raise TypeError("permission_groups and resources must be lists of strings")
        object.__setattr__(self, "permission_groups", tuple(self.permission_groups))
        object.__setattr__(self, "resources", tuple(self.resources))
        if not self.permission_groups or not self.resources:
            raise ValueError("a policy needs at least one permission group and one resource")
        unknown = [g for g in self.permission_groups if g not in PERMISSION_GROUPS]
        if unknown:
            raise ValueError(f"unknown permission groups {unknown}; known: {sorted(PERMISSION_GROUPS)}")
        for resource in self.resources:
            if not isinstance(resource, str):
                raise TypeError("resources must be strings")
            _resource(resource)

    @classmethod
    def from_json(cls, raw: Any) -> Policy:
        if isinstance(raw, Policy):
            return raw
        if not isinstance(raw, dict):
            raise TypeError("a policy is an object {permission_groups, resources}")
        unknown = set(raw) - {"permission_groups", "resources"}
        if unknown:
            raise ValueError(f"unknown policy fields: {sorted(unknown)}")
        groups, resources = raw.get("permission_groups"), raw.get("resources")
        if not isinstance(groups, list) or not isinstance(resources, list):
            raise TypeError("permission_groups and resources must be lists of strings")
        return cls(tuple(groups), tuple(resources))

    def to_json(self) -> dict[str, list[str]]:
        return {"permission_groups": list(self.permission_groups), "resources": list(self.resources)}

    def allows(self, level: str, scope: str, write: bool) -> bool:
        """A group of `level` that suffices (Write implies Read) and a resource covering `scope`."""
        group_ok = any(
            PERMISSION_GROUPS[g][0] == level and (PERMISSION_GROUPS[g][1] or not write) for g in self.permission_groups
        )
        return group_ok and any(_resource(r) in ((level, scope), (level, "*")) for r in self.resources)


def full_access() -> list[Policy]:
    """What ``--token`` means: all four groups on every account and zone."""
    resources = (ACCOUNT_RESOURCE + "*", ZONE_RESOURCE + "*")
    return [Policy(tuple(PERMISSION_GROUPS), resources)]


def _policies(raw: Any) -> list[Policy]:
    if not isinstance(raw, (list, tuple)):
        raise TypeError("policies must be a list")
    return [Policy.from_json(p) for p in raw]


def load_token_policies(path: Path) -> dict[str, list[Policy]]:
    """Read ``{"<token>": [{"permission_groups": [...], "resources": [...]}, ...]}``."""
    raw = json.loads(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected an object mapping tokens to lists of policies")
    return {token: _policies(policies) for token, policies in raw.items()}


class ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str, *more: tuple[int, str]) -> None:
        super().__init__(msg)
        self.status = status
        self.errors = [{"code": c, "message": m} for c, m in ((code, msg), *more)]


def _invalid(detail: str) -> ApiError:
    return ApiError(400, 1002, f"{detail}: validation failed")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _envelope(result: Any, errors: list[Obj] | None = None) -> Obj:
    ok = not errors
    return {"success": ok, "errors": errors or [], "messages": [], "result": result}


def _ok_list(items: list[dict[str, Any]]) -> Response:
    n = len(items)  # one page holds everything: the SDK sends no paging parameters
    info = {"page": 1, "per_page": max(n, 20), "count": n, "total_count": n}  # as the schema's result_info
    return Response(200, {**_envelope(items), "result_info": info})


def _body(req: Request) -> dict[str, Any]:
    try:
        body = req.json()
    except BadRequestBody as exc:
        raise ApiError(400, 6007, "Malformed JSON in request body") from exc
    if not isinstance(body, dict):
        raise ApiError(400, 6007, "Malformed JSON in request body")
    return body


def _pool_refs(lb: dict[str, Any]) -> list[Any]:
    """Every pool id an LB names: default_pools, fallback_pool, the *_pools maps."""
    geo = [i for key in GEO_MAPS for ids in lb[key].values() for i in ids]
    return [*lb["default_pools"], lb["fallback_pool"], *geo]


class CloudflareStandin(StandinServer):
    """Serve with `start()`; the SDK's base_url is `api_base_url`.

    `plan="non-enterprise"` rejects ``check_regions: null`` (all data centres) the way
    the real API does for non-Enterprise accounts.
    """

    supports_success_false = True

    def __init__(
        self,
        token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        plan: str = "enterprise",
        tokens: Mapping[str, Sequence[Policy | dict[str, Any]]] | None = None,
        contract: Contract | None = None,
    ) -> None:
        super().__init__(host, port)
        self.contract = contract  # when given, every exchange is checked against it
        self.violations = ViolationLog()
        if plan not in ("enterprise", "non-enterprise"):
            raise ValueError("plan must be 'enterprise' or 'non-enterprise'")
        configured = {t: _policies(p) for t, p in (tokens or {}).items()}
        if token is not None and token in configured:
            raise ValueError("token is given both with full access and with its own policies")
        if token is not None or not configured:
            configured[token if token is not None else DEFAULT_TOKEN] = full_access()
        if not all(isinstance(t, str) and t for t in configured):
            raise ValueError("tokens must be non-empty strings")
        self._configured_tokens = configured
        self._tokens = dict(configured)  # token -> policies; replaced by set_token_policies
        self.plan = plan
        self._lock = threading.RLock()
        self._objects: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in DEFAULTS}
        self._scope: dict[str, str] = {}  # object id -> account or zone id
        self._health: dict[str, dict[str, Any]] = {}  # pool name -> health
        self._router = self._build_router()

    @property
    def api_base_url(self) -> str:
        return self.url + API_PREFIX

    # ---- control ----

    def set_pool_health(self, pool_name: str, healthy: bool, origins: dict[str, bool] | None = None) -> int:
        """Keyed by name so tests can set it before the pool exists; returns matches."""
        if not isinstance(healthy, bool):
            raise TypeError("healthy must be a boolean")
        with self._lock:
            self._health[pool_name] = {"healthy": healthy, "origins": origins or {}}
            return sum(p["name"] == pool_name for p in self._objects["pool"].values())

    def set_token_policies(self, token: str, policies: Sequence[Policy | dict[str, Any]]) -> list[Policy]:
        """Replace (or add) a token's policies; ``[]`` keeps it known but allowed nothing."""
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty string")
        parsed = _policies(policies)
        with self._lock:
            self._tokens[token] = parsed
        return parsed

    def observe(self, req: Request, resp: Response, injected: FaultRule | None) -> None:
        if self.contract is None or not req.path.startswith(API_PREFIX + "/"):
            return
        path = req.path[len(API_PREFIX) :]
        found = self.contract.check(
            req.method, path, req.query, req.json_or_none(), resp.status, resp.body, injected=injected is not None
        )
        self.violations.add(found)

    def control(self, route: tuple[str, str], req: Request) -> Response | None:
        if route == ("GET", "/contract-violations"):
            found = [v.as_json() for v in self.violations.snapshot()]
            return Response(200, {"checked": self.contract is not None, "violations": found})
        if route == ("DELETE", "/contract-violations"):
            self.violations.clear()
            return Response(200, {"ok": True})
        if route == ("POST", "/token-policies"):
            body = req.json()
            if not isinstance(body, dict):
                raise TypeError("body must be an object {token, policies}")
            policies = self.set_token_policies(body["token"], body["policies"])
            return Response(200, {"token": body["token"], "policies": [p.to_json() for p in policies]})
        if route != ("POST", "/health"):
            return None
        body = req.json()
        name = body["pool_name"]
        matched = self.set_pool_health(name, body["healthy"], body.get("origins"))
        return Response(200, {"pool_name": name, "matched_pools": matched})

    def state(self) -> dict[str, Any]:
        def dump(kind: str, scope_key: str) -> list[dict[str, Any]]:
            return [{**self._render(kind, o), scope_key: self._scope[i]} for i, o in self._objects[kind].items()]

        with self._lock:
            monitors, pools = dump("monitor", "account_id"), dump("pool", "account_id")
            lbs = dump("load_balancer", "zone_id")
            return {"monitors": monitors, "pools": pools, "load_balancers": lbs, "health": copy.deepcopy(self._health)}

    def reset_state(self) -> None:
        with self._lock:
            for objs in self._objects.values():
                objs.clear()
            self._scope.clear()
            self._health.clear()
            self._tokens = dict(self._configured_tokens)

    def fault_response(self, rule: FaultRule) -> Response | None:
        if rule.success_false:
            errors = [{"code": 10001, "message": INJECTED}]
            return Response(200, _envelope(None, errors))
        if rule.status == 429:
            wait = {} if rule.retry_after is None else {"Retry-After": rule.retry_after}
            body = _envelope(None, [{"code": THROTTLED_CODE, "message": THROTTLED}])
            return Response(429, body, {k: f"{v:g}" for k, v in wait.items()})
        if rule.status is not None:
            errors = [{"code": 10001, "message": INJECTED}]
            return Response(rule.status, _envelope(None, errors))
        return None  # a pure delay

    # ---- API ----

    def serve(self, req: Request) -> tuple[Response, bool]:
        try:
            if req.headers.get("X-Auth-Email") or req.headers.get("X-Auth-Key"):
                raise ApiError(403, 10000, "Authentication error")  # token auth only
            auth = req.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
            with self._lock:
                policies = self._tokens.get(token) if token else None
            if policies is None:
                raise ApiError(403, 10000, "Authentication error")
            found = None
            path = req.path[len(API_PREFIX) :]
            if req.path.startswith(API_PREFIX + "/"):
                found = self._router.match(req.method, path)
            if found is None:
                raise ApiError(
                    404, 7003,
                    f"Could not route to {req.path}, perhaps your object identifier "
                    "is invalid?",
                    (7000, "No route for that URI"),
                )  # fmt: skip
            handler, params = found
            level = "zone" if path.startswith("/zones/") else "account"
            write = req.method not in READ_METHODS
            if not any(p.allows(level, params["scope"], write) for p in policies):
                raise ApiError(403, 10000, "Authentication error")  # what Cloudflare answers
            with self._lock:
                resp = handler(req, **params)
        except ApiError as exc:
            return Response(exc.status, _envelope(None, exc.errors)), False
        return resp, req.method in WRITE_METHODS

    def _build_router(self) -> Router:
        router = Router()
        acct = "/accounts/{scope}/load_balancers"
        bases = {
            "monitor": f"{acct}/monitors",
            "pool": f"{acct}/pools",
            "load_balancer": "/zones/{scope}/load_balancers",
        }
        item_ops = {"GET": self._get, "PUT": self._replace, "PATCH": self._patch, "DELETE": self._delete}
        for kind, base in bases.items():
            router.add("GET", base, partial(self._list, kind))
            router.add("POST", base, partial(self._create, kind))
            for method, op in item_ops.items():
                router.add(method, base + "/{obj_id}", partial(op, kind))
        router.add("GET", acct + "/pools/{obj_id}/health", self._pool_health)
        return router

    def _find(self, kind: str, scope: str, obj_id: str) -> dict[str, Any]:
        obj = self._objects[kind].get(obj_id)
        if obj is None or self._scope[obj_id] != scope:
            raise ApiError(404, 1000, "Not found")
        return obj

    def _render(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(obj)  # no health on objects: only the health report has it

    def _ok(self, kind: str, obj_id: str) -> Response:
        return Response(200, _envelope(self._render(kind, self._objects[kind][obj_id])))

    def _list(self, kind: str, req: Request, scope: str) -> Response:
        items = [o for i, o in self._objects[kind].items() if self._scope[i] == scope]
        if kind == "pool" and "monitor" in req.query:
            items = [o for o in items if o["monitor"] == req.query["monitor"][0]]
        return _ok_list([self._render(kind, o) for o in items])

    def _get(self, kind: str, req: Request, scope: str, obj_id: str) -> Response:
        self._find(kind, scope, obj_id)
        return self._ok(kind, obj_id)

    def _create(self, kind: str, req: Request, scope: str) -> Response:
        obj = self._build(kind, scope, _body(req), self_id=None)
        obj_id, now = uuid.uuid4().hex, _now()
        stamps = {"created_on": now, "modified_on": now}
        self._objects[kind][obj_id] = {"id": obj_id, **obj, **stamps}
        self._scope[obj_id] = scope
        return self._ok(kind, obj_id)

    def _replace(self, kind: str, req: Request, scope: str, obj_id: str) -> Response:
        old = self._find(kind, scope, obj_id)
        self._store(kind, obj_id, old, self._build(kind, scope, _body(req), obj_id))
        return self._ok(kind, obj_id)

    def _patch(self, kind: str, req: Request, scope: str, obj_id: str) -> Response:
        old = self._find(kind, scope, obj_id)
        merged = {k: v for k, v in copy.deepcopy(old).items() if k not in READ_ONLY}
        sent = _body(req)
        merged.update(sent)
        self._store(kind, obj_id, old, self._build(kind, scope, merged, obj_id, sent))
        return self._ok(kind, obj_id)

    def _store(self, kind: str, obj_id: str, old: Obj, obj: Obj) -> None:
        stamps = {"created_on": old["created_on"], "modified_on": _now()}
        self._objects[kind][obj_id] = {"id": obj_id, **obj, **stamps}

    def _delete(self, kind: str, req: Request, scope: str, obj_id: str) -> Response:
        self._find(kind, scope, obj_id)
        lbs, pools = self._objects["load_balancer"], self._objects["pool"]
        used_by_lb = any(obj_id in _pool_refs(lb) for lb in lbs.values())
        used_by_pool = any(p["monitor"] == obj_id for p in pools.values())
        if (kind == "pool" and used_by_lb) or (kind == "monitor" and used_by_pool):
            raise ApiError(400, 1001, "Object referenced by other objects")
        del self._objects[kind][obj_id]
        del self._scope[obj_id]
        return Response(200, _envelope({"id": obj_id}))

    def _build(
        self, kind: str, scope: str, body: dict[str, Any], self_id: str | None, sent: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Defaults + the fields sent (read-only ones dropped), then validation. `sent`:
        what the request itself carried, when `body` is merged with the stored object."""
        sent = body if sent is None else sent
        obj = copy.deepcopy(DEFAULTS[kind])
        obj.update({k: v for k, v in body.items() if k not in READ_ONLY})
        if kind == "monitor":
            if "expected_codes" not in sent:  # the schema requires it in every monitor write
                raise _invalid("expected_codes is required")
            if obj["type"] not in MONITOR_TYPES:
                raise _invalid(f"monitor type must be one of {sorted(MONITOR_TYPES)}")
            if obj["type"] == "tcp" and "method" not in body:
                obj["method"] = "connection_established"  # the API's TCP default
            for key in MONITOR_INTS:
                value = obj[key]
                if type(value) is not int or value < 0:
                    raise _invalid(f"{key} must be a non-negative integer")
        elif kind == "pool":
            self._check_pool(scope, obj, sent)
        else:
            self._check_load_balancer(scope, obj, self_id)
        return obj

    def _check_pool(self, scope: str, obj: dict[str, Any], sent: dict[str, Any]) -> None:
        if not isinstance(obj.get("name"), str) or not POOL_NAME.match(obj["name"]):
            raise _invalid("pool name must match ^[A-Za-z0-9_-]+$")
        origins = obj.get("origins")
        if not isinstance(origins, list) or not origins:
            raise _invalid("the origin list length must be in range [1, 20]")
        addresses = set()
        for i, origin in enumerate(origins):
            keys = ("name", "address")
            if not isinstance(origin, dict) or not all(isinstance(origin.get(k), str) and origin[k] for k in keys):
                raise _invalid(f"origins[{i}] needs a name and an address")
            if origin["address"] in addresses:
                raise _invalid(f"origin address {origin['address']} is not unique")
            addresses.add(origin["address"])
            writable = {k: v for k, v in origin.items() if k not in READ_ONLY}
            origins[i] = {**ORIGIN_DEFAULTS, **writable}
            weight = origins[i]["weight"]
            if type(weight) not in (int, float) or not 0 <= weight <= 1:
                raise _invalid(f"origins[{i}].weight must be between 0 and 1")
        monitor = obj["monitor"]
        known = isinstance(monitor, str) and monitor in self._objects["monitor"] and self._scope[monitor] == scope
        if monitor is not None and not known:
            raise _invalid(f"monitor {monitor} does not exist")
        regions = obj["check_regions"]
        # Refused only when sent: the published create body has no check_regions at all.
        if "check_regions" in sent and regions is None and self.plan != "enterprise":
            raise _invalid(  # sic: the real message lacks a space
                "Probing from every data centre is not allowed with this "
                "subscription. Please chooseregions to probe from."
            )
        if regions is not None and (
            not isinstance(regions, list) or not all(isinstance(r, str) and r in CHECK_REGIONS for r in regions)
        ):
            raise _invalid(f"check_regions must be a list of {sorted(CHECK_REGIONS)}")

    def _check_load_balancer(self, zone: str, obj: dict[str, Any], self_id: str | None) -> None:
        if not isinstance(obj.get("name"), str) or not obj["name"]:
            raise _invalid("name is required")
        if not isinstance(obj.get("default_pools"), list) or not obj["default_pools"]:
            raise _invalid("default_pools must be a non-empty list of pool ids")
        if "fallback_pool" not in obj:
            raise _invalid("fallback_pool is required")
        for key in GEO_MAPS:
            value = obj[key]
            if not isinstance(value, dict) or not all(isinstance(ids, list) for ids in value.values()):
                raise _invalid(f"{key} must map keys to lists of pool ids")
        refs = _pool_refs(obj)
        if not all(isinstance(r, str) for r in refs):
            raise _invalid("pool ids must be strings")
        missing = sorted({r for r in refs if r not in self._objects["pool"]})
        if missing:
            raise _invalid(f"pool(s) {', '.join(missing)} do not exist")
        if obj["steering_policy"] not in STEERING:
            raise _invalid(f"steering_policy must be one of {sorted(STEERING)}")
        if obj["session_affinity"] not in AFFINITY:
            raise _invalid(f"session_affinity must be one of {sorted(AFFINITY)}")
        for other_id, other in self._objects["load_balancer"].items():
            same_zone = other_id != self_id and self._scope[other_id] == zone
            if same_zone and other["name"] == obj["name"]:
                raise ApiError(400, 1003, "value not unique: validation failed")

    def _pool_health(self, req: Request, scope: str, obj_id: str) -> Response:
        """The documented report: {pool_id, pop_health: {data centre: {healthy, origins:
        [{address: {healthy, rtt, failure_reason, response_code}}]}}}, one data centre per
        check region; the only place the API states a pool's health."""
        pool = self._find("pool", scope, obj_id)
        if pool["monitor"] is None:
            raise ApiError(400, 1004, "Health info unavailable")
        regions = pool["check_regions"] or ["WNAM", "ENAM", "WEU"]
        codes = sorted(REGION_POPS) if "ALL_REGIONS" in regions else regions
        health = self._health.get(pool["name"], {})
        pool_ok = health.get("healthy", True)
        origins = []
        for o in pool["origins"]:
            ok = health.get("origins", {}).get(o["name"], pool_ok)
            origins.append({o["address"]: {
                "healthy": ok,
                "rtt": "12.1ms" if ok else "0s",
                "failure_reason": "No failures" if ok else "HTTP timeout occurred",
                "response_code": 200 if ok else 0,
            }})  # fmt: skip
        pop = {"healthy": pool_ok, "origins": origins}
        pops = {REGION_POPS[c]: copy.deepcopy(pop) for c in codes}
        return Response(200, _envelope({"pool_id": obj_id, "pop_health": pops}))


class CloudflareStandinControl(ControlClient):
    """Control client: requests(), writes(), set_faults(), set_pool_health(), set_token_policies(), ..."""

    def set_pool_health(self, pool_name: str, healthy: bool, origins: dict[str, bool] | None = None) -> int:
        body = {"pool_name": pool_name, "healthy": healthy, "origins": origins or {}}
        return int(self._call("POST", "/health", body)["matched_pools"])

    def set_token_policies(self, token: str, policies: Sequence[Policy | dict[str, Any]]) -> list[dict[str, Any]]:
        """Replace a token's policies at runtime, e.g. to take one grant away."""
        raw = [p.to_json() if isinstance(p, Policy) else p for p in policies]
        answer = self._call("POST", "/token-policies", {"token": token, "policies": raw})
        return list(answer["policies"])

    def contract_violations(self) -> list[dict[str, Any]]:
        """What the contract check found so far (empty when it is off: see `contract_checked`)."""
        return list(self._call("GET", "/contract-violations")["violations"])

    def contract_checked(self) -> bool:
        return bool(self._call("GET", "/contract-violations")["checked"])

    def clear_contract_violations(self) -> None:
        self._call("DELETE", "/contract-violations")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token", help=f"a token with full access (default {DEFAULT_TOKEN} if no token is given)")
    # A file keeps the token out of the process list and out of the command line log.
    parser.add_argument("--token-file", type=Path, help="read the full-access token from this file")
    parser.add_argument(
        "--token-policies-file",
        type=Path,
        help='JSON {"<token>": [{"permission_groups": [...], "resources": [...]}, ...], ...}',
    )
    plans = ("enterprise", "non-enterprise")
    parser.add_argument("--plan", choices=plans, default="enterprise")
    parser.add_argument(
        "--check-contract",
        action="store_true",
        help="check each request and answer against Cloudflare's published schema (GET /__standin/contract-violations)",
    )


def _build(args: argparse.Namespace) -> CloudflareStandin:
    token = args.token_file.read_text().strip() if args.token_file else args.token
    tokens = load_token_policies(args.token_policies_file) if args.token_policies_file else None
    contract = Contract.load() if args.check_contract else None
    return CloudflareStandin(token, args.host, args.port, args.plan, tokens=tokens, contract=contract)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(argv, "Cloudflare v4 Load Balancing API stand-in", _add_arguments, _build)


if __name__ == "__main__":
    raise SystemExit(main())
