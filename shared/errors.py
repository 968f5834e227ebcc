"""One root for geodeploy's errors, in the three families the entry points act on.

- PermanentError: retrying cannot help (bad message, unknown app). Logged and acked.
- TransientError: the world may heal (a cluster or API down). Raised, so Pub/Sub redelivers.
- NotYet: work is under way (a rollout still progressing). Raised, so a later delivery
  finishes the job.
"""

from __future__ import annotations


class GeodeployError(Exception):
    """Root of every error geodeploy raises on purpose."""


class ConfigError(GeodeployError):
    """The configuration file is missing or invalid; the message names the key."""


class PermanentError(GeodeployError):
    """Retrying will not help; the event is acknowledged with this reason logged."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class InvalidMessage(PermanentError):
    """A message that does not match its contract."""


RECORD_UNREADABLE = "release_record_unreadable"


class RecordUnreadable(PermanentError):
    """A region's release record is there but cannot be read (e.g. edited by hand into
    something that is not a record). Retrying cannot help; an operator must repair it."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(RECORD_UNREADABLE, detail)


class TransientError(GeodeployError):
    """A fault that may clear by itself; the event is redelivered."""

    # What the entry point logs as the failure's reason; subclasses name theirs.
    reason: str = "transient"


class ClusterUnreachable(TransientError):
    """The region's Kubernetes API (or GKE's API for its endpoint) did not answer."""


PERMISSION_DENIED = "permission_denied"


class PermissionMissing(TransientError):
    """The function's identity lacks a permission (a Google API's PERMISSION_DENIED, or a
    Kubernetes RBAC refusal). An operator grants it (docs/infra.md lists each one); until
    then the event is redelivered, and after the last attempt it is dead-lettered, kept.
    Never reported as an unreachable cluster: the message names what was refused."""

    reason = PERMISSION_DENIED


class CloudflareUnavailable(TransientError):
    """Cloudflare kept failing (429 or 5xx) after the bounded retries."""


SECRET_UNAVAILABLE = "secret_unavailable"


class SecretUnavailable(TransientError):
    """A secret geodeploy needs is missing, has no enabled version, or may not be read
    yet. An operator fixes it (creates the secret or a version, grants access, waits for
    a new version to propagate), so the event is kept: redelivered, then dead-lettered.
    The message names the secret, never its value."""

    reason = SECRET_UNAVAILABLE

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"{name}: {why}")
        self.name = name


class NotYet(GeodeployError):
    """Work is under way and a later delivery should finish it."""
