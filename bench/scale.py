"""Scale benchmarks at 1, 3 and 6 regions, geodeploy side by side with the seed's pipeline.

    python bench/scale.py [--regions 1,3,6] [--rounds 3]

For each region count, one sandbox (that many control planes) serves both, alternating
round by round:
- geodeploy: a push published on `gcr` → every region's Deployment Available, split into
  its own shares from the functions' logs: fan-out (publish → last region's apply start),
  Available → result published (per region, the worst), result → Cloudflare settled (last
  result → end of the reconcile that covered it);
- the seed's pipeline: its deploy job body per region, all regions at once: the manifests
  with the image substituted (the seed's `sed`), `kubectl apply -f`, then its wait loop
  (`kubectl rollout status`, `sleep 1`, until "successfully"); its gcloud set-up (auth,
  get-credentials) and job scheduling left out (bench/results.md prices them).
  It deploys the same objects into a namespace of its own, so the two never fight;
- Kubernetes requests per region deploy, counted in the fault proxy's audit log (every
  request on its way to the API server), watches apart, geodeploy against the seed;
- reconciles, region reads and Cloudflare requests per push.

At the largest region count, the central functions with one region black-holed
(connections accepted, never answered) against every region up, alternating: a traffic
reconcile, a drift check and a wave advance, each timed by the function's own
`event_handled` line (its seconds) and from publish to that line.

Then cold starts: per function, a fresh process importing what it needs and handling one
real event against the sandbox: wall time, import time beyond functions-framework, peak
RSS. Results are appended to bench/results.md. BENCH_VERBOSE=1 prints each push's
requests by User-Agent.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from run import machine  # noqa: E402  (bench/run.py, beside this script)

from sandbox.driver import SandboxDriver, digest_for, wait_until  # noqa: E402
from sandbox.stack import Sandbox  # noqa: E402

# Six regions, each with its own share of Cloudflare's geo regions.
SIX = [
    ("europe-west1", "europe-west1-b", ["WEU", "ME", "NAF"]),
    ("us-west1", "us-west1-a", ["WNAM", "NSAM"]),
    ("asia-east1", "asia-east1-a", ["SEAS", "NEAS", "OC"]),
    ("us-east1", "us-east1-b", ["ENAM", "SSAM"]),
    ("europe-north1", "europe-north1-a", ["EEU", "SAF"]),
    ("asia-south1", "asia-south1-a", ["SAS"]),
]
SEED_NAMESPACE = "seed"
PLACEHOLDER = "sha256:" + "0" * 64  # the seed's __IMAGE__, as a digest so the renderer takes it


def write_config(regions: int, directory: Path, *, waves: bool = False) -> Path:
    """The sandbox config with `regions` of SIX; with `waves`, the last region is a second
    wave (so the wave function has a first wave of regions - 1 to read)."""
    config = yaml.safe_load((REPO / "config" / "sandbox.yaml").read_text())
    config["regions"] = [
        {
            "name": name,
            "cluster": {"location": location, "name": f"shop-{name}"},
            "static_ip": {"name": f"shop-{name}", "address": f"192.0.2.{10 * (i + 1)}"},
            "cloudflare": {"pool": f"shop-{name}", "geo_regions": geo},
            **({"wave": 2 if i == regions - 1 else 1} if waves else {}),
        }
        for i, (name, location, geo) in enumerate(SIX[:regions])
    ]
    path = directory / f"scale{regions}{'-waves' if waves else ''}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--regions", default="1,3,6")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-black-holed", action="store_true")
    args = parser.parse_args()
    lines = [f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — scale, {platform.node()}, {machine()}", ""]
    lines.append("`python bench/scale.py` (medians, min–max in brackets, rounds alternating geodeploy and seed)")
    lines.append("")
    timings, counts, cold = [], [], []
    sizes = [int(n) for n in args.regions.split(",")]
    for count in sizes:
        (timing, counted), cold_rows = _one_size(count, args.rounds, want_cold=count == 3)
        timings.append(timing)
        counts.append(counted)
        cold += cold_rows
        print(timing, counted, sep="\n", flush=True)
    black_holed = [] if args.skip_black_holed else _black_holed(max(sizes), args.rounds)
    lines += [
        "| regions | geodeploy push → all Available | seed pipeline | fan-out: publish → last apply start "
        "| Available → result published | geodeploy's own (fan-out + Available → result) "
        "| last result → Cloudflare settled |",
        "|---|---|---|---|---|---|---|",
        *timings,
        "",
        "Requests per push, from the fault proxy's audit log by User-Agent (watch streams apart):",
        "",
        "| regions | Kubernetes requests per region deploy: geodeploy | the seed's kubectl | full reconciles "
        "| traffic's Deployment reads | wave function's reads | Cloudflare requests |",
        "|---|---|---|---|---|---|---|",
        *counts,
        "",
        *black_holed,
        *cold,
        "",
    ]
    results = REPO / "bench" / "results.md"
    head, _, rest = results.read_text().partition("\n## ")
    results.write_text(head.rstrip() + "\n\n" + "\n".join(lines) + ("\n## " + rest if rest else ""))
    print("\n".join(lines))
    return 0


def _one_size(count: int, rounds: int, *, want_cold: bool) -> tuple[str, list[str]]:
    state = Path(tempfile.mkdtemp(prefix=f"geodeploy-scale{count}-"))
    path = write_config(count, state)
    stack = Sandbox([path], state, progress=lambda _: None).start()
    try:
        driver = SandboxDriver(stack)
        _, config = driver.config(path.stem)
        regions = [r.name for r in config.regions]
        seed = SeedPipeline(stack, config, state)
        # A first push brings every region to a release (cold instances warm up); not counted.
        _geodeploy_push(driver, config, path, regions, "warm-up")
        seed.deploy(digest_for("seed-warm-up"))
        samples: dict[str, list[float]] = {}
        for n in range(rounds):
            for key, value in _geodeploy_push(driver, config, path, regions, f"round-{n}").items():
                samples.setdefault(key, []).append(value)
            started = time.monotonic()
            requests = seed.deploy(digest_for(f"seed-{n}-{time.time()}"))
            samples.setdefault("seed", []).append(time.monotonic() - started)
            samples.setdefault("seed_requests", []).append(requests)
        cold = _cold_starts(driver, config) if want_cold else []
    finally:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)

    def cell(key: str, unit: str = " s", digits: int = 2) -> str:
        values = samples[key]
        return f"{statistics.median(values):.{digits}f}{unit} ({min(values):.{digits}f}–{max(values):.{digits}f})"

    timing = (
        f"| {count} | {cell('push')} | {cell('seed')} | {cell('fan_out')} | {cell('available_to_result')} "
        f"| {cell('overhead')} | {cell('result_to_settled')} |"
    )
    counts = (
        f"| {count} | {cell('kube_requests', '', 1)} | {cell('seed_requests', '', 1)} | {cell('reconciles', '', 0)} "
        f"| {cell('region_reads', '', 0)} | {cell('wave_reads', '', 0)} | {cell('cloudflare', '', 0)} |"
    )
    return (timing, counts), cold


def _geodeploy_push(driver: SandboxDriver, config: Any, path: Path, regions: list[str], label: str) -> dict[str, float]:
    stack = driver.sandbox
    mark = driver.audit_mark()
    stack.cloudflare.reset_requests()
    logs_before = {fn: len(driver.log_events(path, fn)) for fn in _functions(config)}
    digest = digest_for(f"{label}-{time.time()}")
    image = f"{config.apps[0].repository}@{digest}"
    published = time.time()
    started = time.monotonic()
    driver.push_image(config, digest, tag="v1.0.0")
    driver.wait_for_image(config, regions, image, timeout=180)
    push = time.monotonic() - started
    driver.wait_for_traffic_settled(config, timeout=120)
    time.sleep(0.5)  # let the last log lines land
    new = {fn: driver.log_events(path, fn)[logs_before[fn] :] for fn in _functions(config)}

    def times(events: list[dict[str, Any]], name: str, **match: Any) -> list[float]:
        return [
            _epoch(e["time"])
            for e in events
            if e.get("event") == name
            and all(e.get(k) == v for k, v in match.items())
            and e.get("image", image) == image
        ]

    apply_starts, available, result_at = [], [], []
    for region in regions:
        events = new[f"{config.name}-deploy-{region}"]
        apply_starts += times(events, "release_claimed")
        complete = times(events, "rollout_progress", phase="complete")
        done = times(events, "result_published", status="succeeded")
        if complete and done:
            available.append(done[-1] - complete[-1])
            result_at.append(done[-1])
    traffic = new[f"{config.name}-reconcile-traffic"]
    reconciled = [_epoch(e["time"]) for e in traffic if e.get("event") == "traffic_reconciled"]
    last_result = max(result_at)
    settled = min((t for t in reconciled if t >= last_result), default=max(reconciled, default=last_result))
    # Who sent what, from the User-Agent each request carried (`geodeploy (<function>)`).
    by_agent: dict[str, list[dict[str, Any]]] = {}
    for region in regions:
        for e in driver.audit(config, region, since=mark):
            if "watch=true" not in str(e.get("query")):
                by_agent.setdefault(str(e.get("agent")), []).append(e)
    deploys = sum(len(by_agent.get(f"geodeploy ({config.name}-deploy-{r})", [])) for r in regions)
    if os.environ.get("BENCH_VERBOSE"):
        for agent, entries in sorted(by_agent.items()):
            print(agent, [f"{e['method']} {e['path'].rsplit('/', 2)[-2:]}" for e in entries], file=sys.stderr)
    region_reads = [
        e for e in by_agent.get(f"geodeploy ({config.name}-reconcile-traffic)", []) if "deployments" in e["path"]
    ]
    wave_reads = by_agent.get(f"geodeploy ({config.name}-on-deploy-result)", [])
    return {
        "push": push,
        "fan_out": max(apply_starts) - published,
        "available_to_result": max(available),
        "overhead": max(apply_starts) - published + max(available),
        "result_to_settled": settled - last_result,
        "reconciles": float(len(reconciled)),
        "region_reads": float(len(region_reads)),
        "wave_reads": float(len(wave_reads)),
        "cloudflare": float(stack.cloudflare.requests()["total"]),
        "kube_requests": deploys / len(regions),
    }


def _black_holed(count: int, rounds: int) -> list[str]:
    """Traffic reconcile, drift check and wave advance at `count` regions, every region up
    against one black-holed, alternating; timed by each function's `event_handled` line."""
    state = Path(tempfile.mkdtemp(prefix=f"geodeploy-blackholed{count}-"))
    path = write_config(count, state, waves=True)
    stack = Sandbox([path], state, progress=lambda _: None).start()
    try:
        driver = SandboxDriver(stack)
        _, config = driver.config(path.stem)
        regions = [r.name for r in config.regions]
        # A release in every region (wave 1, then wave 2): a first-wave result to replay.
        digest = digest_for(f"black-holed-{time.time()}")
        image = f"{config.apps[0].repository}@{digest}"
        driver.push_image(config, digest, tag="v1.0.0")
        driver.wait_for_image(config, regions, image, timeout=240)
        driver.wait_for_traffic_settled(config, timeout=120)
        first_wave = next(
            r for r in driver.results(config) if (r.get("wave"), r["status"], r.get("image")) == (1, "succeeded", image)
        )
        silent = config.regions_in_wave(1)[-1].name  # read by all three functions
        checks: dict[str, tuple[str, Any]] = {
            "traffic reconcile": (f"{config.name}-reconcile-traffic", None),
            "drift check": (f"{config.name}-check-drift", (config.topics.drift, {"version": 1, "heal": False})),
            "wave advance": (f"{config.name}-on-deploy-result", (config.topics.results, first_wave)),
        }
        samples: dict[tuple[str, bool], list[tuple[float, float]]] = {}
        for _ in range(rounds):
            for blackholed in (False, True):
                driver.set_cluster_mode(config, silent, "blackhole" if blackholed else "normal")
                try:
                    for name, (function, message) in checks.items():
                        started = time.monotonic()
                        if message is None:  # a nudge until one is not coalesced into an earlier reconcile
                            event_id = driver.reconcile_traffic(config, timeout=120)["event_id"]
                        else:
                            event_id = driver.publish(config, *message)
                        own = _handled_seconds(driver, path, function, event_id)
                        samples.setdefault((name, blackholed), []).append((own, time.monotonic() - started))
                finally:
                    driver.set_cluster_mode(config, silent, "normal")
        deadline = config.region_deadline_seconds
    finally:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} s ({min(values):.2f}–{max(values):.2f})"

    lines = [
        f"Central functions at {count} regions, {silent} black-holed (connections accepted, never answered) "
        f"against every region up, {rounds} alternating rounds; per-region deadline {deadline} s, target "
        f"≤ {deadline + 1} s black-holed. Own time: the function's `event_handled` seconds (the first "
        "delivery's, for an event that is then redelivered); publish → handled adds the emulator's push and the "
        "log polling.",
        "",
        "| function | every region up: own | publish → handled | one black-holed: own | publish → handled |",
        "|---|---|---|---|---|",
    ]
    for name in checks:
        up, down = samples[(name, False)], samples[(name, True)]
        lines.append(
            f"| {name} | {cell([o for o, _ in up])} | {cell([w for _, w in up])} "
            f"| {cell([o for o, _ in down])} | {cell([w for _, w in down])} |"
        )
    print("\n".join(lines), flush=True)
    return [*lines, ""]


