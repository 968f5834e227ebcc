"""Cloud Run's front door for the sandbox's HTTP functions, and the operator's way in.

`ingress`: what Cloud Run does before an IAM-protected service runs: a request without a
bearer token is refused (403), one whose token the Google stand-in does not know gets
401, and one whose identity lacks `run.routes.invoke` on the service gets 403; only then
is the request forwarded to the function (without the caller's token). The permission
is asked of the Google stand-in with the caller's own token (Cloud Run Admin API's
`services:testIamPermissions`), so the grants are those infra/ creates (sandbox/iam.py).

`proxy`: what `gcloud run services proxy` does for an operator: listens on localhost
and forwards to the service with the operator's token added, so a browser can open an
IAM-protected page. (The sandbox's identities hold access tokens, which its ingress
accepts; Cloud Run itself is given an identity token by gcloud.)

    python -m sandbox proxy --service waves-status-page [--port 8080]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["main", "operator_token", "run_server", "serve_ingress", "serve_proxy"]

INVOKE = "run.routes.invoke"
# Hop-by-hop headers (RFC 9110) and what urllib sets itself: never copied across.
_NOT_FORWARDED = {"connection", "keep-alive", "transfer-encoding", "host", "content-length", "authorization"}

# A request's headers to add (or why it is refused: status and text).
Decide = Callable[[BaseHTTPRequestHandler], "dict[str, str] | tuple[int, str]"]


def _handler(upstream: str, decide: Decide) -> type[BaseHTTPRequestHandler]:
    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._forward()

        def do_HEAD(self) -> None:
            self._forward()

        def do_POST(self) -> None:
            self._forward()

        def _forward(self) -> None:
            decided = decide(self)
            if isinstance(decided, tuple):
                self._answer(decided[0], {"Content-Type": "text/plain"}, decided[1].encode())
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _NOT_FORWARDED} | decided
            request = urllib.request.Request(upstream + self.path, data=body, method=self.command, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    self._answer(response.status, dict(response.headers.items()), response.read())
            except urllib.error.HTTPError as e:
                self._answer(e.code, dict(e.headers.items()), e.read())
            except OSError as e:
                self._answer(502, {"Content-Type": "text/plain"}, f"upstream unavailable: {e}\n".encode())

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() not in _NOT_FORWARDED:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            sys.stderr.write(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}\n")

    return Forward


def _may_invoke(iam: str, service: str, bearer: str) -> int:
    """200 if the token's identity may invoke `service`, 401 if the token is unknown, 403 if not."""
    request = urllib.request.Request(
        f"{iam}/v2/{service}:testIamPermissions",
        data=json.dumps({"permissions": [INVOKE]}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            held = json.loads(response.read() or b"{}").get("permissions") or []
    except urllib.error.HTTPError as e:
        return 401 if e.code == 401 else 403
    return 200 if INVOKE in held else 403


def serve_ingress(upstream: str, iam: str, service: str, port: int = 0) -> ThreadingHTTPServer:
    def decide(request: BaseHTTPRequestHandler) -> dict[str, str] | tuple[int, str]:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth.removeprefix("Bearer ").strip():
            return 403, "Forbidden: your client does not have permission to get this URL (no token).\n"
        status = _may_invoke(iam, service, auth.removeprefix("Bearer ").strip())
        if status == 401:
            return 401, "Unauthorized: the token is not valid.\n"
        if status == 403:
            return 403, f"Forbidden: the caller lacks {INVOKE} on {service}.\n"
        return {}

    return ThreadingHTTPServer(("127.0.0.1", port), _handler(upstream, decide))


def serve_proxy(upstream: str, token: Callable[[], str], port: int = 0) -> ThreadingHTTPServer:
    def decide(_: BaseHTTPRequestHandler) -> dict[str, str]:
        return {"Authorization": f"Bearer {token()}"}

    return ThreadingHTTPServer(("127.0.0.1", port), _handler(upstream, decide))


def operator_token() -> Callable[[], str]:
    """The token of whoever GOOGLE_APPLICATION_CREDENTIALS names (refreshed when due)."""
    import google.auth
    import google.auth.transport.requests

    credentials, _ = google.auth.default()

    def token() -> str:
        if not credentials.valid:
            credentials.refresh(google.auth.transport.requests.Request())
        return str(credentials.token)

    return token


def run_server(server: ThreadingHTTPServer) -> int:
    host, port = server.server_address[:2]
    print(f"listening on http://{host!s}:{port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.cloud_run", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ingress = sub.add_parser("ingress", help="check the caller's token and IAM, then forward to the function")
    ingress.add_argument("--upstream", required=True, help="the function's base URL")
    ingress.add_argument("--iam", required=True, help="the Google stand-in's URL")
    ingress.add_argument("--service", required=True, help="projects/P/locations/L/services/S")
    ingress.add_argument("--port", type=int, default=0)
    proxy = sub.add_parser("proxy", help="forward to a service with this process's Google token added")
    proxy.add_argument("--upstream", required=True, help="the service's URL (its ingress)")
    proxy.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "ingress":
        return run_server(serve_ingress(args.upstream, args.iam, args.service, args.port))
    return run_server(serve_proxy(args.upstream, operator_token(), args.port))


if __name__ == "__main__":
    raise SystemExit(main())
