"""Runs functions-framework servers locally: one process per function target.

One process per target mirrors Cloud Functions (each function is its own service with its
own environment, e.g. one `deploy_region` per region) and lets a test kill or restart one
function alone. Each process is `python -m functions_framework` (the package has a
runnable `__main__`), so the interpreter is chosen explicitly rather than by whichever
`functions-framework` script is first on PATH.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.processes import ManagedProcess, free_port, stop_processes

__all__ = ["FunctionSpec", "FunctionsHost"]


@dataclass(frozen=True)
class FunctionSpec:
    name: str  # process label, unique per host, e.g. "deploy_region-us-west1"
    target: str  # the Python function name in the source file
    env: Mapping[str, str] = field(default_factory=dict)
    threads: int | None = None  # gunicorn threads (THREADS); None keeps the default, cpu x 4


class FunctionsHost:
    """Starts, addresses and stops the functions of one source file (a main.py)."""

    def __init__(
        self,
        source: Path,
        *,
        state_dir: Path,
        python: str = sys.executable,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        self.source = Path(source).resolve()
        self.state_dir = Path(state_dir)
        self.python = python
        self.base_env = dict(base_env or {})
        self._processes: dict[str, ManagedProcess] = {}
        self._urls: dict[str, str] = {}

    def log_path(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def url(self, name: str) -> str:
        """Base URL, "http://127.0.0.1:PORT", of the function called `name`."""
        try:
            return self._urls[name]
        except KeyError:
            raise KeyError(f"no function named {name!r} was started") from None

    @property
    def urls(self) -> dict[str, str]:
        return dict(self._urls)

    def process(self, name: str) -> ManagedProcess:
        self.url(name)  # same error for an unknown name
        return self._processes[name]

    def push_endpoint(self, name: str, project: str, topic: str) -> str:
        """Push URL whose path lets functions-framework set the CloudEvent source to the topic."""
        return f"{self.url(name)}/projects/{project}/topics/{topic}"

    def _env(self, spec: FunctionSpec) -> dict[str, str]:
        env = {**os.environ, **self.base_env, **spec.env}
        env["PYTHONUNBUFFERED"] = "1"  # prints reach the log while the test still waits
        if spec.threads is not None:
            env["THREADS"] = str(spec.threads)
        return env

    def start(self, specs: list[FunctionSpec], timeout: float = 30) -> dict[str, str]:
        """Start every spec, then wait for all of them (startup overlaps); name -> base URL."""
        names = [spec.name for spec in specs]
        clashes = {n for n in names if names.count(n) > 1 or n in self._urls}
        if clashes:
            raise ValueError(f"function names already in use: {sorted(clashes)}")
        if not self.source.is_file():
            raise FileNotFoundError(f"function source {self.source} does not exist")
        started: dict[str, ManagedProcess] = {}
        try:
            for spec in specs:
                port = free_port()
                argv = [
                    self.python, "-m", "functions_framework",
                    f"--source={self.source}",
                    f"--target={spec.target}",
                    "--host=127.0.0.1",
                    f"--port={port}",
                ]  # fmt: skip
                process = ManagedProcess(
                    spec.name,
                    argv,
                    env=self._env(spec),
                    cwd=self.source.parent,  # main.py imports its packages from beside it
                    log_path=self.log_path(spec.name),
                    # gunicorn's quick shutdown. On SIGTERM it waits ~1 s for the emulator's
                    # keep-alive connections; a sandbox teardown has nothing worth draining.
                    stop_signal=signal.SIGINT,
                )
                started[spec.name] = process.start()
                self._urls[spec.name] = f"http://127.0.0.1:{port}"
                self._processes[spec.name] = process
            deadline = time.monotonic() + timeout
            for name, process in started.items():
                # Any HTTP answer on "/" means gunicorn serves and the source imported.
                remaining = max(deadline - time.monotonic(), 0.1)
                process.wait_for_http(self._urls[name] + "/", remaining)
        except BaseException:
            stop_processes(started.values())
            for name in started:
                self._urls.pop(name, None)
                self._processes.pop(name, None)
            raise
        return {name: self._urls[name] for name in started}

    def stop(self) -> None:
        """Stop every function (gunicorn arbiter and workers); idempotent."""
        stop_processes(self._processes.values())
        self._processes.clear()
        self._urls.clear()