def _handled_seconds(driver: SandboxDriver, path: Path, function: str, event_id: str) -> float:
    """The seconds of the first `event_handled` line `function` logged for the event."""
    line = wait_until(
        lambda: next(
            (
                e
                for e in driver.log_events(path, function)
                if e.get("event") == "event_handled" and e.get("event_id") == event_id
            ),
            None,
        ),
        120,
        f"{function}'s handling of {event_id}",
    )
    return float(line["seconds"])


class SeedPipeline:
    """The seed's deploy job per region, all regions at once, through the fault proxy (so
    its requests are counted in the same audit log as geodeploy's)."""

    def __init__(self, stack: Sandbox, config: Any, state: Path) -> None:
        from shared.contracts import ImageRef
        from shared.rendering import render_release

        self.stack, self.config, self.state = stack, config, state
        self.regions = [r.name for r in config.regions]
        app = config.apps[0]
        self.kubeconfigs: dict[str, Path] = {}
        self.templates: dict[str, list[dict[str, Any]]] = {}
        for region in config.regions:
            objects = render_release(config, app, region, ImageRef(app.repository, PLACEHOLDER)).objects
            self.templates[region.name] = [_into_seed_namespace(o) for o in objects]
            self.kubeconfigs[region.name] = self._kubeconfig(region)

    def _kubeconfig(self, region: Any) -> Path:
        cluster = self.stack.clusters.clusters[region.cluster.name]
        endpoint = self.stack.proxy_endpoints[region.cluster.name]
        ca = base64.b64encode(cluster.ca_pem.encode()).decode()
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": f"https://{endpoint}", "certificate-authority-data": ca}}],
            "users": [{"name": "u", "user": {"token": self.stack.access_token}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
        }
        path = self.state / f"seed-{region.name}.kubeconfig"
        path.write_text(json.dumps(kubeconfig))
        return path

    def deploy(self, digest: str) -> float:
        """Deploys to every region at once; returns the Kubernetes requests per region."""
        image = f"{self.config.apps[0].repository}@{digest}"
        mark = self.stack.fault_proxy.audit_mark()
        threads = [threading.Thread(target=self._job, args=(region, image)) for region in self.regions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        entries = [
            e
            for e in self.stack.fault_proxy.audit(since=mark)
            if str(e.get("agent")).startswith("kubectl") and "watch=true" not in str(e.get("query"))
        ]
        return len(entries) / len(self.regions)

    def _job(self, region: str, image: str) -> None:
        manifest = self.state / f"seed-{region}.yaml"
        placeholder = f"{self.config.apps[0].repository}@{PLACEHOLDER}"
        documents = json.loads(json.dumps(self.templates[region]).replace(placeholder, image))  # the seed's sed
        manifest.write_text(yaml.safe_dump_all(documents))
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfigs[region])}
        kubectl = ["kubectl", "--cache-dir", str(self.state / f"kubecache-{region}")]
        subprocess.run([*kubectl, "apply", "-f", str(manifest)], env=env, check=True, capture_output=True)
        # The seed's wait: `kubectl rollout status` (which watches until the rollout ends),
        # again after `sleep 1` until its output says "successfully".
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            status = subprocess.run(
                [*kubectl, "rollout", "status", f"--namespace={SEED_NAMESPACE}", "deploy/shop", "--timeout=170s"],
                env=env,
                capture_output=True,
                text=True,
            )
            if "successfully" in status.stdout:
                return
            time.sleep(1)
        raise RuntimeError(f"seed pipeline: {region} did not roll out")


