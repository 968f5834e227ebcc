"""How the CLI fails: one line on stderr and an exit code, never a traceback for a
failure an operator can expect (bad config, a cluster down, Cloudflare refusing)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

__all__ = ["OperationFailed", "UsageError", "run_guarded"]

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class UsageError(Exception):
    """Bad arguments or an unusable environment: exit code 2."""


class OperationFailed(Exception):
    """The operation ran and did not succeed: exit code 1."""


def run_guarded(command: Callable[[], int], *, verbose: bool = False) -> int:
    from cli.views import error

    _route_logs(verbose)
    try:
        return command()
    except KeyboardInterrupt:
        error("interrupted (whatever was already published carries on; see geodeploy status)")
        return EXIT_INTERRUPTED
    except UsageError as e:
        error(str(e))
        return EXIT_USAGE
    except OperationFailed as e:
        error(str(e))
        return EXIT_FAILED
    except Exception as e:
        code = _expected(e)
        if code is None:
            raise
        error(_one_line(e))
        return code


def _expected(e: Exception) -> int | None:
    """The exit code of an error we expect, or None for a bug (shown with its traceback)."""
    from shared.errors import ConfigError, GeodeployError

    if isinstance(e, ConfigError):
        return EXIT_USAGE
    if isinstance(e, GeodeployError):  # PermanentError, TransientError (cluster, Cloudflare, publish)
        return EXIT_FAILED
    google_auth = sys.modules.get("google.auth.exceptions")
    if google_auth is not None and isinstance(e, google_auth.GoogleAuthError):
        return EXIT_USAGE  # no or unusable credentials: fix the environment, then retry
    api_core = sys.modules.get("google.api_core.exceptions")
    if api_core is not None and isinstance(e, api_core.GoogleAPICallError | api_core.RetryError):
        return EXIT_FAILED
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
