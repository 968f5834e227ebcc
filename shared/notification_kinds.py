"""The vocabulary of notifications, named once: what happened (an event kind), how it
ended (a status) and how a webhook wants it (a kind). Pure; the config validates webhook
filters against these, `shared.notify` builds the payloads from them."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["EventKind", "NotificationStatus", "WebhookKind"]


class EventKind(StrEnum):
    """Which topic a notification comes from."""

    DEPLOY_RESULT = "deploy_result"  # a region's result, on the results topic
    DRIFT_FINDING = "drift_finding"  # a drifted region (or Cloudflare) in a drift report
    DEAD_LETTER = "dead_letter"  # a message a function failed to handle on every attempt


class NotificationStatus(StrEnum):
    """A webhook's `filters.statuses`: a deploy result's status, or one of the two that
    only notifications have."""

    SUCCEEDED = "succeeded"
    UNCHANGED = "unchanged"
    PROGRESSING = "progressing"
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    SUPERSEDED = "superseded"
    REJECTED = "rejected"
    DRIFTED = "drifted"  # a drift finding
    DEAD_LETTERED = "dead_lettered"  # a dead letter


class WebhookKind(StrEnum):
    SLACK = "slack"  # a Slack incoming webhook (or anything that takes Slack's blocks)
    JSON = "json"  # geodeploy's own JSON schema, signed with HMAC-SHA256
