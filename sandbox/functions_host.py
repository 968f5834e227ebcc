"""Runs functions-framework servers locally: one process per function target.

One process per target mirrors Cloud Functions (each function is its own service with its
own environment, e.g. one `deploy_region` per region) and lets a test kill or restart one
function alone. Each process is `python -m functions_framework` (the package has a
runnable `__main__`), so the interpreter is chosen explicitly rather than by whichever
`functions-framework` script is first on PATH.

The process is gunicorn's arbiter; it forks `workers` worker processes (WORKERS), each
serving `threads` requests at a time (THREADS). With threads=1 a worker is a Cloud Run
instance of concurrency 1 and the workers model scale-out. `kill` SIGKILLs the workers
(the arbiter forks fresh ones, as Cloud Run starts new instances; in-flight pushes fail
and are redelivered); `restart` SIGKILLs the whole process group and starts it again on
the same port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.processes import ManagedProcess, free_port, pid_alive, stop_processes

__all__ = ["FunctionSpec", "FunctionsHost"]


@dataclass(frozen=True)
class FunctionSpec:
    name: str  # process label, unique per host, e.g. "deploy_region-us-west1"
    target: str  # the Python function name in the source file
    env: Mapping[str, str] = field(default_factory=dict)
    threads: int | None = None  # gunicorn threads (THREADS); None keeps the default, cpu x 4
    workers: int | None = None  # gunicorn worker processes (WORKERS); None keeps the default, 1


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
        self._specs: dict[str, FunctionSpec] = {}

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
        env["K_SERVICE"] = spec.name  # as Cloud Run names the service it runs
        if spec.threads is not None:
            env["THREADS"] = str(spec.threads)
        if spec.workers is not None:
            env["WORKERS"] = str(spec.workers)
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
                self._specs[spec.name] = spec
            deadline = time.monotonic() + timeout
            for name, process in started.items():
                # Any HTTP answer on "/" means gunicorn serves and the source imported.
                remaining = max(deadline - time.monotonic(), 0.1)
                process.wait_for_http(self._urls[name] + "/", remaining)
                self._wait_for_workers(name, deadline)
        except BaseException:
            stop_processes(started.values())
            for name in started:
                self._urls.pop(name, None)
                self._processes.pop(name, None)
                self._specs.pop(name, None)
            raise
        return {name: self._urls[name] for name in started}

    def workers(self, name: str) -> list[int]:
        """Pids of the live gunicorn workers of `name`: its arbiter's children."""
        process = self.process(name)
        arbiter = process.pid
        return sorted(p for p in process.group_pids() if p != arbiter and _parent(p) == arbiter and pid_alive(p))

    def kill(self, name: str, timeout: float = 30) -> list[int]:
        """SIGKILLs every worker of `name` (its requests in flight die with them) and
        returns the fresh workers' pids once they serve."""
        old = self.workers(name)
        if not old:
            raise RuntimeError(f"{name} has no workers to kill")
        for pid in old:
            with contextlib.suppress(ProcessLookupError):  # it died on its own meanwhile
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        fresh = self._wait_for_workers(name, deadline, replacing=old)
        self.process(name).wait_for_http(self.url(name) + "/", max(deadline - time.monotonic(), 1))
        return fresh

    def restart(self, name: str, timeout: float = 60) -> None:
        """SIGKILLs the whole process group of `name` (arbiter and workers: nothing shuts
        down cleanly) and starts it again on the same port."""
        process = self.process(name)
        process.kill()
        process.start()
        deadline = time.monotonic() + timeout
        process.wait_for_http(self.url(name) + "/", timeout)
        self._wait_for_workers(name, deadline)

    def _wait_for_workers(self, name: str, deadline: float, replacing: list[int] | None = None) -> list[int]:
        """Waits until `name` has all its workers (none of `replacing` left); their pids."""
        expected = self._specs[name].workers or 1
        old = set(replacing or [])
        while True:
            self.process(name)._check_alive(f"the workers of {name}")
            current = self.workers(name)
            if len(current) >= expected and not set(current) & old:
                return current
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: {expected} workers expected, found {current} (replacing {sorted(old)})")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop every function (gunicorn arbiter and workers); idempotent."""
        stop_processes(self._processes.values())
        self._processes.clear()
        self._urls.clear()
        self._specs.clear()


def _parent(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(raw[raw.rindex(")") + 2 :].split()[1])  # "pid (comm) state ppid ..."
