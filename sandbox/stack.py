"""The whole local sandbox for one or more geodeploy configs: the Google, Cloudflare and
webhook-receiver stand-ins, one real control plane per region behind the fault proxy, the Pub/Sub
emulator with the topics and push subscriptions of `shared.topology`, and one
functions-framework process per function (the regional one once per region).

The GKE stand-in hands out the fault proxy's address for each cluster (with the
cluster's own CA), so every call a function makes to an API server crosses the proxy
(`sandbox.fault_proxy`); kubectl in the tests uses the kubeconfig and goes direct.

Functions serve as Cloud Run does with `max_instance_request_concurrency = 1`: one
request per worker process (THREADS=1), and a few workers (WORKERS) standing in for
scale-out; the serialized reconcile_traffic gets one.

Every function runs as its production identity: its own Google credentials (so the
OAuth stand-in issues it its own token), IAM checked by the Google stand-in against the
grants infra/ would create (`sandbox.iam`), and in each cluster the Kubernetes user GKE
would map it to, with the RBAC `geodeploy rbac` renders. The CLI and the tests act as
the operator, the clusters' admin.

Everything it starts is recorded in <state_dir>/sandbox.json, so `python -m sandbox down`
can stop a sandbox that another process started.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.clusters import KwokClusters, LocalCluster, ensure_binaries
from sandbox.emulator import PubSubEmulator, ensure_push_subscription, ensure_topic
from sandbox.fault_proxy import FaultProxyControl
from sandbox.functions_host import FunctionsHost, FunctionSpec
from sandbox.iam import iam_grants
from sandbox.processes import ManagedProcess
from sandbox.standins.cloudflare import CloudflareStandinControl
from sandbox.standins.google_apis import GoogleStandinControl, write_authorized_user_credentials
from sandbox.standins.webhooks import WebhookStandinControl
from shared.config import Config, load_config
from shared.topology import (
    RUNTIME_ENVIRONMENT,
    dead_letter_topic_for,
    functions_of,
    service_account_email,
    subscription_name,
)
from shared.topology import FunctionSpec as DeployedFunction

__all__ = ["Sandbox", "stop_recorded_sandbox"]

REPO = Path(__file__).resolve().parent.parent
KUSTOMIZE_BUILD = REPO / "sandbox" / "kustomize" / "build.sh"
STATE_FILE = "sandbox.json"
_LISTENING = r"listening on (http://\S+)"
# Worker processes per function: Cloud Run instances of concurrency 1. Production scales
# out to max_instances (infra/locals.tf: 1 for reconcile-traffic, 2 to 10 for the
# others); here a few are enough to run requests side by side, and each costs ~60 MiB.
SCALE_OUT_WORKERS = 2
# The person at the CLI (and the tests acting as one): the clusters' admin, bound to
# cluster-admin by the set-up, and allowed every Google call the functions make.
OPERATOR = "sandbox-operator@geodeploy.local"
OPERATOR_PERMISSIONS = ("container.clusters.get", "secretmanager.versions.access")


@dataclass(frozen=True)
class Identity:
    email: str
    refresh_token: str  # in its credentials file; the stand-in answers it with access_token
    access_token: str


def workers_for(function: DeployedFunction) -> int:
    """How many instances (worker processes) the sandbox runs of a function."""
    return 1 if function.serialized else SCALE_OUT_WORKERS


class Sandbox:
    def __init__(self, configs: list[Path], state_dir: Path, *, progress: Callable[[str], None] | None = None) -> None:
        self.config_paths = [Path(c).resolve() for c in configs]
        render_kustomize_sources(self.config_paths)
        self.configs = [load_config(c) for c in self.config_paths]
        self.state_dir = Path(state_dir).resolve()
        self._progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
        emails = [service_account_email(c, fn.identity) for c in self.configs for fn in functions_of(c)]
        self.identities = {
            email: Identity(email, "refresh-" + secrets.token_hex(16), "ya29.sandbox-" + secrets.token_hex(16))
            for email in [OPERATOR, *emails]
        }
        self.access_token = self.identities[OPERATOR].access_token
        self.credentials: dict[str, Path] = {}  # email -> its credentials file
        self.cloudflare_token = "cf-" + secrets.token_hex(20)
        self._standins: dict[str, ManagedProcess] = {}
        self.urls: dict[str, str] = {}
        self.clusters: KwokClusters | None = None
        self.proxy_endpoints: dict[str, str] = {}  # cluster name -> host:port of the fault proxy
        self.emulator: PubSubEmulator | None = None
        self.functions: dict[Path, FunctionsHost] = {}
        # The HTTP functions (the status page) behind Cloud Run's IAM check: config -> name -> URL.
        self.services: dict[Path, dict[str, str]] = {}
        self.timings: dict[str, float] = {}

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> Sandbox:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._timed("binaries", self._ensure_binaries)
            self._timed("stand-ins", self._start_standins)
            self._timed("clusters", self._start_clusters)
            self._timed("fault proxy", self._start_fault_proxy)
            self._timed("pubsub emulator", self._start_emulator)
            self._timed("functions", self._start_functions)
            self._timed("cloud run ingress", self._start_ingress)
            self._timed("subscriptions", self._create_subscriptions)
        except BaseException:
            self.stop()
            raise
        self._write_state()
        return self

    def stop(self) -> None:
        """Stops everything that was started, whatever state start() reached."""
        for host in self.functions.values():
            host.stop()
        if self.emulator is not None:
            self.emulator.stop()
        if self.clusters is not None:
            self.clusters.delete_all()
        for process in self._standins.values():
            process.stop()
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)

    def _marked_env(self) -> dict[str, str]:
        # The marker lets memory_mb() find every process of this sandbox.
        return {**os.environ, "GEODEPLOY_SANDBOX": str(self.state_dir)}

    def _timed(self, what: str, step: Callable[[], None]) -> None:
        started = time.monotonic()
        self._progress(f"sandbox: starting {what}...")
        step()
        self.timings[what] = round(time.monotonic() - started, 2)
        self._progress(f"sandbox: {what} ready in {self.timings[what]:.1f} s")

    def _ensure_binaries(self) -> None:
        self.bin_dir = ensure_binaries()

    def _start_standins(self) -> None:
        grants = [g.as_json() for path in self.config_paths for g in iam_grants(path)]
        grants += [
            {"member": OPERATOR, "permission": permission, "resource": f"projects/{project}"}
            for project in {c.project for c in self.configs}
            for permission in OPERATOR_PERMISSIONS
        ]
        state = {
            "access_token": self.access_token,
            "identities": [vars(i) for i in self.identities.values()],
            "iam": grants,
            "enforce_iam": True,
        }
        google_state = self.state_dir / "google-standin.json"
        google_state.write_text(json.dumps(state))
        google_state.chmod(0o600)
        # The token docs/infra.md asks for: pools and monitors on the account, load
        # balancers on the zone, nothing else.
        policies = [
            {
                "permission_groups": ["Load Balancing: Monitors and Pools Write"],
                "resources": sorted({f"com.cloudflare.api.account.{c.cloudflare.account_id}" for c in self.configs}),
            },
            {
                "permission_groups": ["Load Balancers Write"],
                "resources": sorted({f"com.cloudflare.api.account.zone.{c.cloudflare.zone_id}" for c in self.configs}),
            },
        ]
        policies_file = self.state_dir / "cloudflare-token-policies.json"
        policies_file.write_text(json.dumps({self.cloudflare_token: policies}))
        policies_file.chmod(0o600)
        argv = {
            "google": ["-m", "sandbox.standins.google_apis", "--state-file", str(google_state), "--require-auth"],
            "cloudflare": [
                "-m",
                "sandbox.standins.cloudflare",
                "--token-policies-file",
                str(policies_file),
                "--plan",
                "non-enterprise",
                # Every request geodeploy sends and every answer is checked against
                # Cloudflare's published schema; tests/conftest.py fails on a violation.
                "--check-contract",
            ],
            "webhooks": ["-m", "sandbox.standins.webhooks"],
        }
        for name, args in argv.items():
            process = ManagedProcess(
                f"standin-{name}",
                [sys.executable, *args, "--port", "0"],
                cwd=REPO,
                env=self._marked_env(),
                log_path=self.state_dir / "logs" / f"standin-{name}.log",
            )
            self._standins[name] = process.start()
        for name, process in self._standins.items():
            self.urls[name] = process.wait_for_line(_LISTENING, timeout=30).group(1)
        self.google = GoogleStandinControl(self.urls["google"])
        self.cloudflare = CloudflareStandinControl(self.urls["cloudflare"])
        (self.state_dir / "identities").mkdir(parents=True, exist_ok=True)
        for identity in self.identities.values():
            self.credentials[identity.email] = write_authorized_user_credentials(
                self.state_dir / "identities" / f"{identity.email}.json",
                self.urls["google"] + "/token",
                refresh_token=identity.refresh_token,
            )
        self.credentials_file = self.credentials[OPERATOR]
        for config in self.configs:
            self.google.add_secret_version(
                f"projects/{config.project}/secrets/{config.cloudflare.api_token_secret}", self.cloudflare_token
            )
        self._add_webhook_secrets()

    def _add_webhook_secrets(self) -> None:
        """Each webhook's URL points at the receiver stand-in (`/hooks/<config name>-<webhook
        name>`), each json webhook's signing key is a fresh random one, as an operator adds them."""
        self.webhooks = WebhookStandinControl(self.urls["webhooks"])
        for config in self.configs:
            for webhook in config.notifications.webhooks:
                url = f"{self.urls['webhooks']}/hooks/{webhook_hook(config, webhook.name)}"
                self.google.add_secret_version(f"projects/{config.project}/secrets/{webhook.url_secret}", url)
                if webhook.signing_secret is not None:
                    name = f"projects/{config.project}/secrets/{webhook.signing_secret}"
                    if name not in self.google.state()["secrets"]:  # webhooks may share a key
                        self.google.add_secret_version(name, secrets.token_hex(32))

    def _start_clusters(self) -> None:
        # GKE names a Google identity's Kubernetes user by its email.
        users = {i.access_token: i.email for i in self.identities.values()}
        self.clusters = KwokClusters(self.bin_dir, self.state_dir, users)
        self.clusters.create(sorted({r.cluster.name for c in self.configs for r in c.regions}))
        self._apply_rbac()

    def _apply_rbac(self) -> None:
        """As each cluster's admin: geodeploy's RBAC for every config, and the operator's
        cluster-admin binding. Server-side, so no client-side annotation lands on the
        Namespaces the functions then apply."""
        import yaml

        from shared.rbac import render_rbac

        assert self.clusters is not None
        operator = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "sandbox-operator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": OPERATOR}],
        }
        for name in self.clusters.clusters:
            objects = [operator]
            for config in self.configs:
                for region in config.regions:
                    if region.cluster.name == name:
                        objects += render_rbac(config, region)
            self.clusters.kubectl(
                name,
                "apply",
                "--server-side",
                "--field-manager=geodeploy-rbac",
                "-f",
                "-",
                stdin=yaml.safe_dump_all(objects),
            )
        self._wait_for_rbac()

    def _wait_for_rbac(self, timeout: float = 30) -> None:
        """The API server authorizes from an informer's cache: a binding just applied takes
        a moment to count. Wait until each region's deployer may read its record."""
        from shared.releases import record_name

        assert self.clusters is not None
        for config in self.configs:
            for region in config.regions:
                app = config.apps[0]
                probe = ("auth", "can-i", "get", f"configmaps/{record_name(app.name)}", "-n", app.namespace)
                user = f"--as={service_account_email(config, f'deploy-{region.name}')}"
                deadline = time.monotonic() + timeout
                while self.clusters.kubectl(region.cluster.name, *probe, user, check=False).stdout.strip() != "yes":
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the RBAC of {region.cluster.name} did not take effect in {timeout:.0f} s")
                    time.sleep(0.2)

    def _start_fault_proxy(self) -> None:
        assert self.clusters is not None
        spec = {
            "cert_dir": str(self.state_dir / "fault-proxy"),
            "clusters": [
                {"name": c.name, "upstream": c.endpoint, "pki_dir": str(c.pki_dir)}
                for c in self.clusters.clusters.values()
            ],
        }
        spec_file = self.state_dir / "fault-proxy.json"
        spec_file.write_text(json.dumps(spec, indent=2))
        process = ManagedProcess(
            "fault-proxy",
            [sys.executable, "-m", "sandbox.fault_proxy", "--spec", str(spec_file), "--port", "0"],
            cwd=REPO,
            env=self._marked_env(),
            log_path=self.state_dir / "logs" / "fault-proxy.log",
        )
        self._standins["fault_proxy"] = process.start()
        self.urls["fault_proxy"] = process.wait_for_line(_LISTENING, timeout=30).group(1)
        self.fault_proxy = FaultProxyControl(self.urls["fault_proxy"])
        self.proxy_endpoints = {name: c["endpoint"] for name, c in self.fault_proxy.clusters().items()}
        for config in self.configs:  # configs naming the same cluster share it
            for region in config.regions:
                cluster = self.clusters.clusters[region.cluster.name]
                # The functions reach the API server through the proxy; its certificate
                # chains to the cluster CA, which GKE reports as for the real endpoint.
                self.google.register_cluster(
                    region.cluster.resource_name(config.project), self.proxy_endpoints[cluster.name], cluster.ca_pem
                )

    def _start_emulator(self) -> None:
        projects = {c.project for c in self.configs}
        self.emulator = PubSubEmulator(sorted(projects)[0], state_dir=self.state_dir)
        self.emulator.start()

    def env_for(self, config_path: Path) -> dict[str, str]:
        """The environment a function or the CLI needs to run against this sandbox."""
        assert self.emulator is not None
        return {
            "GEODEPLOY_CONFIG": str(Path(config_path).resolve()),
            "GEODEPLOY_GKE_ENDPOINT": self.urls["google"],
            "GEODEPLOY_SECRET_MANAGER_ENDPOINT": self.urls["google"],
            "GEODEPLOY_CLOUDFLARE_BASE_URL": self.urls["cloudflare"] + "/client/v4",
            "GOOGLE_APPLICATION_CREDENTIALS": str(self.credentials_file),
            "GOOGLE_CLOUD_PROJECT": load_config(config_path).project,
            "PUBSUB_EMULATOR_HOST": self.emulator.host,
        }

    def _start_functions(self) -> None:
        # The SDK prefers these over the token it is given (research notes): never inherit them.
        inherited = {k: v for k, v in self._marked_env().items() if not k.startswith("CLOUDFLARE_")}
        specs_by_path: dict[Path, list[FunctionSpec]] = {}
        for path, config in zip(self.config_paths, self.configs, strict=True):
            host = FunctionsHost(
                REPO / "main.py", state_dir=self.state_dir / path.stem, base_env={**inherited, **self.env_for(path)}
            )
            self.functions[path] = host
            specs_by_path[path] = [
                FunctionSpec(
                    name=fn.name,
                    target=fn.entry_point,
                    env={
                        **RUNTIME_ENVIRONMENT,  # as infra/functions.tf sets it
                        # its own identity, as Cloud Functions gives it its service account
                        "GOOGLE_APPLICATION_CREDENTIALS": str(
                            self.credentials[service_account_email(config, fn.identity)]
                        ),
                        **({"GEODEPLOY_REGION": fn.region} if fn.region else {}),
                    },
                    threads=1,  # Cloud Run: max_instance_request_concurrency = 1
                    workers=workers_for(fn),
                )
                for fn in functions_of(config)
            ]
        for path, host in self.functions.items():
            host.start(specs_by_path[path], timeout=60)

    def _start_ingress(self) -> None:
        """Each HTTP function behind its own Cloud Run front door (sandbox/cloud_run.py):
        only a caller whose identity infra/ grants run.invoker on it gets through."""
        for path, config in zip(self.config_paths, self.configs, strict=True):
            for fn in (f for f in functions_of(config) if f.http):
                service = f"projects/{config.project}/locations/{fn.location}/services/{fn.name}"
                argv = ["-m", "sandbox.cloud_run", "ingress", "--upstream", self.functions[path].url(fn.name)]
                argv += ["--iam", self.urls["google"], "--service", service, "--port", "0"]
                process = ManagedProcess(
                    f"ingress-{fn.name}",
                    [sys.executable, *argv],
                    cwd=REPO,
                    env=self._marked_env(),
                    log_path=self.state_dir / "logs" / f"ingress-{fn.name}.log",
                )
                self._standins[f"ingress-{fn.name}"] = process.start()
                url = process.wait_for_line(_LISTENING, timeout=30).group(1)
                self.services.setdefault(path, {})[fn.name] = url

    def _create_subscriptions(self) -> None:
        assert self.emulator is not None
        for path, config in zip(self.config_paths, self.configs, strict=True):
            host = self.functions[path]
            ensure_topic(self.emulator.host, config.project, config.topics.drift_reports)
            for fn in functions_of(config):
                for topic in fn.topics:
                    ensure_topic(self.emulator.host, config.project, topic)
                    ensure_push_subscription(
                        self.emulator.host,
                        config.project,
                        subscription_name(fn, topic),
                        topic,
                        host.push_endpoint(fn.name, config.project, topic),
                        ack_deadline_seconds=min(600, fn.timeout_seconds + 30),
                        min_backoff_seconds=1,
                        max_backoff_seconds=10,
                        dead_letter_topic=dead_letter_topic_for(config, topic),
                        max_delivery_attempts=5,
                    )

    # --- what tests, the demo and the CLI use ------------------------------------------

    def cluster_for(self, config: Config, region: str) -> LocalCluster:
        assert self.clusters is not None
        return self.clusters.clusters[config.region(region).cluster.name]

    def function_log(self, config_path: Path, function: str) -> Path:
        return self.functions[Path(config_path).resolve()].log_path(function)

    def kill_function(self, config_path: Path, function: str) -> list[int]:
        """SIGKILLs the function's workers; returns the fresh workers' pids once they serve."""
        return self.functions[Path(config_path).resolve()].kill(function)

    def down_function(self, config_path: Path, function: str) -> None:
        """SIGKILLs the function's whole process group and leaves it down: pushes to it
        fail and Pub/Sub keeps retrying them, until restart_function brings it back."""
        self.functions[Path(config_path).resolve()].process(function).kill()

    def restart_function(self, config_path: Path, function: str) -> None:
        """SIGKILLs the function's whole process group and starts it again on its port."""
        self.functions[Path(config_path).resolve()].restart(function)
        self._write_state()  # its process group changed

    def stop_cluster(self, name: str) -> None:
        assert self.clusters is not None
        self.clusters.stop(name)

    def start_cluster(self, name: str) -> None:
        """Starts a stopped control plane again; the proxy keeps forwarding to it because
        kwokctl brings the API server back on the same port (checked here)."""
        assert self.clusters is not None
        before = self.clusters.clusters[name].endpoint
        self.clusters.start(name)
        after = self.clusters.describe(name).endpoint
        if after != before:
            raise RuntimeError(f"{name} came back on {after}, not {before}: the fault proxy forwards to {before}")

    def _write_state(self) -> None:
        assert self.clusters is not None and self.emulator is not None
        groups = [p.pid for p in self._standins.values()]
        groups += [p.pid for host in self.functions.values() for p in (host.process(n) for n in host.urls)]
        if self.emulator.process is not None:
            groups.append(self.emulator.process.pid)
        state = {
            "state_dir": str(self.state_dir),
            "bin_dir": str(self.bin_dir),
            "process_groups": [g for g in groups if g],
            "clusters": {
                name: {
                    "endpoint": c.endpoint,
                    "proxy_endpoint": self.proxy_endpoints.get(name),
                    "kubeconfig": str(c.kubeconfig),
                }
                for name, c in self.clusters.clusters.items()
            },
            "urls": self.urls,
            "env": {str(p): self.env_for(p) for p in self.config_paths},
            "functions": {str(p): host.urls for p, host in self.functions.items()},
            # What an operator opens (python -m sandbox proxy): behind the IAM check.
            "services": {str(p): urls for p, urls in self.services.items()},
            "timings": self.timings,
        }
        (self.state_dir / STATE_FILE).write_text(json.dumps(state, indent=2))

    def detach(self) -> None:
        """Keeps everything running after this process exits (see `python -m sandbox down`)."""
        from sandbox.processes import detach_all

        detach_all()

    def memory_mb(self) -> float:
        """Resident memory of every sandbox process (clusters included), in MiB."""
        return round(sum(_rss_kib(pid) for pid in sandbox_pids(self.state_dir)) / 1024, 1)


def webhook_hook(config: Config, webhook: str) -> str:
    """The receiver stand-in's name for a config's webhook (configs may share names)."""
    return f"{config.name}-{webhook}"


def render_kustomize_sources(config_paths: list[Path]) -> None:
    """Renders the configs' kustomize sources beside their kustomizations, as Cloud Build
    does before a deploy (kustomize built from the Go module proxy, once per machine)."""
    import subprocess

    from cli.commands.kustomize import render_kustomize_sources as render
    from shared.manifest_sources import KUSTOMIZE

    wanted = [
        p for p in config_paths if any(a.source.kind == KUSTOMIZE for a in load_config(p, read_rendered=False).apps)
    ]
    if not wanted:
        return
    build = subprocess.run([str(KUSTOMIZE_BUILD)], capture_output=True, text=True, check=True, timeout=600)
    for path in wanted:
        render(path, build.stdout.strip())


def stop_recorded_sandbox(state_dir: Path) -> bool:
    """Stops a sandbox started by another process (`python -m sandbox down`)."""
    path = Path(state_dir) / STATE_FILE
    if not path.exists():
        return False
    state: dict[str, Any] = json.loads(path.read_text())
    for group in state["process_groups"]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGTERM)
    KwokClusters(Path(state["bin_dir"]), Path(state["state_dir"])).delete(list(state["clusters"]))
    path.unlink()
    return True


def sandbox_pids(state_dir: Path) -> list[int]:
    """Processes whose command line or working files mention the sandbox's state dir."""
    marker = str(state_dir)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline or marker in environ:
            pids.append(int(entry.name))
    return pids


def _rss_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) if match else 0
