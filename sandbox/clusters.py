"""Local Kubernetes clusters, one per region: real kube-apiserver, kube-controller-manager,
kube-scheduler and etcd, started by `kwokctl --runtime binary` from the binaries that
sandbox/controlplane/build.sh built, with kwok faking the nodes and the kubelets.

Each API server also accepts the sandbox's identities' bearer tokens (a static token
file), the access tokens the Google stand-in hands out: a function authenticates exactly
as on GKE, with its own Google access token, and is the Kubernetes user GKE would make of
it (its service account's email), authorized by RBAC (kwokctl enables it). Only the
sandbox's set-up uses the admin client certificate of kwokctl's kubeconfig (group
system:masters), to create the clusters and apply that RBAC.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from sandbox.kwok_stages import stages

__all__ = ["KwokClusters", "LocalCluster", "ensure_binaries"]

REPO = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO / "sandbox" / "controlplane" / "build.sh"


def ensure_binaries(quiet: bool = False) -> Path:
    """Builds the control-plane binaries if missing (progress on stderr); returns their dir."""
    found = subprocess.run([str(BUILD_SCRIPT), "--print"], capture_output=True, text=True)
    if found.returncode == 0:
        return Path(found.stdout.strip())
    if not quiet:
        print("building the local control-plane binaries (first use only)...", file=sys.stderr, flush=True)
    built = subprocess.run(
        [str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=None if not quiet else subprocess.DEVNULL, text=True
    )
    if built.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} failed with exit code {built.returncode}")
    return Path(built.stdout.strip().splitlines()[-1])


@contextmanager
def _machine_lock(name: str) -> Iterator[None]:
    cache = Path(os.environ.get("GEODEPLOY_CACHE", Path.home() / ".cache" / "geodeploy"))
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass(frozen=True)
class LocalCluster:
    name: str
    kubeconfig: Path
    endpoint: str  # host:port, as GKE reports a cluster endpoint
    ca_pem: str

    @property
    def pki_dir(self) -> Path:
        """kwokctl's PKI of the cluster: ca.crt, ca.key and the certificates it signed."""
        return self.kubeconfig.parent / "pki"


class KwokClusters:
    """Creates, stops, starts and deletes the sandbox's clusters."""

    def __init__(self, bin_dir: Path, state_dir: Path, users: dict[str, str] | None = None) -> None:
        self._bin = bin_dir
        self._state = state_dir
        self._workdir = state_dir / "kwok"
        self._users = users or {}  # bearer token -> Kubernetes user name
        self.clusters: dict[str, LocalCluster] = {}

    def _env(self) -> dict[str, str]:
        return {**os.environ, "KWOK_WORKDIR": str(self._workdir)}

    def _kwokctl(self, *args: str, timeout: float = 180) -> str:
        done = subprocess.run(
            [str(self._bin / "kwokctl"), *args], env=self._env(), capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"kwokctl {' '.join(args)} failed:\n{done.stderr[-2000:]}")
        return done.stdout

    def _write_config(self) -> Path:
        self._state.mkdir(parents=True, exist_ok=True)
        tokens = self._state / "kube-tokens.csv"
        tokens.write_text("".join(f"{token},{user},{user}\n" for token, user in self._users.items()))
        tokens.chmod(0o600)
        kwokctl_config = {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokctlConfiguration",
            "componentsPatches": [
                {"name": "kube-apiserver", "extraArgs": [{"key": "token-auth-file", "value": str(tokens)}]},
                # One instance of each: no leader election, so a restarted region works at
                # once instead of waiting ~15 s for its old leases to lapse (seen here).
                # GKE's HPA syncs every 15 s; a short period keeps sandbox tests quick.
                {
                    "name": "kube-controller-manager",
                    "extraArgs": [
                        {"key": "horizontal-pod-autoscaler-sync-period", "value": "2s"},
                        {"key": "leader-elect", "value": "false"},
                    ],
                },
                {"name": "kube-scheduler", "extraArgs": [{"key": "leader-elect", "value": "false"}]},
                # No node leases: a restarted kwok controller (a new identity) would not
                # manage the nodes whose leases the old one held until they lapse, leaving
                # new pods Pending for ~50 s (seen here). Node status heartbeats (every 20 s,
                # sandbox/kwok_stages.py) keep the nodes Ready instead.
                {"name": "kwok-controller", "extraArgs": [{"key": "node-lease-duration-seconds", "value": "0"}]},
            ],
        }
        path = self._state / "kwokctl.yaml"
        path.write_text(yaml.safe_dump_all([kwokctl_config, *stages()], sort_keys=False))
        return path

    def create(self, names: list[str], nodes: int = 3) -> dict[str, LocalCluster]:
        config = self._write_config()

        def create_one(name: str) -> LocalCluster:
            b = self._bin
            self._kwokctl(
                "create",
                "cluster",
                "--name",
                name,
                "--runtime",
                "binary",
                "--config",
                str(config),
                "--kube-apiserver-binary",
                str(b / "kube-apiserver"),
                "--kube-controller-manager-binary",
                str(b / "kube-controller-manager"),
                "--kube-scheduler-binary",
                str(b / "kube-scheduler"),
                "--kwok-controller-binary",
                str(b / "kwok"),
                "--etcd-binary",
                str(b / "etcd"),
                "--wait",
                "120s",
            )
            self._kwokctl("scale", "node", "--name", name, "--replicas", str(nodes))
            return self.describe(name)

        # One at a time, machine-wide: concurrent kwokctl runs (even of two sandboxes)
        # pick the same free ports (seen here).
        with _machine_lock("kwokctl-create"):
            for name in names:
                self.clusters[name] = create_one(name)
        return dict(self.clusters)

    def describe(self, name: str) -> LocalCluster:
        """The cluster as kwokctl's files describe it now."""
        cluster_dir = self._workdir / "clusters" / name
        kubeconfig = cluster_dir / "kubeconfig.yaml"
        server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        return LocalCluster(
            name=name,
            kubeconfig=kubeconfig,
            endpoint=server.removeprefix("https://"),
            ca_pem=(cluster_dir / "pki" / "ca.crt").read_text(),
        )

    def stop(self, name: str) -> None:
        """Stops a region's whole control plane: its API no longer answers."""
        self._kwokctl("stop", "cluster", "--name", name)

    def start(self, name: str) -> None:
        self._kwokctl("start", "cluster", "--name", name, "--wait", "120s")

    def delete_all(self) -> None:
        self.delete(list(self.clusters))

    def delete(self, names: list[str]) -> None:
        """Deletes clusters by name (also ones another process created in this state dir)."""
        for name in names:
            try:
                self._kwokctl("delete", "cluster", "--name", name, timeout=60)
            finally:
                self.clusters.pop(name, None)

    def kubectl(
        self, name: str, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Runs the machine's kubectl against one cluster as its admin (the sandbox's set-up,
        and tests acting as a human with admin rights would)."""
        env = {**os.environ, "KUBECONFIG": str(self.clusters[name].kubeconfig)}
        return subprocess.run(
            ["kubectl", *args], env=env, input=stdin, capture_output=True, text=True, check=check, timeout=60
        )
