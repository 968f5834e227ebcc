"""`kustomize`: render every `source: {kustomize: …}` app of the config with the kustomize
binary, one rendering per region's kustomization, into the file a function loads
(KUSTOMIZE_OUTPUT, beside the kustomization). Run where kustomize is (a laptop, Cloud
Build, the sandbox), before the functions are deployed: functions never run it."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

from cli.context import config_path
from cli.errors import OperationFailed, UsageError
from cli.exit_codes import ExitCode
from cli.output import Output
from cli.views import say

__all__ = ["render_kustomize_sources", "run"]

KUSTOMIZE_ENV = "GEODEPLOY_KUSTOMIZE"  # the binary, when it is not `kustomize` on PATH
_BUILD_TIMEOUT = 120  # seconds per kustomization


def run(args: argparse.Namespace, out: Output) -> int:
    path = config_path(args.config)
    written = render_kustomize_sources(path, find_kustomize(args.kustomize))
    rendered = [file.relative_to(path.parent).as_posix() for file in written]
    out.result({"config": str(path), "rendered": rendered})
    for file in rendered:
        say(f"rendered {file}")
    if not written:
        say(f"no app of {path.name} has a kustomize source: nothing to render")
    return ExitCode.OK


def find_kustomize(given: str | None) -> str:
    binary = given or os.environ.get(KUSTOMIZE_ENV) or shutil.which("kustomize")
    if not binary:
        raise UsageError(
            f"no kustomize binary: pass --kustomize PATH, set {KUSTOMIZE_ENV}, or put kustomize on PATH "
            "(sandbox/kustomize/build.sh builds one)"
        )
    return binary


def render_kustomize_sources(path: Path, kustomize: str) -> list[Path]:
    """Renders each kustomize app for each region of the config at `path` (a directory
    shared by several regions once); returns the files written."""
    from shared.config import load_config
    from shared.manifest_sources import KUSTOMIZE

    config = load_config(path, read_rendered=False)  # the renderings are what is missing
    base = path.parent
    written: list[Path] = []
    for app in (a for a in config.apps if a.source.kind == KUSTOMIZE):
        for region in config.regions:
            output = base / app.source.rendered_file(region.name)
            if output in written:
                continue
            if not output.resolve().is_relative_to(base.resolve()):
                raise UsageError(f"{app.source.rendered_file(region.name)}: resolves outside {base}")
            _write_whole(output, _build(kustomize, base, app.source.kustomization(region.name)))
            written.append(output)
    return written


def _write_whole(path: Path, text: str) -> None:
    """Writes through a temporary file renamed into place: an interrupted run never
    leaves a rendering cut at a document boundary, which would load (and prune)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def _build(kustomize: str, base: Path, kustomization: str) -> str:
    try:
        done = subprocess.run(
            [kustomize, "build", kustomization],
            cwd=base,
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise OperationFailed(f"kustomize build {kustomization}: {e}") from None
    if done.returncode != 0:
        detail = " ".join(done.stderr.split())[:500]
        raise OperationFailed(f"kustomize build {kustomization} failed: {detail}")
    return done.stdout
