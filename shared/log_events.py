"""The log events that infra/'s log-based metrics and alert policies filter on, named
once. The code logs these constants; shared/monitoring.py builds the metrics' filters
from them; tests/core/test_metrics_match_the_lines_the_code_writes.py proves each filter
matches a line the code really writes, and tests/infra that infra/ filters on the same.
Renaming one of these renames a metric's input: change infra/locals.tf with it."""

from __future__ import annotations

__all__ = [
    "AUTOMATIC_ROLLBACK_STARTED",
    "DRIFT_CHECKED",
    "DRIFT_DETECTED",
    "DRIFT_IN_CLOUDFLARE",
    "DRIFT_IN_KUBERNETES",
    "POOL_DRAINED",
    "RESULT_PUBLISHED",
    "ROLLBACK_REQUESTED",
]

# deploy_region, once per result it publishes; fields: status, reason (app, region bound).
RESULT_PUBLISHED = "result_published"
# deploy_region, when a failed rollout rolls back on its own; fields: image, failed_image.
AUTOMATIC_ROLLBACK_STARTED = "automatic_rollback_started"
# on_control, when a rollback control message became deploy requests; fields: app, regions.
ROLLBACK_REQUESTED = "rollback_requested"
# check_drift, once per difference found; fields: system, and app and region in a cluster.
DRIFT_DETECTED = "drift_detected"
DRIFT_IN_KUBERNETES, DRIFT_IN_CLOUDFLARE = "kubernetes", "cloudflare"  # its `system`
# check_drift, once per check that ran to its end: its absence means the check is not running.
DRIFT_CHECKED = "drift_checked"
# reconcile_traffic, every reconcile, once per region whose pool is disabled;
# fields: drained_region, pool, drained_since, drained_seconds.
POOL_DRAINED = "pool_drained"
