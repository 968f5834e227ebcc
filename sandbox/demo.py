"""The scripted demo (`make demo`): geodeploy's main jobs on the local sandbox.

  1. push v1 of `shop` → all three regions run it, their Cloudflare pools take traffic
  2. push a broken image of `catalog` (two waves) → Europe fails, is rolled back and
     drained, then restored; wave 2 is never touched
  3. push v2 of `shop`, then one rollback message → every region back on v1
  4. a hand edit in one cluster → the drift check reports it, then heals it

It prints a per-region timeline as things happen and a summary, and stops everything it
started unless --keep is given.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.driver import SandboxDriver, digest_for, wait_until
from sandbox.kwok_stages import broken_digest
from sandbox.stack import Sandbox
from shared.config import Config
from shared.rollout import evaluate_rollout

REPO = Path(__file__).resolve().parent.parent
CONFIGS = [REPO / "config" / "sandbox.yaml", REPO / "config" / "sandbox-waves.yaml"]


@dataclass
class Timeline:
    driver: SandboxDriver
    started: float = field(default_factory=time.monotonic)
    labels: dict[str, str] = field(default_factory=dict)  # image → "v1"
    _seen: dict[str, str] = field(default_factory=dict)
    _results: int = 0

    def say(self, text: str) -> None:
        print(f"{time.monotonic() - self.started:7.1f}s  {text}", flush=True)

    def label(self, image: str | None) -> str:
        return self.labels.get(image or "", (image or "-").rsplit(":", 1)[-1][:10])

    def follow(self, config: Config, done: Callable[[], bool], what: str, timeout: float = 120) -> float:
        """Prints every change of the regions, results and pools until `done()` holds."""
        begun = time.monotonic()

        def step() -> bool:
            self._print_changes(config)
            return done()

        wait_until(step, timeout, what, interval=0.4)
        self._print_changes(config)  # what happened in the last interval
        return time.monotonic() - begun

    def _print_changes(self, config: Config) -> None:
        app = config.apps[0]
        for region in config.regions:
            deployment = self.driver.deployment(config, region.name)
            state = evaluate_rollout(deployment, app.manifests.min_available)
            line = (
                f"{self.label(state.image):>8}  {state.phase.value:<11} {state.available}/{state.desired} available"
                if deployment
                else "not deployed"
            )
            key = f"{app.name}/{region.name}"
            if self._seen.get(key) != line:
                self._seen[key] = line
                self.say(f"{app.name:<8} {region.name:<13} {line}")
        pools = {p["name"]: p["enabled"] for p in self.driver.sandbox.cloudflare.state()["pools"]}
        for region in config.regions:
            enabled = pools.get(region.cloudflare.pool)
            key = f"pool/{region.cloudflare.pool}"
            text = "absent" if enabled is None else ("serving" if enabled else "DRAINED")
            if self._seen.get(key) != text:
                self._seen[key] = text
                self.say(f"{'cloudflare':<8} {region.cloudflare.pool:<24} {text}")
        results = self.driver.results(config)
        for result in results[self._results :]:
            extra = f" → rolled back to {self.label(result['rolled_back_to'])}" if result.get("rolled_back_to") else ""
            self.say(
                f"{result['app']:<8} {result['region']:<13} result {result['status']} "
                f"{self.label(result.get('image'))} {result.get('reason', '')}{extra}"
            )
        self._results = len(results)


def run(driver: SandboxDriver, timeline: Timeline) -> list[tuple[str, bool, float]]:
    _, shop = driver.config("sandbox")
    _, catalog = driver.config("sandbox-waves")
    checks: list[tuple[str, bool, float]] = []
    every = [r.name for r in shop.regions]

    def image(config: Config, label: str, digest: str) -> str:
        ref = f"{config.apps[0].repository}@{digest}"
        timeline.labels[ref] = label
        return ref

    def runs(config: Config, ref: str, regions: list[str]) -> Callable[[], bool]:
        return lambda: all(driver.running_image(config, r) == ref for r in regions)

    def pools_serving(config: Config) -> bool:
        pools = {p["name"]: p["enabled"] for p in driver.sandbox.cloudflare.state()["pools"]}
        return all(pools.get(r.cloudflare.pool) is True for r in config.regions)

    # 1 ----------------------------------------------------------------------------------
    timeline.say("== 1. Artifact Registry push: shop v1 ==")
    v1 = image(shop, "v1", digest_for("demo-shop-v1"))
    driver.push_image(shop, v1.split("@")[1], tag="v1.0.0")
    took = timeline.follow(shop, lambda: runs(shop, v1, every)() and pools_serving(shop), "shop v1 everywhere")
    checks.append(("push v1 → every region runs it, every pool serving", True, took))

    # 2 ----------------------------------------------------------------------------------
    timeline.say("== 2. catalog ships in two waves: Europe first, then the Americas and Asia ==")
    good = image(catalog, "good", digest_for("demo-catalog-good"))
    driver.push_image(catalog, good.split("@")[1], tag="v1.0.0")
    timeline.follow(catalog, lambda: runs(catalog, good, every)() and pools_serving(catalog), "catalog good")
    timeline.say("-- push a broken image of catalog (its pods never become Ready) --")
    bad = image(catalog, "broken", broken_digest("demo"))
    driver.push_image(catalog, bad.split("@")[1], tag="v2.0.0")

    def recovered() -> bool:
        return any(
            r["image"] == bad and r["status"] == "rolled_back" for r in driver.results(catalog)
        ) and pools_serving(catalog)

    took = timeline.follow(catalog, recovered, "the automatic rollback", timeout=150)
    wave2_untouched = all(
        all(r.image != bad for r in driver.release_record(catalog, region).history)
        for region in ("us-west1", "asia-east1")
    )
    drained = any(
        e["method"] == "PATCH" and (e["body"] or {}).get("enabled") is False
        for e in driver.sandbox.cloudflare.requests()["log"]
    )
    checks.append(("broken image: wave 1 failed, rolled back, drained then restored", drained, took))
    checks.append(("broken image never reached wave 2", wave2_untouched, 0.0))

    # 3 ----------------------------------------------------------------------------------
    timeline.say("== 3. shop v2, then a one-message rollback ==")
    v2 = image(shop, "v2", digest_for("demo-shop-v2"))
    driver.push_image(shop, v2.split("@")[1], tag="v2.0.0")
    timeline.follow(shop, runs(shop, v2, every), "shop v2 everywhere")
    timeline.say('-- publish {"version": 1, "action": "rollback", "app": "shop", "target": "previous"} --')
    driver.publish(
        shop,
        shop.topics.control,
        {"version": 1, "action": "rollback", "app": "shop", "target": "previous", "requested_by": "demo"},
    )
    took = timeline.follow(shop, runs(shop, v1, every), "shop back on v1")
    checks.append(("rollback message → every region back on v1", True, took))

    # 4 ----------------------------------------------------------------------------------
    timeline.say("== 4. someone edits us-west1 by hand: kubectl set image ==")
    timeline.labels[image(shop, "hand-edit", digest_for("demo-hand-edit"))] = "hand-edit"
    driver.kubectl(
        shop,
        "us-west1",
        "-n",
        "shop",
        "set",
        "image",
        "deployment/shop",
        f"app={shop.apps[0].repository}@{digest_for('demo-hand-edit')}",
    )
    timeline.follow(shop, lambda: driver.running_image(shop, "us-west1") not in (None, v1), "the hand edit")
    report = _drift_report(driver, shop, heal=False)
    drifted = [d for r in report["regions"] for d in r["differences"]]
    for d in drifted:
        timeline.say(
            f"drift    us-west1      {d['object']} {d['path']}: expected {timeline.label(d['expected'])}, "
            f"live {timeline.label(d['live'])}"
        )
    timeline.say("-- drift check with healing on --")
    healed = _drift_report(driver, shop, heal=True)
    took = timeline.follow(shop, runs(shop, v1, every), "the healed region")
    ok = bool(drifted) and any(r["healed"] for r in healed["regions"])
    checks.append(("hand edit → drift reported with its field path, then healed", ok, took))
    return checks


def _drift_report(driver: SandboxDriver, config: Config, heal: bool) -> dict:
    event_id = driver.publish(config, config.topics.drift, {"version": 1, "apps": ["shop"], "heal": heal})
    return wait_until(
        lambda: next((r for r in driver.drift_reports(config) if r["trigger_event_id"] == event_id), None),
        90,
        "the drift report",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the sandbox running afterwards")
    parser.add_argument("--state-dir", type=Path, help="where the sandbox keeps state and logs")
    args = parser.parse_args(argv)
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="geodeploy-demo-"))
    print(f"starting the sandbox in {state_dir} (3 regions: europe-west1, us-west1, asia-east1)...", flush=True)
    began = time.monotonic()
    stack = Sandbox(CONFIGS, state_dir).start()
    print(f"sandbox up in {time.monotonic() - began:.1f} s, {stack.memory_mb():.0f} MiB\n", flush=True)
    driver = SandboxDriver(stack)
    timeline = Timeline(driver)
    checks: list[tuple[str, bool, float]] = []
    try:
        checks = run(driver, timeline)
    except TimeoutError as e:
        checks.append((str(e), False, 0.0))
    finally:
        _summary(driver, timeline, checks)
        if args.keep:
            stack.detach()
            print(
                f"\nthe sandbox keeps running: GEODEPLOY_SANDBOX={state_dir} geodeploy --config "
                f"config/sandbox.yaml status\nstop it with: python -m sandbox --state-dir {state_dir} down"
            )
        else:
            stack.stop()
            print("\nsandbox stopped; nothing left running")
    return 0 if checks and all(ok for _, ok, _ in checks) else 1


def _summary(driver: SandboxDriver, timeline: Timeline, checks: list[tuple[str, bool, float]]) -> None:
    print("\n== summary ==")
    for text, ok, took in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}" + (f"  ({took:.1f} s)" if took else ""))
    print("\n  final state:")
    for config in driver.configs.values():
        for region in config.regions:
            record = driver.release_record(config, region.name)
            current = record.current
            running = timeline.label(driver.running_image(config, region.name))
            last = f"{current.kind} {timeline.label(current.image)} ({current.trigger.type})" if current else "-"
            print(f"  {config.apps[0].name:<8} {region.name:<13} running {running:<8} last release: {last}")


if __name__ == "__main__":
    sys.exit(main())
