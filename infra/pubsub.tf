# Topics and the subscriptions that trigger the functions.
#
# Why explicit push subscriptions instead of the functions' `event_trigger`: an
# event_trigger creates its Eventarc subscription out of Terraform's sight, with retries
# off unless asked for and no dead-letter topic. Here the retry policy, the dead-letter
# policy and the ack deadline of every trigger are written down where Terraform (and a
# reviewer) can see them, and the push path (<service URL>/projects/<p>/topics/<topic>,
# from which functions-framework derives the CloudEvent source) is the same one the local
# sandbox exercises against the Pub/Sub emulator.

# The images topic belongs to Artifact Registry, which creates it when its API is
# enabled; it is only looked up, unless create_images_topic says to create it.
resource "google_pubsub_topic" "images" {
  count = var.create_images_topic ? 1 : 0
  # checkov:skip=CKV_GCP_83:messages carry image digests and deploy requests, nothing secret; Google-managed encryption suffices

  name   = local.topics.images
  labels = local.labels
}

data "google_pubsub_topic" "images" {
  count = var.create_images_topic ? 0 : 1

  name = local.topics.images
}

# One deploy topic per region: <deploy_prefix>-<region>.
resource "google_pubsub_topic" "deploy" {
  for_each = local.deploy_topics
  # checkov:skip=CKV_GCP_83:messages carry image digests and deploy requests, nothing secret; Google-managed encryption suffices

  name   = each.value
  labels = local.labels
}

# results, control, drift, drift_reports and dead_letter.
resource "google_pubsub_topic" "central" {
  for_each = local.central_topics
  # checkov:skip=CKV_GCP_83:messages carry image digests and deploy requests, nothing secret; Google-managed encryption suffices

  name   = each.value
  labels = local.labels
}

locals {
  # Topic name → topic id, for every topic a function listens to.
  topic_ids = merge(
    { (local.topics.images) = var.create_images_topic ? google_pubsub_topic.images[0].id : data.google_pubsub_topic.images[0].id },
    { for region, topic in google_pubsub_topic.deploy : topic.name => topic.id },
    { for key, topic in google_pubsub_topic.central : topic.name => topic.id },
  )
}

resource "google_pubsub_subscription" "push" {
  for_each = local.subscriptions

  name   = each.key
  topic  = local.topic_ids[each.value.topic]
  labels = local.labels

  # Longer than the function may run, so a slow success is not redelivered meanwhile.
  ack_deadline_seconds       = min(600, local.functions[each.value.function].timeout_seconds + 30)
  message_retention_duration = "86400s"

  push_config {
    push_endpoint = "${google_cloudfunctions2_function.fn[each.value.function].service_config[0].uri}/projects/${local.project}/topics/${each.value.topic}"
    oidc_token {
      service_account_email = google_service_account.role["push"].email
      audience              = google_cloudfunctions2_function.fn[each.value.function].service_config[0].uri
    }
  }

  # A raise in the function (HTTP 500) is redelivered with backoff; after 5 attempts the
  # message goes to the dead-letter topic instead of retrying for the whole retention.
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }
  # Except on the dead-letter topic itself (notify's subscription): a dead letter that
  # notify kept failing on would come back to it forever (shared.topology.dead_letter_topic_for).
  dynamic "dead_letter_policy" {
    for_each = each.value.topic == local.topics.dead_letter ? [] : [local.topics.dead_letter]
    content {
      dead_letter_topic     = google_pubsub_topic.central["dead_letter"].id
      max_delivery_attempts = 5
    }
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_service_iam_member.push_invoker,
    google_service_account_iam_member.pubsub_mints_push_tokens,
    google_pubsub_topic_iam_member.dead_letter_publisher,
  ]
}

# A topic without a subscription drops what is published to it: keep dead letters and
# drift reports for a week, to be pulled by an operator (docs/infra.md).
resource "google_pubsub_subscription" "keep" {
  for_each = {
    "${local.name}-dead-letters"  = "dead_letter"
    "${local.name}-drift-reports" = "drift_reports"
  }

  name   = each.key
  topic  = google_pubsub_topic.central[each.value].id
  labels = local.labels

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  expiration_policy {
    ttl = ""
  }
}
