"""The CLI's exit codes, named once. Standard library only: `cli.main` uses them while
parsing, before any command (or cloud library) is imported."""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = ["ErrorKind", "ExitCode"]


class ExitCode(IntEnum):
    OK = 0
    # The command ran and the answer is "no": a deploy or rollback that did not succeed
    # everywhere, a kustomize build that failed, nothing to roll back to.
    FAILED = 1
    # The same code for "found what a script must act on": diff found changes,
    # drift --run found drift (as `kubectl diff` and `diff` itself exit 1).
    FOUND = 1
    # What was asked cannot be done as asked: bad arguments or config, an unpinned image,
    # a target on_control would refuse, an object the API server would reject.
    USAGE = 2
    # Could not check: a cluster or API did not answer (or refused geodeploy's identity);
    # nothing is known about it, and running the command again may succeed.
    UNAVAILABLE = 3
    INTERRUPTED = 130


class ErrorKind(StrEnum):
    """`error.kind` of a JSON document: why the command ended with an error."""

    FAILED = "failed"
    USAGE = "usage"
    UNAVAILABLE = "unavailable"
    INTERRUPTED = "interrupted"
    INTERNAL = "internal"  # a bug in geodeploy: its traceback goes to stderr

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.FAILED if self is ErrorKind.INTERNAL else ExitCode[self.name]
