"""A fault-injecting TLS proxy between the functions and each region's API server.

The GKE stand-in hands out the proxy's address as the cluster endpoint (the CA stays the
cluster's own), so the production path — GKE GetCluster → endpoint + CA → kubernetes
client — is unchanged, and every Kubernetes call a function makes crosses the proxy. The
test-side kubectl keeps its kubeconfig and talks to the API servers directly.

For each cluster the proxy listens on its own 127.0.0.1 port and terminates TLS with a
certificate for 127.0.0.1 that chains to the cluster's CA (the API server's own serving
certificate, kwok's admin.crt, when it fits; else one signed with the CA key). It reads
a request (head and a Content-Length or chunked body), forwards it to the real API
server over a fresh TLS connection (verified with the cluster CA, session resumed) with
`Connection: close`, and relays the response bytes until upstream's EOF (watch streams
included). The client connection is kept alive between requests, as the API server
would keep it (upstream's `Connection: close` is taken out of the relayed head), so a
call through the proxy costs ~3 ms more than a direct one, not a TLS handshake per
request; a fault ends its connection. A client connection idle for 120 s is closed.

Rules (JSON; `FaultProxyControl.add_rule`) match requests by `cluster`, `method`,
`path` (regex, searched), `query` (regex on the raw query string) and `body`
(substring); `nth` (1-based, counted per rule) is the first matching request affected
and `times` how many are (null: all). Every rule whose filters match counts the request;
the first rule, in the order added, that is due applies. Actions:

  refuse       answer `status` with a Kubernetes Status body (`reason`, `message`
               optional), forwarding nothing
  delay        wait `seconds`, then forward
  drop         never answer: hold the connection, forward nothing, until the client
               gives up or the rule is removed (then the connection is closed)
  cut          forward, read the whole answer (the write happened), close the client
               connection without sending any of it
  reset        close the client connection at once with a TCP RST, forwarding nothing
  hold         keep the request before forwarding until released (`release`) or
               dropped (`release(drop=True)`); removing the rule releases it
  stall_watch  for watch GETs only (watch=true): relay the response head, then no
               events until the rule is removed (then relaying resumes)

Cluster modes: `normal`, `blackhole` (connections are accepted and requests on open
connections read, never answered; back to normal, they are served) and
`refuse_connections` (the listener is closed, open connections are reset). An API
server that is down (upstream refuses) looks the same to the client: its connection is
reset, and the audit log says `upstream_unreachable`.

The audit log keeps the last AUDIT_LIMIT requests in arrival order: `seq`, `mono`
(CLOCK_MONOTONIC, comparable with `time.monotonic()` of any process on the machine),
`time`, `cluster`, `method`, `path`, `query`, `agent` (the User-Agent), `status` (what
the client got, if any), `fault` (the action applied, or `upstream_unreachable`), `rule`,
`ms` and, for PATCH/PUT/POST bodies, `images` (spec.template.spec.containers) and `annotations`
(metadata.annotations) when present.

Control API (plain HTTP, `FaultProxyControl`), under /__standin:
  GET    /clusters                 {name: {endpoint, upstream, mode}}
  POST   /clusters/<name>/mode     {"mode": ...}
  GET    /rules | POST /rules {"rules": [...]} -> {"ids"} | DELETE /rules/<id>
  POST   /clear                    every rule removed, every cluster back to normal
  GET    /held                     held requests: id, cluster, method, path, query, since
  POST   /held/<id>/release        {"drop": bool};  POST /release releases all
  GET    /audit?cluster=&since=    {"entries", "next"};  DELETE /audit
Run it as `python -m sandbox.fault_proxy --spec FILE --port 0` (FILE: {"cert_dir",
"clusters": [{"name", "upstream": "host:port", "pki_dir"}]}); it prints
`listening on http://HOST:PORT` for the control API.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import ipaddress
import itertools
import json
import logging
import re
import select
import socket
import ssl
import struct
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from http import HTTPStatus
from pathlib import Path
from typing import Any, cast

from sandbox.standins._http import ControlClient, FaultRule, Request, Response, StandinServer, run_cli

__all__ = ["ACTIONS", "MODES", "FaultProxy", "FaultProxyControl", "serving_certificate"]

logger = logging.getLogger(__name__)

ACTIONS = ("refuse", "delay", "drop", "cut", "reset", "hold", "stall_watch")
MODES = ("normal", "blackhole", "refuse_connections")
AUDIT_LIMIT = 20_000
_POLL = 0.02  # seconds between checks while a connection waits on a fault
_IDLE_POLL = 0.1  # seconds between checks of the cluster's mode while a connection idles
_IDLE_TIMEOUT = 120.0  # an idle client connection is closed after this long
_IO_TIMEOUT = 30.0  # for a client to finish its TLS handshake or a request it started
_MAX_HEAD = 1 << 20
_WATCH = re.compile(r"(?:^|&)watch=(?:true|1)(?:&|$)")
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "content-length", "host", "te"}
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


# --- certificates -----------------------------------------------------------------------


def serving_certificate(pki_dir: Path, out_dir: Path, name: str) -> tuple[Path, Path]:
    """(cert, key) files for a TLS server on 127.0.0.1 that chains to the cluster CA in
    `pki_dir`: a certificate there that already fits is reused, otherwise one is signed
    with the CA key."""
    from cryptography import x509

    with warnings.catch_warnings():
        # kwok's CA has a serial number of 0, which RFC 5280 disallows (OpenSSL does not mind).
        warnings.simplefilter("ignore")
        ca = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
        for cert_path in sorted(pki_dir.glob("*.crt")):
            key_path = cert_path.with_suffix(".key")
            if cert_path.name != "ca.crt" and key_path.exists() and _serves_localhost(cert_path.read_bytes(), ca):
                return cert_path, key_path  # kwok's admin.crt: the API server's own serving cert
    return _sign_localhost(pki_dir, out_dir, name, ca)


def _serves_localhost(pem: bytes, ca: Any) -> bool:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    cert = x509.load_pem_x509_certificate(pem)
    try:
        ips = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.IPAddress
        )
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    now = datetime.datetime.now(datetime.UTC)
    return (
        ipaddress.ip_address("127.0.0.1") in ips
        and ExtendedKeyUsageOID.SERVER_AUTH in usages
        and cert.issuer == ca.subject
        and cert.not_valid_before_utc <= now < cert.not_valid_after_utc - datetime.timedelta(days=1)
    )


def _sign_localhost(pki_dir: Path, out_dir: Path, name: str, ca: Any) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"geodeploy-fault-proxy-{name}")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]  # an RSA or EC CA key
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out_dir / f"{name}.crt", out_dir / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


# --- rules ------------------------------------------------------------------------------


@dataclass
class Rule:
    action: str
    cluster: str | None = None
    method: str | None = None
    path: str | None = None
    query: str | None = None
    body: str | None = None
    nth: int = 1
    times: int | None = 1
    status: int | None = None  # refuse
    reason: str | None = None  # refuse: the Status reason (default: from the status)
    message: str | None = None  # refuse: the Status message
    seconds: float | None = None  # delay
    id: int = 0
    seen: int = 0  # matching requests so far
    applied: int = 0  # requests this rule was applied to
    removed: bool = field(default=False, repr=False)

    @classmethod
    def from_json(cls, raw: dict[str, Any], rule_id: int) -> Rule:
        allowed = {f.name for f in fields(cls)} - {"id", "seen", "applied", "removed"}
        unknown = set(raw) - allowed
        if unknown:
            raise ValueError(f"unknown rule fields: {sorted(unknown)}")
        rule = cls(**raw, id=rule_id)
        if rule.action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, not {rule.action!r}")
        if rule.action == "refuse" and not (isinstance(rule.status, int) and 400 <= rule.status <= 599):
            raise ValueError("refuse needs a status between 400 and 599")
        if rule.action == "delay" and not (isinstance(rule.seconds, int | float) and rule.seconds >= 0):
            raise ValueError("delay needs seconds >= 0")
        if not isinstance(rule.nth, int) or rule.nth < 1:
            raise ValueError("nth must be an integer >= 1")
        if rule.times is not None and (not isinstance(rule.times, int) or rule.times < 1):
            raise ValueError("times must be an integer >= 1 or null")
        if rule.method is not None:
            rule.method = rule.method.upper()
        for pattern in (rule.path, rule.query):
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"bad regex {pattern!r}: {exc}") from None
        return rule

    def matches(self, req: ProxiedRequest) -> bool:
        return (
            (self.cluster is None or self.cluster == req.cluster)
            and (self.method is None or self.method == req.method)
            and (self.path is None or re.search(self.path, req.path) is not None)
            and (self.query is None or re.search(self.query, req.query) is not None)
            and (self.body is None or self.body in req.body.decode("utf-8", "replace"))
            and (self.action != "stall_watch" or (req.method == "GET" and _WATCH.search(req.query) is not None))
        )

    def describe(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "removed"}


@dataclass
class ProxiedRequest:
    cluster: str
    method: str
    target: str  # as sent: path and query
    version: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    def upstream_bytes(self, host: str) -> bytes:
        lines = [f"{self.method} {self.target} {self.version}", f"Host: {host}"]
        lines += [f"{k}: {v}" for k, v in self.headers if k.lower() not in _HOP_BY_HOP]
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(self.body)}")
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


@dataclass
class Held:
    id: int
    cluster: str
    method: str
    path: str
    query: str
    since: float  # wall time
    mono: float
    rule: int
    seq: int  # its audit entry
    decision: str | None = None  # "release" | "drop"

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "decision"}


class _ClientGone(Exception):
    pass


# --- per-cluster listener ---------------------------------------------------------------


class ClusterListener:
    """One cluster's TLS port; it survives closing and reopening on the same port."""

    def __init__(self, proxy: FaultProxy, name: str, upstream: str, cert: Path, key: Path, ca_file: Path) -> None:
        self.proxy = proxy
        self.name = name
        host, _, port = upstream.rpartition(":")
        self.upstream_host, self.upstream_port = host, int(port)
        self.server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_context.load_cert_chain(cert, key)
        self.server_context.set_alpn_protocols(["http/1.1"])
        self.upstream_context = ssl.create_default_context(cafile=str(ca_file))
        self.upstream_context.set_alpn_protocols(["http/1.1"])
        self.port = 0
        self.mode = "normal"
        self.session: ssl.SSLSession | None = None  # resumes upstream TLS sessions
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def open(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, args=(sock, self._stop), daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None

    def _accept_loop(self, sock: socket.socket, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                ready, _, _ = select.select([sock], [], [], 0.1)
                if not ready:
                    continue
                try:
                    conn, _ = sock.accept()
                except OSError:
                    continue
                threading.Thread(target=self.proxy.serve_connection, args=(self, conn), daemon=True).start()
        finally:
            sock.close()  # connections still in the backlog are reset: "refused"

    def connect_upstream(self) -> ssl.SSLSocket:
        raw = socket.create_connection((self.upstream_host, self.upstream_port), timeout=5)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = self.upstream_context.wrap_socket(raw, server_hostname=self.upstream_host, session=self.session)
        except BaseException:
            raw.close()
            raise
        tls.settimeout(None)  # a watch may be quiet for minutes; it ends at its timeoutSeconds
        return tls


# --- the proxy --------------------------------------------------------------------------


class FaultProxy(StandinServer):
    """The control API (a StandinServer) plus one TLS listener per cluster."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._lock = threading.Lock()
        self.listeners: dict[str, ClusterListener] = {}
        self._rules: list[Rule] = []
        self._rule_ids = itertools.count(1)
        self._held: dict[int, Held] = {}
        self._held_ids = itertools.count(1)
        self._audit: deque[dict[str, Any]] = deque(maxlen=AUDIT_LIMIT)
        self._seq = 0

    def add_cluster(self, name: str, upstream: str, cert: Path, key: Path, ca_file: Path) -> None:
        self.listeners[name] = ClusterListener(self, name, upstream, cert, key, ca_file)

    # ---- lifecycle ----

    def start(self) -> str:
        for listener in self.listeners.values():
            listener.open()
            print(f"cluster {listener.name} listening on {listener.endpoint}", flush=True)
        return super().start()

    def stop(self) -> None:
        self.clear()
        for listener in self.listeners.values():
            listener.close()
        super().stop()

    # ---- rules, modes, held requests ----

    def add_rules(self, raw_rules: Sequence[dict[str, Any]]) -> list[int]:
        with self._lock:
            rules = [Rule.from_json(dict(raw), next(self._rule_ids)) for raw in raw_rules]
            self._rules.extend(rules)
        return [r.id for r in rules]

    def remove_rule(self, rule_id: int) -> None:
        with self._lock:
            rule = next((r for r in self._rules if r.id == rule_id), None)
            if rule is None:
                raise KeyError(f"no rule {rule_id}")
            rule.removed = True
            self._rules.remove(rule)

    def set_mode(self, cluster: str, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        listener = self.listeners[cluster]
        with self._lock:
            before, listener.mode = listener.mode, mode
        if mode == "refuse_connections" and before != mode:
            listener.close()
        elif before == "refuse_connections" and mode != before:
            listener.open()

    def clear(self) -> None:
        """Every rule removed (held requests are forwarded, drops closed, stalled
        watches resume) and every cluster back to normal."""
        with self._lock:
            for rule in self._rules:
                rule.removed = True
            self._rules.clear()
        for name in self.listeners:
            self.set_mode(name, "normal")

    def release(self, held_id: int | None, drop: bool = False) -> int:
        with self._lock:
            targets = list(self._held.values()) if held_id is None else [self._held.get(held_id)]
            if held_id is not None and targets[0] is None:
                raise KeyError(f"no held request {held_id}")
            for held in targets:
                assert held is not None
                held.decision = "drop" if drop else "release"
            return len(targets)

    def _take_rule(self, req: ProxiedRequest) -> Rule | None:
        chosen = None
        with self._lock:
            for rule in self._rules:
                if not rule.matches(req):
                    continue
                rule.seen += 1
                due = rule.seen >= rule.nth and (rule.times is None or rule.applied < rule.times)
                if due and chosen is None:
                    rule.applied += 1
                    chosen = rule
        return chosen

    # ---- audit ----

    def _audit_start(self, req: ProxiedRequest) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "mono": time.monotonic(),
            "time": time.time(),
            "cluster": req.cluster,
            "method": req.method,
            "path": req.path,
            "query": req.query,
            "agent": next((v for k, v in req.headers if k.lower() == "user-agent"), None),
            "status": None,
            "fault": None,
            "rule": None,
        }
        if req.method in ("PATCH", "PUT", "POST") and req.body:
            entry.update(_body_summary(req.body))
        with self._lock:
            entry["seq"] = self._seq
            self._seq += 1
            self._audit.append(entry)
        return entry

    def _note(self, entry: dict[str, Any], **values: Any) -> None:
        with self._lock:
            entry.update(values)

    def audit(self, cluster: str | None = None, since: int = 0) -> dict[str, Any]:
        with self._lock:
            entries = [
                dict(e) for e in self._audit if e["seq"] >= since and (cluster is None or e["cluster"] == cluster)
            ]
            return {"entries": entries, "next": self._seq}

    def clear_audit(self) -> None:
        with self._lock:
            self._audit.clear()

    # ---- control API (StandinServer hooks) ----

    def serve(self, req: Request) -> tuple[Response, bool]:
        return Response(404, {"error": f"no route {req.method} {req.path}; the control API is under /__standin"}), False

    def fault_response(self, rule: FaultRule) -> Response | None:
        return None

    def set_faults(self, rules: Sequence[dict[str, Any]]) -> None:
        if rules:
            raise ValueError("the fault proxy takes rules at /__standin/rules")

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "clusters": self._clusters(),
                "rules": [r.describe() for r in self._rules],
                "held": [h.describe() for h in self._held.values()],
            }

    def reset_state(self) -> None:
        self.clear()

    def _clusters(self) -> dict[str, Any]:
        return {
            name: {
                "endpoint": listener.endpoint,
                "upstream": f"{listener.upstream_host}:{listener.upstream_port}",
                "mode": listener.mode,
            }
            for name, listener in self.listeners.items()
        }

    def control(self, route: tuple[str, str], req: Request) -> Response | None:
        method, path = route
        parts = path.strip("/").split("/")
        body: Any = (req.json() or {}) if method in ("POST", "PUT") else {}
        if route == ("GET", "/clusters"):
            return Response(200, self._clusters())
        if method == "POST" and len(parts) == 3 and parts[0] == "clusters" and parts[2] == "mode":
            if parts[1] not in self.listeners:
                return Response(404, {"error": f"no cluster {parts[1]!r}"})
            self.set_mode(parts[1], body["mode"])
            return Response(200, self._clusters()[parts[1]])
        if route == ("GET", "/rules"):
            with self._lock:
                return Response(200, {"rules": [r.describe() for r in self._rules]})
        if route == ("POST", "/rules"):
            rules = body["rules"] if isinstance(body, dict) else body
            return Response(200, {"ids": self.add_rules(rules)})
        if method == "DELETE" and len(parts) == 2 and parts[0] == "rules":
            self.remove_rule(int(parts[1]))
            return Response(200, {"ok": True})
        if route == ("POST", "/clear"):
            self.clear()
            return Response(200, {"ok": True})
        if route == ("GET", "/held"):
            with self._lock:
                return Response(200, {"held": [h.describe() for h in self._held.values()]})
        if route == ("POST", "/release"):
            count = self.release(None, drop=bool(body.get("drop", False)))
            return Response(200, {"released": count})
        if method == "POST" and len(parts) == 3 and parts[0] == "held" and parts[2] == "release":
            try:
                self.release(int(parts[1]), drop=bool(body.get("drop", False)))
            except KeyError as exc:
                return Response(404, {"error": str(exc)})
            return Response(200, {"released": 1})
        if route == ("GET", "/audit"):
            cluster = req.query.get("cluster", [None])[0]
            since = int(req.query.get("since", ["0"])[0])
            return Response(200, self.audit(cluster, since))
        if route == ("DELETE", "/audit"):
            self.clear_audit()
            return Response(200, {"ok": True})
        return None

    # ---- one client connection ----

    def serve_connection(self, listener: ClusterListener, conn: socket.socket) -> None:
        """One client connection: TLS, then requests one after the other (keep-alive, as
        the API server allows) until the client leaves, a fault closes it or it idles."""
        client: socket.socket = conn
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if listener.mode == "blackhole":
                self._blackhole(listener, conn)
            if listener.mode != "normal":
                return
            conn.settimeout(_IO_TIMEOUT)
            client = listener.server_context.wrap_socket(conn, server_side=True)
            while self._await_request(listener, client):
                req = _read_request(client, listener.name)
                if req is None:
                    return
                entry = None
                if listener.mode == "blackhole":  # a request on a connection opened before
                    entry = self._blackhole(listener, client, req)
                if listener.mode != "normal":
                    _reset(client)
                    return
                if not self._handle(listener, client, req, entry):
                    return
        except (OSError, ValueError, _ClientGone) as exc:
            logger.debug("%s: connection ended: %r", listener.name, exc)
        except Exception:
            logger.exception("%s: proxy failure", listener.name)
        finally:
            with contextlib.suppress(OSError):
                client.close()

    def _await_request(self, listener: ClusterListener, client: ssl.SSLSocket) -> bool:
        """Waits while the connection idles; False once it should close (idle too long, or
        the cluster now refuses connections: an API server going away closes them)."""
        poller = select.poll()
        poller.register(client.fileno(), select.POLLIN | select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        deadline = time.monotonic() + _IDLE_TIMEOUT
        while not client.pending() and not poller.poll(_IDLE_POLL * 1000):
            if listener.mode == "refuse_connections":
                _reset(client)
                return False
            if time.monotonic() > deadline:
                return False
        return True

    def _blackhole(
        self, listener: ClusterListener, sock: socket.socket, req: ProxiedRequest | None = None
    ) -> dict[str, Any]:
        """Accepts (a connection or a request) and never answers, until the mode changes;
        returns the audit entry."""
        if req is not None:
            entry = self._audit_start(req)
        else:
            entry = {"mono": time.monotonic(), "time": time.time(), "cluster": listener.name}
            entry.update(method=None, path=None, query=None, status=None, rule=None)
            with self._lock:
                entry["seq"] = self._seq
                self._seq += 1
                self._audit.append(entry)
        self._note(entry, fault="blackhole")
        self._wait(sock, lambda: listener.mode != "blackhole")
        return entry

    def _handle(
        self, listener: ClusterListener, client: ssl.SSLSocket, req: ProxiedRequest, entry: dict[str, Any] | None
    ) -> bool:
        """Serves one request; True if the connection may carry the next one."""
        started = time.monotonic()
        entry = entry or self._audit_start(req)
        rule = self._take_rule(req)
        if rule is not None:
            self._note(entry, fault=rule.action, rule=rule.id)
        try:
            if rule is None:
                return self._forward(listener, client, req, entry)
            if rule.action == "delay":
                self._wait(client, lambda: rule.removed, timeout=rule.seconds)
                return self._forward(listener, client, req, entry)
            if rule.action == "refuse":
                assert rule.status is not None
                message = rule.message or "injected by the fault proxy"
                # Noted before the answer goes out: a client reading the audit as soon as
                # it has its answer must find the status there.
                self._note(entry, status=rule.status)
                client.sendall(_status_response(rule.status, rule.reason, message))
            elif rule.action == "drop":
                self._wait(client, lambda: rule.removed)
            elif rule.action == "cut":
                self._forward(listener, client, req, entry, cut=True)
            elif rule.action == "reset":
                _reset(client)
            elif rule.action == "hold":
                return self._hold(listener, client, req, entry, rule)
            elif rule.action == "stall_watch":
                self._forward(listener, client, req, entry, stall=lambda: rule.removed)
            return False  # the fault's connection is done
        except _ClientGone:
            self._note(entry, client_gone=True)
            return False
        finally:
            self._note(entry, ms=round((time.monotonic() - started) * 1000, 2))

    def _hold(
        self, listener: ClusterListener, client: ssl.SSLSocket, req: ProxiedRequest, entry: dict[str, Any], rule: Rule
    ) -> bool:
        held = Held(
            next(self._held_ids), req.cluster, req.method, req.path, req.query, time.time(), time.monotonic(),
            rule.id, entry["seq"],
        )  # fmt: skip
        with self._lock:
            self._held[held.id] = held
        try:
            self._wait(client, lambda: held.decision is not None or rule.removed)
        finally:
            with self._lock:
                self._held.pop(held.id, None)
        if held.decision == "drop":
            self._note(entry, fault="hold+drop")
            return False
        return self._forward(listener, client, req, entry)

    def _wait(self, sock: socket.socket, done: Callable[[], bool], timeout: float | None = None) -> None:
        """Waits until `done()` or the timeout; raises _ClientGone if the client hangs up.

        Nothing more is expected from the client, so a hang-up (FIN or RST) is all poll
        reports: POLLRDHUP sees it without reading, even with unread bytes waiting."""
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done():
            left = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
            if left <= 0:
                return
            if poller.poll(left * 1000):
                raise _ClientGone()

    def _forward(
        self,
        listener: ClusterListener,
        client: ssl.SSLSocket,
        req: ProxiedRequest,
        entry: dict[str, Any],
        *,
        cut: bool = False,
        stall: Callable[[], bool] | None = None,
    ) -> bool:
        """Sends the request upstream on a fresh connection and relays the answer to its
        end (upstream closes after it); True if the client connection may be kept."""
        try:
            upstream = listener.connect_upstream()
        except OSError as exc:
            # As a stopped API server looks to its clients: the connection fails.
            self._note(entry, fault=entry["fault"] or "upstream_unreachable", error=f"{type(exc).__name__}: {exc}")
            _reset(client)
            return False
        try:
            upstream.sendall(req.upstream_bytes(f"{listener.upstream_host}:{listener.upstream_port}"))
            head = b""
            while b"\r\n\r\n" not in head:
                data = upstream.recv(65536)
                if not data:
                    raise ConnectionError(f"the API server closed the connection after {len(head)} bytes")
                head += data
            listener.session = upstream.session
            head, rest = head.split(b"\r\n\r\n", 1)
            status, head, keep = _client_head(head, req)
            self._note(entry, status=None if cut else status, upstream_status=status)
            if cut:
                while upstream.recv(65536):
                    pass  # read it all: the write must really happen
                return False
            client.sendall(head)
            if stall is not None:
                self._wait(client, stall)  # the watch is open, and sends nothing until the rule goes
            if rest:
                client.sendall(rest)
            while data := upstream.recv(65536):
                client.sendall(data)
            return keep
        finally:
            upstream.close()


def _client_head(head: bytes, req: ProxiedRequest) -> tuple[int | None, bytes, bool]:
    """(status, the response head for the client, whether the client connection may be
    kept): upstream's `Connection: close` (we asked for it) is taken out unless the
    response is delimited by the close alone."""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    status = _status_of(status_line.encode("latin-1"))
    names = {line.partition(":")[0].strip().lower(): line.partition(":")[2].strip().lower() for line in lines}
    framed = (
        "content-length" in names
        or names.get("transfer-encoding", "").endswith("chunked")
        or req.method == "HEAD"
        or status in (204, 304)
        or (status is not None and 100 <= status < 200)
    )
    wants_close = dict((k.lower(), v.lower()) for k, v in req.headers).get("connection") == "close"
    keep = framed and not wants_close and req.version == "HTTP/1.1"
    kept = [line for line in lines if line.partition(":")[0].strip().lower() not in ("connection", "keep-alive")]
    if not keep:
        kept.append("Connection: close")
    return status, ("\r\n".join([status_line, *kept]) + "\r\n\r\n").encode("latin-1"), keep


def _body_summary(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    out: dict[str, Any] = {}
    spec = doc.get("spec")
    template = spec.get("template") if isinstance(spec, dict) else None
    pod = template.get("spec") if isinstance(template, dict) else None
    containers = pod.get("containers") if isinstance(pod, dict) else None
    if isinstance(containers, list):
        out["images"] = [c.get("image") for c in containers if isinstance(c, dict)]
    meta = doc.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("annotations"), dict):
        out["annotations"] = meta["annotations"]
    return out


def _read_request(sock: ssl.SSLSocket, cluster: str) -> ProxiedRequest | None:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            return None  # the client connected and left
        buffer += data
        if len(buffer) > _MAX_HEAD:
            raise ValueError("request head too large")
    head, rest = buffer.split(b"\r\n\r\n", 1)
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, version = request_line.split(" ", 2)
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in header_lines if line)]
    values = {k.lower(): v for k, v in headers}
    if values.get("transfer-encoding", "").lower() == "chunked":
        body, rest = b"", rest
        while True:
            while b"\r\n" not in rest:
                rest += _recv(sock)
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0].strip(), 16)
            while len(rest) < size + 2:
                rest += _recv(sock)
            if size == 0:
                break  # trailers are not used by Kubernetes clients
            body, rest = body + rest[:size], rest[size + 2 :]
    else:
        length = int(values.get("content-length") or 0)
        while len(rest) < length:
            rest += _recv(sock)
        body = rest[:length]
    return ProxiedRequest(cluster, method.upper(), target, version, headers, body)


def _recv(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise _ClientGone()
    return data


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _status_of(head: bytes) -> int | None:
    try:
        return int(head.split(b"\r\n", 1)[0].split(b" ")[1])
    except (IndexError, ValueError):
        return None


def _status_response(status: int, reason: str | None, message: str) -> bytes:
    body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason or _REASONS.get(status, "InternalError" if status >= 500 else "BadRequest"),
            "code": status,
        }
    ).encode()
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


# --- control client -------------------------------------------------------------------


class FaultProxyControl(ControlClient):
    """Client of the proxy's control API. Cluster arguments are cluster names."""

    def clusters(self) -> dict[str, dict[str, Any]]:
        return cast(dict[str, dict[str, Any]], self._call("GET", "/clusters"))

    def endpoint(self, cluster: str) -> str:
        """host:port where the proxy serves `cluster`."""
        return str(self.clusters()[cluster]["endpoint"])

    def add_rule(self, action: str, **rule: Any) -> int:
        """One rule (see the module doc); returns its id."""
        return self.add_rules([{"action": action, **rule}])[0]

    def add_rules(self, rules: Sequence[dict[str, Any]]) -> list[int]:
        return [int(i) for i in self._call("POST", "/rules", {"rules": list(rules)})["ids"]]

    def rules(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._call("GET", "/rules")["rules"])

    def remove_rule(self, rule_id: int) -> None:
        self._call("DELETE", f"/rules/{rule_id}")

    def set_mode(self, cluster: str, mode: str) -> None:
        self._call("POST", f"/clusters/{cluster}/mode", {"mode": mode})

    def clear(self) -> None:
        """Every rule removed, every cluster back to normal (the audit log stays)."""
        self._call("POST", "/clear", {})

    def held(self, cluster: str | None = None) -> list[dict[str, Any]]:
        held = cast(list[dict[str, Any]], self._call("GET", "/held")["held"])
        return [h for h in held if cluster is None or h["cluster"] == cluster]

    def wait_for_held(
        self, cluster: str | None = None, method: str | None = None, path: str | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        """The first held request matching (path: a regex, searched); TimeoutError if none comes."""
        deadline = time.monotonic() + timeout
        while True:
            for held in self.held(cluster):
                if (method is None or held["method"] == method.upper()) and (
                    path is None or re.search(path, held["path"])
                ):
                    return held
            if time.monotonic() > deadline:
                raise TimeoutError(f"no request held at the fault proxy ({cluster} {method} {path}) in {timeout} s")
            time.sleep(0.05)

    def release(self, held_id: int | None = None, drop: bool = False) -> None:
        """Forwards a held request (all of them without an id), or closes it with drop."""
        self._call("POST", "/release" if held_id is None else f"/held/{held_id}/release", {"drop": drop})

    def audit(self, cluster: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in (("cluster", cluster), ("since", since)) if v is not None)
        return cast(list[dict[str, Any]], self._call("GET", f"/audit?{query}")["entries"])

    def audit_mark(self) -> int:
        """The `seq` the next request will get: pass it as `since` to see only later ones."""
        return int(self._call("GET", "/audit?since=1000000000000")["next"])

    def clear_audit(self) -> None:
        self._call("DELETE", "/audit")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", type=Path, required=True, help="JSON: cert_dir and the clusters to proxy")


def _build(args: argparse.Namespace) -> FaultProxy:
    spec = json.loads(args.spec.read_text())
    server = FaultProxy(host=args.host, port=args.port)
    cert_dir = Path(spec["cert_dir"])
    for cluster in spec["clusters"]:
        pki = Path(cluster["pki_dir"])
        cert, key = serving_certificate(pki, cert_dir, cluster["name"])
        server.add_cluster(cluster["name"], cluster["upstream"], cert, key, pki / "ca.crt")
    return server


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_cli(argv, "fault-injecting TLS proxy in front of the sandbox's API servers", _add_arguments, _build)


if __name__ == "__main__":
    raise SystemExit(main())
