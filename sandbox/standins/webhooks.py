"""Webhook receiver stand-in: where the sandbox's notify function posts (a Slack incoming
webhook, a JSON webhook), recording every request it gets.

Routes:
  POST /hooks/{name}   records method, path, headers and body; answers as told for that
                       hook (default 200 `ok`, as Slack's incoming webhooks answer)

Control API (JSON, no auth; `WebhookStandinControl`): the common routes of
`StandinServer` (requests, state, reset), plus
  GET  /__standin/received              every request, oldest first
  POST /__standin/hooks/{name}/answer   {"status": 500, "delay_seconds": 0}: how to
                                        answer that hook from now on ({"status": 200}: as normal)

A hook told to answer 500 keeps answering 500; one told to delay holds each request that
long first (a receiver that hangs), then answers with its status.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sandbox.standins._http import ControlClient, FaultRule, Request, Response, StandinServer, run_cli

__all__ = ["WebhookStandin", "WebhookStandinControl"]

HOOKS_PREFIX = "/hooks/"


class WebhookStandin(StandinServer):
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._lock = threading.Lock()
        self._received: list[dict[str, Any]] = []
        self._answers: dict[str, dict[str, Any]] = {}

    def serve(self, req: Request) -> tuple[Response, bool]:
        hook = req.path.removeprefix(HOOKS_PREFIX)
        if req.method != "POST" or not req.path.startswith(HOOKS_PREFIX) or not hook or "/" in hook:
            return Response(404, {"error": f"no webhook at {req.method} {req.path}"}), False
        with self._lock:
            self._received.append(
                {
                    "hook": hook,
                    "path": req.path,
                    "headers": dict(req.headers.items()),
                    "body": req.body.decode("utf-8", "replace"),
                    "received_at": datetime.now(UTC).isoformat(),
                }
            )
            answer = dict(self._answers.get(hook, {}))
        if answer.get("delay_seconds"):
            time.sleep(float(answer["delay_seconds"]))  # the point: a receiver that hangs
        status = int(answer.get("status", 200))
        return Response(status, {"ok": status < 300}), True

    def set_answer(self, hook: str, status: int = 200, delay_seconds: float = 0.0) -> None:
        if not 200 <= status <= 599:
            raise ValueError("status must be an HTTP status")
        with self._lock:
            self._answers[hook] = {"status": status, "delay_seconds": delay_seconds}

    def control(self, route: tuple[str, str], req: Request) -> Response | None:
        method, path = route
        if route == ("GET", "/received"):
            with self._lock:
                return Response(200, {"received": list(self._received)})
        if method == "POST" and path.startswith("/hooks/") and path.endswith("/answer"):
            body = req.json() or {}
            self.set_answer(path.split("/")[2], int(body.get("status", 200)), float(body.get("delay_seconds", 0)))
            return Response(200, {"ok": True})
        return None

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {"received": len(self._received), "answers": dict(self._answers)}

    def reset_state(self) -> None:
        with self._lock:
            self._received.clear()
            self._answers.clear()

    def fault_response(self, rule: FaultRule) -> Response | None:
        return None if rule.status is None else Response(rule.status, {"ok": False})


class WebhookStandinControl(ControlClient):
    def received(self, hook: str | None = None) -> list[dict[str, Any]]:
        found = cast(list[dict[str, Any]], self._call("GET", "/received")["received"])
        return [r for r in found if hook is None or r["hook"] == hook]

    def set_answer(self, hook: str, status: int = 200, delay_seconds: float = 0.0) -> None:
        self._call("POST", f"/hooks/{hook}/answer", {"status": status, "delay_seconds": delay_seconds})


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def _build(args: argparse.Namespace) -> WebhookStandin:
    return WebhookStandin(host=args.host, port=args.port)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(argv, "Webhook receiver stand-in (Slack and JSON webhooks)", _add_arguments, _build)


if __name__ == "__main__":
    raise SystemExit(main())
