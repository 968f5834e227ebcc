# The drift check: Cloud Scheduler publishes {"version":1} to the drift topic on
# drift.schedule in drift.time_zone; check-drift and reconcile-traffic both listen to it.

resource "google_cloud_scheduler_job" "drift" {
  name        = "${local.name}-drift-check"
  region      = local.functions_region
  description = "geodeploy ${local.name}: compare the live clusters and Cloudflare with the releases"
  schedule    = local.drift_schedule
  time_zone   = local.drift_time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.central["drift"].id
    data       = base64encode(jsonencode({ version = 1 }))
  }

  depends_on = [google_pubsub_topic_iam_member.scheduler_publisher]
}

# A Pub/Sub target publishes as the Cloud Scheduler service agent: allowed on this one topic.
resource "google_pubsub_topic_iam_member" "scheduler_publisher" {
  topic  = google_pubsub_topic.central["drift"].id
  role   = "roles/pubsub.publisher"
  member = local.scheduler_service_agent
}
