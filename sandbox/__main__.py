"""`python -m sandbox up|down|status|proxy`: the local multi-region sandbox from the command line.

    python -m sandbox up --config config/sandbox.yaml [--config config/sandbox-waves.yaml]
    python -m sandbox proxy --service geodeploy-status-page --port 8080   # then open http://127.0.0.1:8080/
    python -m sandbox down
Everything runs on 127.0.0.1; state, logs and kubeconfigs live in --state-dir (.sandbox).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sandbox.stack import STATE_FILE, Sandbox, stop_recorded_sandbox

DEFAULT_STATE = Path(".sandbox")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE, help="where the sandbox keeps its state")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start clusters, emulator, stand-ins and functions; print where they listen")
    up.add_argument("--config", type=Path, action="append", required=True, help="a geodeploy config (repeatable)")
    sub.add_parser("down", help="stop a sandbox started with `up`")
    sub.add_parser("status", help="print where a running sandbox listens")
    proxy = sub.add_parser("proxy", help="open an IAM-protected service as the operator (gcloud run services proxy)")
    proxy.add_argument("--service", required=True, help="e.g. geodeploy-status-page")
    proxy.add_argument("--port", type=int, default=8080, help="local port (0: any free one)")
    args = parser.parse_args(argv)

    state_file = args.state_dir / STATE_FILE
    if args.command == "down":
        stopped = stop_recorded_sandbox(args.state_dir)
        print("sandbox stopped" if stopped else f"no sandbox recorded in {args.state_dir}")
        return 0
    if args.command == "status":
        if not state_file.exists():
            print(f"no sandbox recorded in {args.state_dir}", file=sys.stderr)
            return 1
        print(describe(json.loads(state_file.read_text())))
        return 0
    if args.command == "proxy":
        if not state_file.exists():
            print(f"no sandbox recorded in {args.state_dir}", file=sys.stderr)
            return 1
        return proxy_service(json.loads(state_file.read_text()), args.service, args.port)
    if state_file.exists():
        print(f"a sandbox is already recorded in {args.state_dir}; run `python -m sandbox down` first", file=sys.stderr)
        return 1
    sandbox = Sandbox(args.config, args.state_dir).start()
    sandbox.detach()
    print(describe(json.loads(state_file.read_text())))
    print(f"\nstop it with: python -m sandbox --state-dir {args.state_dir} down")
    return 0


def proxy_service(state: dict, service: str, port: int) -> int:
    """Serves `service` on localhost with the operator's token added, until interrupted."""
    import os

    from sandbox.cloud_run import operator_token, run_server, serve_proxy

    for config, services in state.get("services", {}).items():
        if service in services:
            # The operator's credentials: what the CLI runs with in this sandbox.
            os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = state["env"][config]["GOOGLE_APPLICATION_CREDENTIALS"]
            return run_server(serve_proxy(services[service], operator_token(), port))
    known = ", ".join(n for services in state.get("services", {}).values() for n in services) or "none"
    print(f"no service named {service!r} in this sandbox (services: {known})", file=sys.stderr)
    return 1


def describe(state: dict) -> str:
    lines = ["sandbox is up:"]
    for name, url in state["urls"].items():
        lines.append(f"  {name + ' stand-in':<22} {url}")
    env = next(iter(state["env"].values()))
    lines.append(f"  {'pubsub emulator':<22} {env['PUBSUB_EMULATOR_HOST']}")
    for name, cluster in state["clusters"].items():
        lines.append(f"  {'cluster ' + name:<22} https://{cluster['endpoint']}  (kubeconfig {cluster['kubeconfig']})")
    for config, functions in state.get("functions", {}).items():
        lines.append(f"  functions of {config}:")
        lines += [f"    {name:<34} {url}" for name, url in functions.items()]
    for config, services in state.get("services", {}).items():
        lines.append(f"  behind Cloud Run's IAM check, of {config} (open with python -m sandbox proxy --service NAME):")
        lines += [f"    {name:<34} {url}" for name, url in services.items()]
    lines.append(f"  started in {sum(state['timings'].values()):.1f} s: {state['timings']}")
    lines.append("  use it from the CLI with: export GEODEPLOY_SANDBOX=" + state["state_dir"])
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
