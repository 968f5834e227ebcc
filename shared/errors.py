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


class TransientError(GeodeployError):
    """A fault that may clear by itself; the event is redelivered."""


class ClusterUnreachable(TransientError):
    """The region's Kubernetes API (or GKE's API for its endpoint) did not answer."""


class CloudflareUnavailable(TransientError):
    """Cloudflare kept failing (429 or 5xx) after the bounded retries."""


class NotYet(GeodeployError):
    """Work is under way and a later delivery should finish it."""
