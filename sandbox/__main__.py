"""`python -m sandbox up|down|status`: the local multi-region sandbox from the command line.

    python -m sandbox up --config config/sandbox.yaml [--config config/sandbox-waves.yaml]
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
    if state_file.exists():
        print(f"a sandbox is already recorded in {args.state_dir}; run `python -m sandbox down` first", file=sys.stderr)
        return 1
    sandbox = Sandbox(args.config, args.state_dir).start()
    sandbox.detach()
    print(describe(json.loads(state_file.read_text())))
    print(f"\nstop it with: python -m sandbox --state-dir {args.state_dir} down")
    return 0


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
    lines.append(f"  started in {sum(state['timings'].values()):.1f} s: {state['timings']}")
    lines.append("  use it from the CLI with: export GEODEPLOY_SANDBOX=" + state["state_dir"])
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
