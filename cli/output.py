"""What a command prints: text for people, or (`--output json`) exactly one JSON document
on stdout for scripts. A command builds its result once and hands it to `Output.result`;
`run_guarded` ends every run with `Output.finish`, which writes the document (the result,
or why there is none) with the exit code, so a command cannot print two or none.

Every document has the same envelope (docs/cli.md, "JSON output"):

    {"command": "diff", "schema_version": 1, ...the command's fields..., "exit_code": 1, "error": null}

`error` is null or {"kind": ErrorKind, "message": "..."}: exactly what text mode prints as
`geodeploy: error: ...` on stderr. In JSON mode every text line (progress, notes) goes to
stderr, so nothing but the document reaches stdout."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from cli import views
from cli.exit_codes import ErrorKind, ExitCode

__all__ = ["SCHEMA_VERSION", "Output", "OutputFormat"]

# Bumped when a field of any command's document changes meaning or goes away; new
# fields may be added within a version, so read documents by key.
SCHEMA_VERSION = 1


class OutputFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class Output:
    def __init__(self, command: str | None, output_format: OutputFormat = OutputFormat.TEXT) -> None:
        self.command = command
        self.format = output_format
        self._fields: dict[str, Any] | None = None
        views.text_to_stderr(self.json)

    @property
    def json(self) -> bool:
        return self.format is OutputFormat.JSON

    def result(self, fields: dict[str, Any]) -> None:
        """The command's result, for the document (text mode prints its own lines)."""
        self._fields = fields

    def finish(self, code: ExitCode, error: tuple[ErrorKind, str] | None = None) -> ExitCode:
        """Ends the run: in text mode the error line, in JSON mode the one document."""
        if not self.json:
            if error is not None:
                views.error(error[1])
            return code
        views.document(self.document(code, error))
        return code

    def document(self, code: ExitCode, error: tuple[ErrorKind, str] | None = None) -> dict[str, Any]:
        return {
            "command": self.command,
            "schema_version": SCHEMA_VERSION,
            **(self._fields or {}),
            "exit_code": int(code),
            "error": None if error is None else {"kind": str(error[0]), "message": error[1]},
        }
