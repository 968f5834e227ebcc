"""Drives a running sandbox the way a user and Artifact Registry would: publish pushes and
control messages, read what runs in each region with kubectl, read published results
and the functions' logs. Used by the sandbox tests, the demo and the benchmarks.

It also breaks things on the functions' real path: fault rules and cluster modes at the
fault proxy in front of each API server (`faults`, `add_fault`, `set_cluster_mode`,
held requests, the audit log), killed function workers and restarted control planes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandbox.emulator import ensure_pull_subscription, publish, pull
from sandbox.fault_proxy import FaultProxyControl
from sandbox.stack import REPO, Sandbox, webhook_hook
from sandbox.standins.webhooks import WebhookStandinControl
from shared.config import Config
from shared.releases import ReleaseRecord

__all__ = ["SandboxDriver", "digest_for", "wait_until"]


def digest_for(label: str) -> str:
    """A stable, valid digest for a test image named `label`."""
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


def wait_until[T](probe: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
    """Polls `probe` until it returns something truthy; fails with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T = probe()
    while not last:
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
        time.sleep(interval)
        last = probe()
    return last


class SandboxDriver:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._results: dict[str, list[dict[str, Any]]] = {}
        self._reports: dict[str, list[dict[str, Any]]] = {}
        self._result_ids: dict[str, list[str]] = {}
        for path, config in self.configs.items():
            host = self._emulator_host
            ensure_pull_subscription(host, config.project, f"observer-{path.stem}-results", config.topics.results)
            ensure_pull_subscription(host, config.project, f"observer-{path.stem}-drift", config.topics.drift_reports)

    @property
    def configs(self) -> dict[Path, Config]:
        return dict(zip(self.sandbox.config_paths, self.sandbox.configs, strict=True))

    def config(self, stem: str) -> tuple[Path, Config]:
        return next((p, c) for p, c in self.configs.items() if p.stem == stem)

    @property
    def _emulator_host(self) -> str:
        assert self.sandbox.emulator is not None
        return self.sandbox.emulator.host

    # --- publishing --------------------------------------------------------------------

    def push_image(self, config: Config, digest: str, tag: str | None = None, app: str | None = None) -> str:
        """Publishes what Artifact Registry publishes on `gcr` for a push."""
        repository = config.app(app or config.apps[0].name).repository
        message: dict[str, str] = {"action": "INSERT", "digest": f"{repository}@{digest}"}
        if tag is not None:
            message["tag"] = f"{repository}:{tag}"
        return self.publish(config, config.topics.images, message)

    def publish(self, config: Config, topic: str, message: dict[str, Any] | bytes) -> str:
        data = message if isinstance(message, bytes) else json.dumps(message).encode()
        return publish(self._emulator_host, config.project, topic, data)

    # --- reading the regions -------------------------------------------------------------

    def kubectl(self, config: Config, region: str, *args: str, check: bool = True) -> str:
        assert self.sandbox.clusters is not None
        cluster = config.region(region).cluster.name
        return self.sandbox.clusters.kubectl(cluster, *args, check=check).stdout

    def get(self, config: Config, region: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        out = self.kubectl(
            config,
            region,
            "-n",
            namespace,
            "get",
            kind,
            name,
            "-o",
            "json",
            "--ignore-not-found",
            "--show-managed-fields",
        )
        return json.loads(out) if out.strip() else None

    def deployment(self, config: Config, region: str, app: str | None = None) -> dict[str, Any] | None:
        a = config.app(app or config.apps[0].name)
        return self.get(config, region, "deployment", a.name, a.namespace)

    def running_image(self, config: Config, region: str, app: str | None = None) -> str | None:
        """The image of a Deployment whose rollout is done and Available, else None."""
        d = self.deployment(config, region, app)
        if d is None:
            return None
        status = d.get("status", {})
        available = any(c["type"] == "Available" and c["status"] == "True" for c in status.get("conditions", []))
        done = d["metadata"]["generation"] <= status.get("observedGeneration", 0) and status.get(
            "updatedReplicas", 0
        ) == status.get("replicas", -1) == status.get("availableReplicas", -2)
        image: str = d["spec"]["template"]["spec"]["containers"][0]["image"]
        return image if available and done else None

    def release_record(self, config: Config, region: str, app: str | None = None) -> ReleaseRecord:
        a = config.app(app or config.apps[0].name)
        cm = self.get(config, region, "configmap", f"geodeploy-releases-{a.name}", a.namespace)
        return ReleaseRecord.model_validate_json(cm["data"]["releases.json"]) if cm else ReleaseRecord()

    def wait_for_image(self, config: Config, regions: list[str], image: str, timeout: float = 90) -> None:
        def all_running() -> bool:
            return all(self.running_image(config, r) == image for r in regions)

        wait_until(all_running, timeout, f"{image} running and Available in {regions}")

    def stop_region(self, config: Config, region: str) -> None:
        self.sandbox.stop_cluster(self.cluster_name(config, region))

    def start_region(self, config: Config, region: str) -> None:
        self.sandbox.start_cluster(self.cluster_name(config, region))

    def restart_region(self, config: Config, region: str) -> None:
        """Stops the region's whole control plane and starts it again (same port, same data)."""
        self.stop_region(config, region)
        self.start_region(config, region)

    # --- faults on the functions' path ------------------------------------------------------

    @property
    def faults(self) -> FaultProxyControl:
        """The fault proxy between the functions and every API server (by cluster name)."""
        return self.sandbox.fault_proxy

    @staticmethod
    def cluster_name(config: Config, region: str) -> str:
        return config.region(region).cluster.name

    def add_fault(self, config: Config, region: str | None, action: str, **rule: Any) -> int:
        """A rule for one region's cluster (every cluster with region None); returns its id."""
        cluster = None if region is None else self.cluster_name(config, region)
        return self.faults.add_rule(action, cluster=cluster, **rule)

    def clear_faults(self) -> None:
        """Every rule removed (held requests go on), every cluster back to normal."""
        self.faults.clear()

    def set_cluster_mode(self, config: Config, region: str, mode: str) -> None:
        """Mode "normal", "blackhole" (connections accepted, never answered) or "refuse_connections"."""
        self.faults.set_mode(self.cluster_name(config, region), mode)

    def held_requests(self, config: Config | None = None, region: str | None = None) -> list[dict[str, Any]]:
        cluster = None if config is None or region is None else self.cluster_name(config, region)
        return self.faults.held(cluster)

    def wait_for_held(
        self, config: Config, region: str, method: str | None = None, path: str | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        """The first request a `hold` rule keeps in that region (path: a regex)."""
        return self.faults.wait_for_held(self.cluster_name(config, region), method, path, timeout)

    def release(self, held_id: int | None = None, drop: bool = False) -> None:
        self.faults.release(held_id, drop=drop)

    def audit(self, config: Config, region: str, since: int = 0) -> list[dict[str, Any]]:
        """Every request the functions (or this process) sent to the region's API server."""
        return self.faults.audit(self.cluster_name(config, region), since)

    def audit_mark(self) -> int:
        """Pass as `since` to `audit` to see only the requests that come after now."""
        return self.faults.audit_mark()

    def kill_function(self, config: Config | Path, function: str) -> list[int]:
        """SIGKILLs every worker of a function (e.g. f"{config.name}-deploy-us-west1"): what
        it was handling fails and Pub/Sub redelivers. Returns the fresh workers' pids."""
        return self.sandbox.kill_function(self._path(config), function)

    def restart_function(self, config: Config | Path, function: str) -> None:
        """SIGKILLs the function's arbiter and workers and starts it again on its port."""
        self.sandbox.restart_function(self._path(config), function)

    def down_function(self, config: Config | Path, function: str) -> None:
        """Takes a function down until restart_function: its pushes fail and are retried."""
        self.sandbox.down_function(self._path(config), function)

    def fresh_instance(
        self,
        config: Config,
        function: str,
        topic: str,
        message: dict[str, Any],
        python_flags: tuple[str, ...] = (),
        bundle: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Handles one event in a new process of `function` (its entry point, identity and
        environment), as a second Cloud Run instance or a cold start would; see
        sandbox/fresh_instance.py for what it prints. Raises if the handler raised.
        `bundle`: a config file (its manifest files beside it) to run with instead of the
        sandbox's own, as the first instance of a newly deployed function version."""
        from shared.topology import functions_of, service_account_email

        path = self._path(config)
        spec = next(f for f in functions_of(config) if f.name == function)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDFLARE_")}
        env.update(self.sandbox.env_for(path))
        if bundle is not None:
            env["GEODEPLOY_CONFIG"] = str(bundle.resolve())
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(
            self.sandbox.credentials[service_account_email(config, spec.identity)]
        )
        if spec.region:
            env["GEODEPLOY_REGION"] = spec.region
        now = datetime.now(UTC)
        event = {
            "entry": spec.entry_point,
            "id": f"fresh-{function}-{now.timestamp()}",
            "source": f"//pubsub.googleapis.com/projects/{config.project}/topics/{topic}",
            "time": now.isoformat().replace("+00:00", "Z"),
            "data": base64.b64encode(json.dumps(message).encode()).decode(),
        }
        return subprocess.run(
            [sys.executable, *python_flags, "-m", "sandbox.fresh_instance", json.dumps(event)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )

    def _path(self, config: Config | Path) -> Path:
        if isinstance(config, Path):
            return config.resolve()
        return next(p for p, c in self.configs.items() if c is config or c.name == config.name)

    # --- results, reports and logs --------------------------------------------------------

    def results(self, config: Config) -> list[dict[str, Any]]:
        """Every deploy result published so far (kept across calls)."""
        return self._drain(config, "results", self._results)

    def drift_reports(self, config: Config) -> list[dict[str, Any]]:
        return self._drain(config, "drift", self._reports)

    def _drain(self, config: Config, kind: str, buffer: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        path = next(p for p, c in self.configs.items() if c is config)
        seen = buffer.setdefault(path.stem, [])
        for message in pull(self._emulator_host, config.project, f"observer-{path.stem}-{kind}", 100, timeout=0.5):
            seen.append(json.loads(message.data))
            if kind == "results":
                self._result_ids.setdefault(path.stem, []).append(message.message_id)
        return list(seen)

    def wait_for_traffic_settled(self, config: Config, timeout: float = 60) -> None:
        """Waits until every deploy result published so far has been reconciled into
        Cloudflare (each result triggers one reconcile)."""
        path = next(p for p, c in self.configs.items() if c is config)
        function = f"{config.name}-reconcile-traffic"

        def settled() -> bool:
            self.results(config)
            done = {
                e.get("event_id")
                for e in self.log_events(path, function)
                if e.get("event") in ("traffic_reconciled", "traffic_reconcile_coalesced")
            }
            return set(self._result_ids.get(path.stem, [])) <= done

        wait_until(settled, timeout, "every deploy result reconciled into Cloudflare")

    def wait_for_result(
        self,
        config: Config,
        match: Callable[[dict[str, Any]], bool],
        timeout: float = 90,
        what: str = "a deploy result",
    ) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((r for r in self.results(config) if match(r)), None)

        return wait_until(found, timeout, what)

    def reconcile_traffic(self, config: Config, timeout: float = 60) -> dict[str, Any]:
        """Triggers one traffic reconcile (as a deploy result would) and returns its log line."""
        path = next(p for p, c in self.configs.items() if c is config)
        nudge = {
            "version": 1, "release_id": "traffic-nudge", "app": config.cloudflare.app, "region": config.regions[0].name,
            "kind": "deploy", "status": "progressing", "trigger": {"type": "manual", "event_id": "nudge"},
            "issued_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:00Z",
        }  # fmt: skip
        function = f"{config.name}-reconcile-traffic"
        for _ in range(5):
            event_id = self.publish(config, config.topics.results, nudge)

            def handled(event_id: str = event_id) -> dict[str, Any] | None:
                return next(
                    (
                        e
                        for e in self.log_events(path, function)
                        if e.get("event") in ("traffic_reconciled", "traffic_reconcile_coalesced")
                        and e.get("event_id") == event_id
                    ),
                    None,
                )

            line = wait_until(handled, timeout, f"the reconcile of event {event_id}")
            if line["event"] == "traffic_reconciled":
                return line
            # Covered by a reconcile that was queued ahead of it: ask for one of our own.
        raise TimeoutError("every nudge was coalesced into an earlier reconcile")

    def edit_cloudflare_pool(self, config: Config, name: str, fields: dict[str, Any]) -> None:
        """What someone clicking in Cloudflare's dashboard does: a PATCH of the pool."""
        pool = next(p for p in self.sandbox.cloudflare.state()["pools"] if p["name"] == name)
        self.edit_cloudflare(config, f"pools/{pool['id']}", fields)

    def edit_cloudflare(self, config: Config, what: str, fields: dict[str, Any]) -> None:
        """A hand edit of one load-balancing object (`pools/<id>`, `monitors/<id>`)."""
        import urllib.request

        base = self.sandbox.urls["cloudflare"] + f"/client/v4/accounts/{config.cloudflare.account_id}"
        request = urllib.request.Request(
            f"{base}/load_balancers/{what}",
            data=json.dumps(fields).encode(),
            method="PATCH",
            headers={"Authorization": f"Bearer {self.sandbox.cloudflare_token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            if json.loads(response.read())["success"] is not True:
                raise RuntimeError(f"the edit of {what} was refused: {fields}")

    # --- the webhook receiver (what the notify function posted) ------------------------------

    @property
    def webhooks(self) -> WebhookStandinControl:
        return self.sandbox.webhooks

    def webhook_requests(self, config: Config, webhook: str) -> list[dict[str, Any]]:
        """Every request the receiver got for a webhook of the config, oldest first."""
        return self.webhooks.received(webhook_hook(config, webhook))

    def set_webhook_answer(self, config: Config, webhook: str, status: int = 200, delay_seconds: float = 0) -> None:
        """How the receiver answers that webhook from now on (500: failing; a delay: hanging)."""
        self.webhooks.set_answer(webhook_hook(config, webhook), status, delay_seconds)

    def secret_value(self, config: Config, secret: str) -> str:
        """The latest enabled version of a secret in the Secret Manager stand-in."""
        versions = self.sandbox.google.state()["secrets"][f"projects/{config.project}/secrets/{secret}"]
        return str([v for v in versions if v["enabled"]][-1]["data"])

    def connector(self, config: Config) -> Any:
        """A ClusterConnector of this process, reaching the sandbox's clusters the way the
        functions do: GKE stand-in for the endpoint, a Google access token for the API."""
        import os

        from shared.adapters.gke import ClusterConnector

        os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = str(self.sandbox.credentials_file)
        return ClusterConnector(
            config.project, field_manager=config.field_manager, gke_endpoint=self.sandbox.urls["google"]
        )

    def log_events(self, config_path: Path, function: str) -> list[dict[str, Any]]:
        """The JSON log lines a function wrote (what Cloud Logging would show)."""
        events = []
        for line in self.sandbox.function_log(config_path, function).read_text().splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
        return events
