"""Benchmarks of the local sandbox and the functions, written to bench/results.md.

    python bench/run.py [--pushes N]

Measures: sandbox start time and resident memory (3 regions, one config), the time from
an Artifact Registry publish on `gcr` to every region's Deployment Available (N pushes),
the Cloudflare requests of a first and of an idle reconcile, a traffic reconcile and a
drift check with one region black-holed against all up, and the import time of main.py
(what a cold start pays before the first event). Timings, never assertions: targets live
here, not in tests.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sandbox.driver import SandboxDriver, digest_for, wait_until  # noqa: E402
from sandbox.stack import Sandbox  # noqa: E402


def import_time(module: str, runs: int = 5) -> float:
    """Median seconds for a fresh interpreter to import `module` (bytecode cached)."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    samples = [
        float(subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout)
        for _ in range(runs)
    ]
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pushes", type=int, default=5)
    args = parser.parse_args()
    lines = [f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {platform.node()}, {machine()}", ""]

    main_import = import_time("main")
    lines.append(
        f"- import main (all six entry points, libraries loaded lazily): {main_import * 1000:.0f} ms median of 5"
    )
    for module in ("shared.flows.deploy", "kubernetes.client", "google.cloud.pubsub_v1", "cloudflare"):
        lines.append(f"- import {module}: {import_time(module) * 1000:.0f} ms")

    state = Path(tempfile.mkdtemp(prefix="geodeploy-bench-"))
    began = time.monotonic()
    stack = Sandbox([REPO / "config" / "sandbox.yaml"], state, progress=lambda _: None).start()
    try:
        started = time.monotonic() - began
        lines.append(f"- sandbox start, 3 regions (binaries cached): {started:.1f} s; steps {stack.timings}")
        lines.append(f"- sandbox resident memory after start: {stack.memory_mb():.0f} MiB")
        driver = SandboxDriver(stack)
        _, config = driver.config("sandbox")
        regions = [r.name for r in config.regions]
        latencies = []
        for n in range(args.pushes):
            digest = digest_for(f"bench-{n}-{time.time()}")
            t0 = time.monotonic()
            driver.push_image(config, digest, tag=f"v{n + 1}.0.0")
            driver.wait_for_image(config, regions, f"{config.apps[0].repository}@{digest}", timeout=120)
            latencies.append(time.monotonic() - t0)
        lines.append(
            f"- `gcr` publish → all 3 regions Available, {len(latencies)} pushes: "
            f"median {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s "
            f"({', '.join(f'{x:.2f}' for x in latencies)})"
        )
        lines.append(f"- sandbox resident memory after the pushes: {stack.memory_mb():.0f} MiB")
        driver.wait_for_traffic_settled(config)
        cloudflare = stack.cloudflare
        cloudflare.reset_requests()
        driver.reconcile_traffic(config)
        idle = cloudflare.requests()
        lines.append(f"- idle reconcile: {idle['total']} Cloudflare requests, {idle['writes']} writes")
        cloudflare.reset()
        cloudflare.reset_requests()
        driver.reconcile_traffic(config)
        first = cloudflare.requests()
        lines.append(
            f"- reconcile into an empty Cloudflare account: {first['total']} requests, "
            f"{first['writes']} writes (1 monitor, 3 pools, 1 load balancer)"
        )
        lines += _black_holed_region(driver, config)
    finally:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)
    lines.append("")
    results = REPO / "bench" / "results.md"
    previous = (
        results.read_text() if results.exists() else "# Benchmark results\n\nNewest first. `python bench/run.py`\n\n"
    )
    head, _, rest = previous.partition("\n## ")
    results.write_text(head.rstrip() + "\n\n" + "\n".join(lines) + ("\n## " + rest if rest else ""))
    print("\n".join(lines))
    return 0


def _black_holed_region(driver: SandboxDriver, config: Any, rounds: int = 3) -> list[str]:
    """Publish → handled, for a traffic reconcile and a drift check, with every region up
    and with one black-holed (connections accepted, never answered), alternating."""
    silent = config.regions[-1].name
    timings: dict[tuple[str, bool], list[float]] = {}

    def drift_check() -> None:
        event_id = driver.publish(config, config.topics.drift, {"version": 1, "heal": False})
        wait_until(
            lambda: any(r["trigger_event_id"] == event_id for r in driver.drift_reports(config)), 120, "the report"
        )

    for _ in range(rounds):
        for blackholed in (False, True):
            driver.set_cluster_mode(config, silent, "blackhole" if blackholed else "normal")
            try:
                for name, run in (("traffic reconcile", lambda: driver.reconcile_traffic(config, timeout=120)),
                                  ("drift check", drift_check)):  # fmt: skip
                    t0 = time.monotonic()
                    run()
                    timings.setdefault((name, blackholed), []).append(time.monotonic() - t0)
            finally:
                driver.set_cluster_mode(config, silent, "normal")
    deadline = config.region_deadline_seconds
    lines = []
    for (name, blackholed), samples in timings.items():
        where = f"{silent} black-holed (deadline {deadline} s)" if blackholed else "every region up"
        lines.append(
            f"- {name}, 3 regions, {where}: publish → handled median {statistics.median(samples):.2f} s "
            f"(min {min(samples):.2f}, max {max(samples):.2f}, {len(samples)} alternating runs)"
        )
    return lines


def machine() -> str:
    """The machine line every results section starts with."""
    cpus = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    mem = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    return f"{cpus} CPUs, {int(mem.split()[1]) // 1024 // 1024} GiB, Python {platform.python_version()}"


if __name__ == "__main__":
    raise SystemExit(main())
