# Log-based metrics and alert policies, from the config (locals.tf: local.log_metrics,
# local.alerts) and the log events the functions write (shared/log_events.py). The
# same list as shared/monitoring.py; tests/infra compares the two, and tests/core proves
# each metric's filter matches the lines the code writes. docs/infra.md describes them.

# Counters of the functions' log lines, each label taken from a field of the line.
resource "google_logging_metric" "event" {
  for_each = local.log_metrics

  name        = each.value.name
  description = "geodeploy ${local.name}: ${replace(each.key, "_", " ")} (${join(", ", local.log_metric_sources[each.key].events)})"
  filter      = each.value.filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"

    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.key
        value_type = "STRING"
      }
    }
  }
  label_extractors = { for label, field in each.value.labels : label => "EXTRACT(jsonPayload.${field})" }
}

locals {
  # The metrics' types as Cloud Monitoring names them.
  log_metric_types = { for key, m in local.log_metrics : key => "logging.googleapis.com/user/${m.name}" }

  # One condition per policy: `threshold` (the series, summed over window_seconds, above
  # threshold) or `absent` (no data for duration_seconds).
  alert_policies = merge(
    {
      dead_letter_backlog = {
        display_name   = "${local.name}: dead letters waiting"
        kind           = "threshold"
        filter         = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${local.name}-dead-letters\""
        window_seconds = 300
        threshold      = local.alerts.dead_letter_messages - 1
        aligner        = "ALIGN_MAX"
        group_by       = []
        documentation  = "Messages that failed every delivery attempt wait on the subscription ${local.name}-dead-letters. Pull them (docs/infra.md), fix the cause, republish or acknowledge them."
      }
      failed_rollouts = {
        display_name   = "${local.name}: rollouts failed"
        kind           = "threshold"
        filter         = "metric.type=\"${local.log_metric_types.deploy_results}\" AND metric.labels.status=one_of(\"failed\", \"rolling_back\")"
        window_seconds = 600
        threshold      = local.alerts.failed_rollouts - 1
        aligner        = "ALIGN_SUM"
        group_by       = ["metric.label.app", "metric.label.region"]
        documentation  = "A rollout failed in the region named by the labels (rolled back on its own, or failed with no way back). `geodeploy status` and `geodeploy history` show why."
      }
      region_drained = {
        display_name   = "${local.name}: a region drained for ${local.alerts.drained_minutes} minutes"
        kind           = "threshold"
        filter         = "metric.type=\"${local.log_metric_types.drained_too_long}\""
        window_seconds = 300
        threshold      = 0
        aligner        = "ALIGN_SUM"
        group_by       = ["metric.label.region"]
        documentation  = "reconcile_traffic has kept the region's Cloudflare pool disabled for ${local.alerts.drained_minutes} minutes or more: the region is not healthy. `geodeploy status` shows why."
      }
    },
    local.drift_check_overdue_minutes == 0 ? {} : {
      drift_check_overdue = {
        display_name   = "${local.name}: no drift check for ${local.drift_check_overdue_minutes} minutes"
        kind           = "absent"
        filter         = "metric.type=\"${local.log_metric_types.drift_checks}\""
        window_seconds = 300
        duration       = local.drift_check_overdue_minutes * 60
        aligner        = "ALIGN_SUM"
        group_by       = []
        documentation  = "No drift check has run to its end for longer than its schedule (${local.drift_schedule}) allows. Look at the ${local.name}-drift-check Cloud Scheduler job and the check-drift function's logs."
      }
    },
  )
}

resource "google_monitoring_alert_policy" "geodeploy" {
  for_each = local.alert_policies

  display_name          = each.value.display_name
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alerts.notification_channels
  user_labels           = local.labels

  documentation {
    content   = each.value.documentation
    mime_type = "text/markdown"
  }

  conditions {
    display_name = each.value.display_name

    dynamic "condition_threshold" {
      for_each = each.value.kind == "threshold" ? [each.value] : []
      content {
        filter          = condition_threshold.value.filter
        comparison      = "COMPARISON_GT"
        threshold_value = condition_threshold.value.threshold
        duration        = "0s"
        aggregations {
          alignment_period     = "${condition_threshold.value.window_seconds}s"
          per_series_aligner   = condition_threshold.value.aligner
          cross_series_reducer = "REDUCE_SUM"
          group_by_fields      = condition_threshold.value.group_by
        }
      }
    }

    dynamic "condition_absent" {
      for_each = each.value.kind == "absent" ? [each.value] : []
      content {
        filter   = condition_absent.value.filter
        duration = "${condition_absent.value.duration}s"
        # Summed across revisions: a new deploy of the function starts a new series.
        aggregations {
          alignment_period     = "${condition_absent.value.window_seconds}s"
          per_series_aligner   = condition_absent.value.aligner
          cross_series_reducer = "REDUCE_SUM"
        }
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  depends_on = [google_logging_metric.event]
}
