"""How the CLI fails: one line on stderr (or the JSON document's `error`) and an exit code,
never a traceback for a failure an operator can expect (bad config, a cluster down,
Cloudflare refusing). Which error gets which code is decided here, once."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from cli.exit_codes import ErrorKind, ExitCode

if TYPE_CHECKING:
    from cli.output import Output

__all__ = ["CliError", "OperationFailed", "Unavailable", "UsageError", "run_guarded"]


class CliError(Exception):
    """An error the CLI reports as it is; its kind gives the exit code."""

    kind = ErrorKind.FAILED


class UsageError(CliError):
    """Bad arguments or an unusable environment: exit code 2."""

    kind = ErrorKind.USAGE


class OperationFailed(CliError):
    """The operation ran and did not succeed: exit code 1."""

    kind = ErrorKind.FAILED


class Unavailable(CliError):
    """Could not check: a region or API did not answer, so nothing is known: exit code 3."""

    kind = ErrorKind.UNAVAILABLE


def run_guarded(command: Callable[[], int], out: Output, *, verbose: bool = False) -> int:
    _route_logs(verbose)
    try:
        code = ExitCode(command())
    except KeyboardInterrupt:
        why = "interrupted (whatever was already published carries on; see geodeploy status)"
        return out.finish(ExitCode.INTERRUPTED, (ErrorKind.INTERRUPTED, why))
    except CliError as e:
        return out.finish(e.kind.exit_code, (e.kind, str(e)))
    except Exception as e:
        kind = _expected(e)
        if kind is None:  # a bug: its traceback, and for a script still a document
            if out.json:
                out.finish(ErrorKind.INTERNAL.exit_code, (ErrorKind.INTERNAL, _one_line(e)))
            raise
        return out.finish(kind.exit_code, (kind, _one_line(e)))
    return out.finish(code)


def _expected(e: Exception) -> ErrorKind | None:
    """The kind of an error we expect, or None for a bug (shown with its traceback)."""
    from shared.errors import ConfigError, GeodeployError, TransientError

    if isinstance(e, ConfigError):
        return ErrorKind.USAGE
    if isinstance(e, TransientError):  # a cluster, Cloudflare, a secret or a grant: may heal
        return ErrorKind.UNAVAILABLE
    if isinstance(e, GeodeployError):  # PermanentError: retrying will not help
        return ErrorKind.FAILED
    google_auth = sys.modules.get("google.auth.exceptions")
    if google_auth is not None and isinstance(e, google_auth.GoogleAuthError):
        return ErrorKind.USAGE  # no or unusable credentials: fix the environment, then retry
    api_core = sys.modules.get("google.api_core.exceptions")
    if api_core is not None:
        # Pub/Sub (or another Google API) did not answer, or asked us to slow down.
        if isinstance(e, api_core.ServerError | api_core.TooManyRequests | api_core.RetryError):
            return ErrorKind.UNAVAILABLE
        if isinstance(e, api_core.GoogleAPICallError):
            return ErrorKind.FAILED
    return None


def _one_line(e: Exception) -> str:
    from cli.views import brief

    text = brief(str(e)) or type(e).__name__
    return f"{type(e).__name__}: {text}" if type(e).__module__.startswith("google") else text


def _route_logs(verbose: bool) -> None:
    """The flows log as JSON for Cloud Logging; here that is noise unless asked for."""
    logger = logging.getLogger("geodeploy")
    logger.propagate = False
    if verbose:
        from shared.logs import JsonFormatter

        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.setLevel(logging.INFO)
    else:
        handler = logging.NullHandler()
    logger.addHandler(handler)
