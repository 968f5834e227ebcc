"""Running the `geodeploy` CLI as an operator (or a CI job) does: a subprocess per command,
pointed at the session sandbox with --sandbox and --config, in a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sandbox.driver import digest_for, wait_until

REPO = Path(__file__).resolve().parents[2]


def run_cli(
    *args: str,
    sandbox: Any = None,
    config_path: Path | None = None,
    user: str = "cli-test",
    extra: tuple[str, ...] | list[str] = (),
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Runs `python -m cli` in a clean environment: only --sandbox says where things are."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEODEPLOY_", "PUBSUB_", "CLOUDFLARE_"))}
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    env["USER"] = user
    argv = [sys.executable, "-m", "cli"]
    if sandbox is not None:
        argv += ["--sandbox", str(sandbox.sandbox.state_dir)]
    if config_path is not None:
        argv += ["--config", str(config_path)]
    argv += list(extra)
    return subprocess.run(
        [*argv, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def image_of(config: Any, label: str) -> str:
    return f"{config.apps[0].repository}@{digest_for(label)}"


def release_everywhere(sandbox: Any, config: Any, label: str, tag: str = "v1.0.0") -> str:
    """Pushes an image as Artifact Registry would; returns once every region runs it and
    has recorded it as succeeded (so drift checks do not see a release in progress)."""
    image = image_of(config, label)
    regions = [r.name for r in config.regions]
    sandbox.push_image(config, digest_for(label), tag=tag)
    sandbox.wait_for_image(config, regions, image, timeout=120)

    def recorded() -> bool:
        currents = [sandbox.release_record(config, r).current for r in regions]
        return all(c is not None and c.image == image and c.status == "succeeded" for c in currents)

    wait_until(recorded, 60, f"{image} recorded as succeeded everywhere")
    return image
