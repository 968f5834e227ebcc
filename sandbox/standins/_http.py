"""Plumbing shared by the stand-ins: routing, JSON, request log, faults, CLI, control.

A stand-in subclasses `StandinServer` and implements `serve`, `fault_response`, `state`
and `reset_state`. The HTTP side is `http.server.ThreadingHTTPServer` speaking HTTP/1.1
with keep-alive, because httpx (Cloudflare SDK) and requests (google-auth) pool
connections.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib import error as urlerror
from urllib import parse
from urllib import request as urlrequest

logger = logging.getLogger(__name__)
CONTROL_PREFIX = "/__standin"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Headers that carry credentials: the request log names those a request sent (never values).
CREDENTIAL_HEADERS = ("Authorization", "X-Auth-Email", "X-Auth-Key", "X-Auth-User-Service-Key")


class BadRequestBody(ValueError):
    """The request body is not the JSON (or form) the route expects."""


@dataclass
class Request:
    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    headers: Message
    body: bytes

    def json(self) -> Any:
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise BadRequestBody(str(exc)) from exc

    def json_or_none(self) -> Any:
        try:
            return self.json()
        except BadRequestBody:
            return None

    def form(self) -> dict[str, str]:
        return dict(parse.parse_qsl(self.body.decode("utf-8", "replace")))


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-serialisable; None sends an empty body
    headers: dict[str, str] = field(default_factory=dict)


RouteHandler = Callable[..., Response]


class Router:
    """(method, path template) -> handler; `{name}` matches one segment without ':'."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], RouteHandler]] = []

    def add(self, method: str, template: str, handler: RouteHandler) -> None:
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/:]+)", template)
        self._routes.append((method, re.compile(f"^{pattern}$"), handler))

    def match(self, method: str, path: str) -> tuple[RouteHandler, dict[str, str]] | None:
        for route_method, pattern, handler in self._routes:
            found = pattern.match(path)
            if found and route_method == method:
                return handler, found.groupdict()
        return None


class RequestLog:
    """API requests counted by "METHOD path" (no query); control calls not logged.

    Each log entry says which injected fault, if any, answered it (`fault`: the rule's
    effect, e.g. {"status": 503} or {"success_false": true}), so a test can tell the
    faults it set up from the ones the client actually met; `faults_served` counts them.
    `credentials` names the credential headers the request carried (not their values).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._log: list[dict[str, Any]] = []
        self._writes = 0
        self._faults_served = 0

    def record(self, req: Request, status: int, *, wrote: bool, fault: FaultRule | None = None) -> None:
        entry = {
            "method": req.method,
            "path": req.path,
            "query": parse.urlencode(req.query, doseq=True),
            "status": status,
            "body": req.json_or_none(),
            "fault": fault.effect() if fault is not None else None,
            "credentials": [h for h in CREDENTIAL_HEADERS if req.headers.get(h) is not None],
        }
        with self._lock:
            self._counts[f"{req.method} {req.path}"] += 1
            self._log.append(entry)
            self._writes += int(wrote)
            self._faults_served += int(fault is not None)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "counts": dict(self._counts),
                "total": sum(self._counts.values()),
                "writes": self._writes,
                "faults_served": self._faults_served,
                "log": list(self._log),
            }

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
            self._log.clear()
            self._writes = 0
            self._faults_served = 0


@dataclass
class FaultRule:
    """One injected misbehaviour for the next `count` matching API requests.

    JSON: {"status": 429|500|502|503|null, "count": N (default 1), "method"?,
    "path_contains"? (matched against the path without query), "retry_after"?
    (seconds, sent as Retry-After), "delay_seconds"? (sleep before answering; with
    status null and no success_false the request is then served normally),
    "success_false"? (HTTP 200 whose body reports failure; where supported)}.
    """

    status: int | None = None
    count: int = 1
    method: str | None = None
    path_contains: str | None = None
    retry_after: float | None = None
    delay_seconds: float = 0.0
    success_false: bool = False

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> FaultRule:
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown fault rule fields: {sorted(unknown)}")
        rule = cls(**raw)
        if rule.status is not None and rule.status not in (429, 500, 502, 503):
            raise ValueError("status must be 429, 500, 502, 503 or null")
        if rule.status is not None and rule.success_false:
            raise ValueError("status and success_false are exclusive")
        if rule.status is None and not (rule.success_false or rule.delay_seconds):
            raise ValueError("rule does nothing: give status, success_false or delay")
        if rule.count < 1:
            raise ValueError("count must be >= 1")
        return rule

    def matches(self, req: Request) -> bool:
        method_ok = self.method is None or self.method.upper() == req.method
        return method_ok and (self.path_contains is None or self.path_contains in req.path)

    def effect(self) -> dict[str, Any]:
        """What this rule does to a request it answers (for the request log)."""
        effect: dict[str, Any] = {}
        if self.status is not None:
            effect["status"] = self.status
        if self.success_false:
            effect["success_false"] = True
        if self.delay_seconds:
            effect["delay_seconds"] = self.delay_seconds
        return effect


class FaultSet:
    """Thread-safe list of rules; the first matching rule fires and is used up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def replace(self, raw_rules: Sequence[dict[str, Any]], success_false: bool) -> None:
        rules = [FaultRule.from_json(dict(r)) for r in raw_rules]
        if not success_false and any(r.success_false for r in rules):
            raise ValueError("success_false is not supported by this stand-in")
        with self._lock:
            self._rules = rules

    def take(self, req: Request) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(req):
                    rule.count -= 1
                    if rule.count == 0:
                        self._rules.remove(rule)
                    return rule
        return None

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(r) for r in self._rules]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every response has Content-Length
    server_version = "geodeploy-standin"
    timeout = 60  # drop idle keep-alive connections eventually

    def _dispatch(self) -> None:
        split = parse.urlsplit(self.path)
        req = Request(
            method=self.command,
            path=split.path,
            query=parse.parse_qs(split.query, keep_blank_values=True),
            headers=self.headers,
            body=self._read_body(),
        )
        standin: StandinServer = self.server.standin  # type: ignore[attr-defined]
        try:
            resp = standin.handle(req)
        except Exception as exc:  # a stand-in bug must be a 500, not a hung client
            logger.exception("stand-in crashed on %s %s", req.method, req.path)
            resp = Response(500, {"error": f"stand-in crashed: {exc!r}"})
        self._send(resp)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, resp: Response) -> None:
        payload = b"" if resp.body is None else json.dumps(resp.body).encode()
        self.send_response(resp.status)
        if payload:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in resp.headers.items():
            self.send_header(name, value)
        try:
            self.end_headers()
            self.wfile.write(payload)
        except ConnectionError:  # the client gave up (e.g. timed out on a delay fault)
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the RequestLog is the record; stderr noise would drown test output