def _into_seed_namespace(obj: dict[str, Any]) -> dict[str, Any]:
    copy = json.loads(json.dumps(obj))
    if copy["kind"] == "Namespace":
        copy["metadata"]["name"] = SEED_NAMESPACE
    else:
        copy["metadata"]["namespace"] = SEED_NAMESPACE
    return copy


def _cold_starts(driver: SandboxDriver, config: Any) -> list[str]:
    """Each function in a fresh interpreter (bytecode cached, as a deployed image has it)
    handling one real event; imports beyond functions-framework from -X importtime."""
    from shared.topology import functions_of

    region = config.regions[0].name
    app = config.apps[0]

    def deploy_request(n: int) -> dict[str, Any]:
        """A new release each run, so each run really deploys."""
        from shared.contracts import ImageRef, Trigger
        from shared.planning import plan_region_requests

        digest = digest_for(f"cold-{n}-{time.time()}")
        [request] = plan_region_requests(
            config,
            app,
            release_id=f"cold-{digest[7:19]}",
            image=ImageRef(app.repository, digest),
            trigger=Trigger(type="push", event_id=f"cold-{n}"),
            issued_at=datetime.now(UTC),
            regions=[region],
        )
        return dict(json.loads(request.to_bytes()))

    events: dict[str, tuple[str, Any]] = {
        "on_image_pushed": (
            config.topics.images,
            lambda n: {"action": "INSERT", "digest": f"{app.repository}@{digest_for(f'p{n}{time.time()}')}"},
        ),
        "deploy_region": (config.deploy_topic(region), deploy_request),
        "reconcile_traffic": (config.topics.results, lambda n: driver.results(config)[-1]),
        "check_drift": (config.topics.drift, lambda n: {"version": 1, "heal": False}),
        "on_deploy_result": (config.topics.results, lambda n: driver.results(config)[-1]),
    }
    lines = [
        "Cold start per function (3 regions): a fresh process imports functions-framework and main.py, "
        "then handles one real event against the sandbox; median of 3.",
        "",
        "| function | event | wall | imports beyond functions-framework | first event (with its lazy imports) "
        "| peak RSS |",
        "|---|---|---|---|---|---|",
    ]
    for entry, (topic, make) in events.items():
        fn = next(f for f in functions_of(config) if f.entry_point == entry and f.region in (None, region))
        runs = []
        for n in range(3):
            started = time.monotonic()
            done = driver.fresh_instance(config, fn.name, topic, make(n), python_flags=("-X", "importtime"))
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            figures["wall"] = time.monotonic() - started
            figures["imports"] = _imports_after_ff(done.stderr)
            runs.append(figures)

        def med(key: str, runs: list[dict[str, Any]] = runs) -> float:
            return statistics.median(r[key] for r in runs)

        lines.append(
            f"| {entry} | {topic} | {med('wall'):.2f} s | {med('imports'):.2f} s | {med('event'):.2f} s "
            f"| {med('rss_mib'):.0f} MiB |"
        )
    return lines


def _imports_after_ff(importtime: str) -> float:
    """Seconds of top-level imports after functions_framework's, from -X importtime."""
    total, after = 0, False
    for line in importtime.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if name.startswith("  "):
            continue  # nested: counted in its parent
        name = name.strip()
        if after:
            total += int(cumulative.strip())
        if name == "functions_framework":
            after = True
    return total / 1e6


def _functions(config: Any) -> list[str]:
    from shared.topology import functions_of

    return [fn.name for fn in functions_of(config)]


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


if __name__ == "__main__":
    raise SystemExit(main())
