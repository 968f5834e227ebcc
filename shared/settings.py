"""Process settings: the one module that reads the environment.

Production needs only GEODEPLOY_CONFIG (defaulting to geodeploy.yaml beside main.py) and,
for the regional function, GEODEPLOY_REGION. The endpoint overrides exist for the local
sandbox, whose stand-ins speak the real REST contracts on 127.0.0.1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from shared.config import Config, load_config

__all__ = ["Settings", "load_settings"]

_DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "geodeploy.yaml"


@dataclass(frozen=True)
class Settings:
    config_path: Path
    region: str | None  # only deploy_region has one
    gke_endpoint: str | None  # e.g. http://127.0.0.1:9100 (sandbox); None: container.googleapis.com
    secret_manager_endpoint: str | None
    cloudflare_base_url: str | None  # None: https://api.cloudflare.com/client/v4
    service: str | None = None  # K_SERVICE, Cloud Run's name for this function: its User-Agent

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            config_path=Path(env.get("GEODEPLOY_CONFIG") or _DEFAULT_CONFIG),
            region=env.get("GEODEPLOY_REGION") or None,
            gke_endpoint=env.get("GEODEPLOY_GKE_ENDPOINT") or None,
            secret_manager_endpoint=env.get("GEODEPLOY_SECRET_MANAGER_ENDPOINT") or None,
            cloudflare_base_url=env.get("GEODEPLOY_CLOUDFLARE_BASE_URL") or None,
            service=env.get("K_SERVICE") or None,
        )


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    return Settings.from_environment()


@lru_cache(maxsize=1)
def load_instance_config() -> Config:
    """The config this function instance runs with, read once per instance."""
    return load_config(load_settings().config_path)
