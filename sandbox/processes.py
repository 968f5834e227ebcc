"""Supervised child processes for the sandbox: start, wait until ready, stop without leftovers.

Every sandbox component (Pub/Sub emulator, functions-framework servers, control planes,
stand-ins) runs as a `ManagedProcess`. Each one gets its own session and process group,
because several of them fork helpers the caller never sees (gcloud starts a java child,
gunicorn forks workers): signalling only the pid we started would orphan those helpers
and leave their ports bound. `stop()` therefore signals the whole group and waits until
no live member remains.

Output goes to a log file (appended, so restarts keep history); the wait helpers only
look at what the current run wrote.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = [
    "ManagedProcess",
    "ProcessFailed",
    "ProcessTimeout",
    "free_port",
    "pid_alive",
    "port_is_free",
    "stop_all",
    "stop_processes",
]

_POLL = 0.05  # seconds between checks in the wait loops
_KILL_GRACE = 5.0  # how long SIGKILLed members may take to disappear


class ProcessFailed(RuntimeError):
    """The process exited (or was never started) while something waited for it."""


class ProcessTimeout(TimeoutError):
    """The process stayed alive but did not become ready before the deadline."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the kernel may hand it out again later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on host:port.

    SO_REUSEADDR mirrors what servers do: without it a port with TIME_WAIT connections
    from an already-stopped server would look busy.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _read_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of pid from /proc, or None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # "pid (comm) state ppid pgrp ...": comm may hold spaces or ')', so split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[2])


def pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (a zombie holds no port and runs no code)."""
    stat = _read_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) pids whose process group is pgid."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read_stat(int(entry))
            if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
                members.append(int(entry))
    return members


_registry_lock = threading.Lock()
_registry: dict[int, ManagedProcess] = {}  # id(process) -> process, in start order


def stop_processes(processes: Iterable[ManagedProcess], timeout: float = 10) -> None:
    """Stop several processes at once: their shutdowns overlap instead of adding up."""
    processes = list(processes)
    if len(processes) <= 1:
        for process in processes:
            process.stop(timeout)
        return
    with ThreadPoolExecutor(max_workers=len(processes)) as pool:
        # list() re-raises the first failure after every stop has been attempted.
        list(pool.map(lambda process: process.stop(timeout), processes))


def detach_all() -> None:
    """Leave every process running after this Python process exits (`sandbox up`); they
    are then stopped by process group (`sandbox down`)."""
    with _registry_lock:
        _registry.clear()


def stop_all() -> None:
    """Stop every ManagedProcess started by this Python process."""
    with _registry_lock:
        processes = list(_registry.values())
    stop_processes(processes)


# A safety net only: fixtures stop what they start, but an interrupted run must not
# leave emulators or servers behind.
atexit.register(stop_all)


class ManagedProcess:
    """One supervised command running in its own process group.

    `env` is the complete environment of the child, as for `subprocess.Popen`
    (None inherits this process's environment). `stop_signal` is what `stop()` sends
    first, to the whole group; SIGKILL follows if the group outlives the timeout.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        log_path: Path,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.log_path = Path(log_path)
        self.stop_signal = stop_signal
        self._popen: subprocess.Popen[bytes] | None = None
        self._log_offset = 0  # where this run's output starts in the log file
        # Once the group is gone its pgid may be reused by an unrelated process: never signal again.
        self._stopped = False

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.pid}, running={self.running})"

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def start(self) -> ManagedProcess:
        """Launch the command; a stopped process may be started again."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            try:
                self._popen = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ProcessFailed(f"{self.name}: cannot start {self.argv[0]!r}: {exc}") from exc
        self._stopped = False
        with _registry_lock:
            _registry[id(self)] = self
        return self

    def output(self) -> str:
        """Everything the current run has written to its log so far."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                return log.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def _failure(self, what: str) -> str:
        return f"{self.name} {what}; last log lines ({self.log_path}):\n{self.log_tail()}"

    def _check_alive(self, waiting_for: str) -> None:
        if self._popen is None:
            raise ProcessFailed(f"{self.name} was never started (waiting for {waiting_for})")
        code = self._popen.poll()
        if code is not None:
            raise ProcessFailed(self._failure(f"exited with {code} while waiting for {waiting_for}"))

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until this run's output matches `pattern` (re.MULTILINE); return the match."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            exited = not self.running  # read the log after checking, so the last lines count
            match = regex.search(self.output())
            if match:
                return match
            if exited:
                self._check_alive(repr(pattern))
            if time.monotonic() >= deadline:
                raise ProcessTimeout(self._failure(f"printed no line matching {pattern!r} in {timeout}s"))
            time.sleep(_POLL)

    def wait_for_http(self, url: str, timeout: float) -> None:
        """Wait until `url` answers with any HTTP response (404, 405, 400... all mean "up")."""
        # No proxies: a proxy variable in the environment must not intercept 127.0.0.1.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive(url)
            try:
                with opener.open(url, timeout=min(2.0, timeout)):
                    return
            except urllib.error.HTTPError:
                return
            except (urllib.error.URLError, OSError):
                pass  # not listening yet
            if time.monotonic() >= deadline:
                raise ProcessTimeout(self._failure(f"did not answer {url} in {timeout}s"))
            time.sleep(_POLL)

    def group_pids(self) -> list[int]:
        """Live members of this process's group (the command and any helpers it forked)."""
        return _group_members(self._popen.pid) if self._popen is not None else []

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._popen is not None
        with contextlib.suppress(ProcessLookupError):  # the whole group is already gone
            os.killpg(self._popen.pid, sig)

    def _wait_group_gone(self, timeout: float) -> bool:
        assert self._popen is not None
        deadline = time.monotonic() + timeout
        while True:
            self._popen.poll()  # reap the leader; orphaned helpers are reaped by init
            if self._popen.returncode is not None and not self.group_pids():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL)

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash would (no shutdown); idempotent."""
        self._end(signal.SIGKILL, _KILL_GRACE)

    def stop(self, timeout: float = 10) -> None:
        """Signal the whole group, SIGKILL whatever is left after `timeout`; idempotent."""
        self._end(self.stop_signal, timeout)

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        if self._popen is None or self._stopped:
            return
        try:
            # Signal only while the group provably exists (an unreaped leader or a live
            # member keeps its pgid reserved); an empty group's id may belong to someone else.
            if self._popen.poll() is None or self.group_pids():
                self._signal_group(sig)
                if not self._wait_group_gone(timeout):
                    if sig is not signal.SIGKILL:
                        self._signal_group(signal.SIGKILL)
                    if not self._wait_group_gone(_KILL_GRACE):
                        raise ProcessFailed(self._failure(f"left pids {self.group_pids()} after SIGKILL"))
            self._stopped = True
        finally:
            with _registry_lock:
                _registry.pop(id(self), None)