class StandinServer:
    """Base: request log, faults, common control routes; `start()` returns the URL.

    Common control routes: GET/DELETE /__standin/requests, GET/POST/DELETE
    /__standin/faults, GET /__standin/state, POST /__standin/reset.
    """

    supports_success_false = False

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.log = RequestLog()
        self.faults = FaultSet()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- what a stand-in implements ----

    def serve(self, req: Request) -> tuple[Response, bool]:
        """Answer an API request; the bool says whether it changed state."""
        raise NotImplementedError

    def fault_response(self, rule: FaultRule) -> Response | None:
        raise NotImplementedError

    def control(self, route: tuple[str, str], req: Request) -> Response | None:
        """Stand-in specific control routes; None means "no such route"."""
        return None

    def observe(self, req: Request, resp: Response, injected: FaultRule | None) -> None:
        """Sees each API request with its answer (`injected`: the fault rule that made the
        answer, if one did); e.g. to check both against a published contract."""

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    def reset_state(self) -> None:
        raise NotImplementedError

    # ---- shared behaviour ----

    def set_faults(self, rules: Sequence[dict[str, Any]]) -> None:
        self.faults.replace(rules, success_false=self.supports_success_false)

    def reset(self) -> None:
        """Objects, faults and the request log."""
        self.reset_state()
        self.faults.replace([], success_false=False)
        self.log.clear()

    def handle(self, req: Request) -> Response:
        if req.path.startswith(CONTROL_PREFIX):
            return self._control(req)
        resp, wrote = None, False
        rule = self.faults.take(req)
        if rule is not None:
            if rule.delay_seconds:
                time.sleep(rule.delay_seconds)  # the point of the rule: slowness
            resp = self.fault_response(rule)
        injected = rule if resp is not None else None
        if resp is None:
            resp, wrote = self.serve(req)
        self.log.record(req, resp.status, wrote=wrote, fault=rule)
        self.observe(req, resp, injected)
        return resp

    def _control(self, req: Request) -> Response:
        route = (req.method, req.path.removeprefix(CONTROL_PREFIX))
        try:
            if route == ("GET", "/requests"):
                return Response(200, self.log.snapshot())
            if route == ("GET", "/faults"):
                return Response(200, {"rules": self.faults.describe()})
            if route == ("GET", "/state"):
                return Response(200, self.state())
            if route == ("DELETE", "/requests"):
                self.log.clear()
            elif route == ("POST", "/faults"):
                body = req.json()
                self.set_faults(body["rules"] if isinstance(body, dict) else body)
            elif route == ("DELETE", "/faults"):
                self.set_faults([])
            elif route == ("POST", "/reset"):
                self.reset()
            else:
                resp = self.control(route, req)
                return resp or Response(404, {"error": f"no control route {route}"})
        except (BadRequestBody, KeyError, TypeError, ValueError) as exc:
            return Response(400, {"error": f"{type(exc).__name__}: {exc}"})
        return Response(200, {"ok": True})

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("stand-in not started")
        return f"http://{self.host}:{self._httpd.server_address[1]}"

    def start(self) -> str:
        httpd = ThreadingHTTPServer((self.host, self.port), _Handler)
        httpd.daemon_threads = True  # stop() must not wait for idle connections
        httpd.standin = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def run_cli(
    argv: Sequence[str] | None,
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    build: Callable[[argparse.Namespace], StandinServer],
) -> int:
    """Parse --host/--port and the stand-in's flags; serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    add_arguments(parser)
    args = parser.parse_args(argv)
    server = build(args)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    url = server.start()  # the socket is listening once start() returns
    print(f"listening on {url}", flush=True)
    try:
        stopping.wait()
    finally:
        server.stop()
    return 0


class StandinControlError(RuntimeError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"stand-in control call failed: {status} {body}")
        self.status = status
        self.body = body


class ControlClient:
    """urllib client for /__standin; `base_url` is the root URL printed at start."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        # No proxies: the stand-ins are always local.
        self._opener = urlrequest.build_opener(urlrequest.ProxyHandler({}))

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        req = urlrequest.Request(
            self.base_url + CONTROL_PREFIX + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urlerror.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise StandinControlError(exc.code, detail) from exc
        return json.loads(raw) if raw else None

    def requests(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", "/requests"))

    def reset_requests(self) -> None:
        self._call("DELETE", "/requests")

    def writes(self) -> int:
        return int(self.requests()["writes"])

    def set_faults(self, rules: Sequence[dict[str, Any]]) -> None:
        self._call("POST", "/faults", {"rules": list(rules)})

    def faults(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._call("GET", "/faults")["rules"])

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def state(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", "/state"))

    def reset(self) -> None:
        self._call("POST", "/reset")
