"""What every command starts from: the environment (a sandbox's, when asked), the config,
the app, and the clients, each built on first use exactly as the functions build theirs."""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.errors import UsageError

if TYPE_CHECKING:
    import argparse

    from shared.adapters.cloudflare_lb import CloudflareLB
    from shared.adapters.gke import ClusterConnector
    from shared.adapters.kube import KubeClient
    from shared.adapters.pubsub import Publisher
    from shared.adapters.secrets import SecretReader
    from shared.config import App, Config, Region
    from shared.contracts import ImageRef
    from shared.settings import Settings

__all__ = ["Context", "build_context"]

DEFAULT_CONFIG = "geodeploy.yaml"
SANDBOX_STATE = "sandbox.json"


def config_path(arg: str | None) -> Path:
    return Path(arg or os.environ.get("GEODEPLOY_CONFIG") or DEFAULT_CONFIG).resolve()


def apply_sandbox(directory: str, config: Path) -> None:
    """Points this process at a local sandbox: its `env` for `config` goes into os.environ
    before any client exists (the Google libraries read it when they are created)."""
    state_file = Path(directory) / SANDBOX_STATE
    try:
        state: dict[str, Any] = json.loads(state_file.read_text())
    except OSError:
        raise UsageError(f"no sandbox is recorded in {directory} ({SANDBOX_STATE} is missing; is it up?)") from None
    except ValueError:
        raise UsageError(f"{state_file} is not valid JSON") from None
    envs = {str(Path(p).resolve()): env for p, env in (state.get("env") or {}).items()}
    env = envs.get(str(config))
    if env is None:
        known = ", ".join(sorted(envs)) or "none"
        raise UsageError(f"the sandbox in {directory} does not run {config} (it runs: {known})")
    os.environ.update({k: str(v) for k, v in env.items()})
    # The SDK would prefer these over the token from Secret Manager (the adapter clears
    # them too; a sandbox must never be handed real Cloudflare credentials).
    for name in [k for k in os.environ if k.startswith("CLOUDFLARE_")]:
        del os.environ[name]


class Context:
    def __init__(self, path: Path, config: Config, app: App) -> None:
        self.config_path = path
        self.config = config
        self.app = app

    # --- what the arguments name -----------------------------------------------------------

    def region(self, name: str) -> Region:
        try:
            return self.config.region(name)
        except KeyError:
            known = ", ".join(r.name for r in self.config.regions)
            raise UsageError(f"no region named {name!r} in {self.config_path.name} (regions: {known})") from None

    def regions(self, names: list[str] | None) -> list[Region]:
        """The named regions in config order, or every region."""
        if not names:
            return list(self.config.regions)
        if len(set(names)) != len(names):
            raise UsageError("a region is named more than once")
        wanted = {self.region(n).name for n in names}
        return [r for r in self.config.regions if r.name in wanted]

    def image(self, text: str, option: str = "--image") -> ImageRef:
        """`sha256:<hex>` (in the app's repository) or `<repository>@sha256:<hex>`."""
        from shared.contracts import ImageRef

        try:
            return ImageRef.parse_for(text, self.app.repository)
        except ValueError:
            raise UsageError(
                f"{option}: expected sha256:<64 hex> or <repository>@sha256:<64 hex>, got {text!r} "
                "(tags are not resolved: pin the digest)"
            ) from None

    @property
    def steered(self) -> bool:
        """Whether Cloudflare's load balancer steers this app's users."""
        return self.config.cloudflare.app == self.app.name

    # --- clients, built on first use ----------------------------------------------------------

    @cached_property
    def settings(self) -> Settings:
        from shared.settings import Settings

        return Settings.from_environment()

    @cached_property
    def clusters(self) -> ClusterConnector:
        from shared.adapters.gke import ClusterConnector

        return ClusterConnector(
            self.config.project, field_manager=self.config.field_manager, gke_endpoint=self.settings.gke_endpoint
        )

    def connect(self, region: Region) -> KubeClient:
        return self.clusters.connect(region.cluster)

    @cached_property
    def publisher(self) -> Publisher:
        from shared.adapters.pubsub import Publisher

        return Publisher(self.config.project)

    @cached_property
    def secrets(self) -> SecretReader:
        from shared.adapters.secrets import SecretReader

        return SecretReader(self.config.project, endpoint=self.settings.secret_manager_endpoint)

    @cached_property
    def cloudflare(self) -> CloudflareLB:
        """As functions/reconcile_traffic.py builds it: the token only from Secret Manager."""
        from shared.adapters.cloudflare_lb import CloudflareLB

        cf = self.config.cloudflare
        secrets = self.secrets
        return CloudflareLB(
            lambda: secrets.read(cf.api_token_secret),
            account_id=cf.account_id,
            zone_id=cf.zone_id,
            base_url=self.settings.cloudflare_base_url,
            on_auth_failure=lambda: secrets.forget(cf.api_token_secret),
        )


def build_context(args: argparse.Namespace) -> Context:
    from shared.config import load_config

    path = config_path(args.config)
    config = load_config(path)  # ConfigError (exit 2) names the file and the bad key
    sandbox = args.sandbox or os.environ.get("GEODEPLOY_SANDBOX")
    if sandbox:
        apply_sandbox(sandbox, path)
    return Context(path, config, _choose_app(config, args.app, path))


def _choose_app(config: Config, name: str | None, path: Path) -> App:
    names = [a.name for a in config.apps]
    if name is None:
        if len(names) > 1:
            raise UsageError(f"{path.name} has several apps ({', '.join(names)}): choose one with --app")
        return config.apps[0]
    if name not in names:
        raise UsageError(f"no app named {name!r} in {path.name} (apps: {', '.join(names)})")
    return config.app(name)
