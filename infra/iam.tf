# Identities: one service account per role, each granted only what its function does, on
# the one resource it touches wherever IAM allows that (topic, subscription, secret,
# bucket, Cloud Run service). No keys anywhere: the functions run as these accounts.
#
# The functions' grants follow local.access (locals.tf), the IAM half of the access
# table in shared/topology.py; docs/infra.md lists each grant with the code that uses it.
#   push                invoke the functions (Pub/Sub push, OIDC)
#   build               build the functions' images
#   nodes               the GKE nodes: write logs and metrics, pull the apps' images
#
# What the cluster identities may do inside Kubernetes is RBAC, rendered from the same
# table by `geodeploy rbac --region R` and applied by the cluster's admin (docs/infra.md).
# Cloud Scheduler publishes as its service agent (a Pub/Sub target has no service
# account setting); it gets publish on the drift topic only, in scheduler.tf.

resource "google_service_account" "role" {
  for_each = local.service_accounts

  account_id   = each.value.account_id
  display_name = each.value.display_name
}

# --- Pub/Sub publishers (topic-level) -------------------------------------------------

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = local.publisher_grants

  topic  = local.topic_ids[each.value.topic]
  role   = "roles/pubsub.publisher"
  member = google_service_account.role[each.value.identity].member
}

# --- GKE: reading a cluster's endpoint and CA ------------------------------------------
# GKE has no per-cluster IAM, so this is a project-level grant of one permission.

resource "google_project_iam_custom_role" "cluster_getter" {
  role_id     = "${replace(local.name, "-", "_")}_cluster_getter"
  title       = "${local.name}: read a GKE cluster's endpoint"
  description = "container.clusters.get only: what geodeploy's functions need to connect to a cluster; Kubernetes RBAC decides the rest."
  permissions = ["container.clusters.get"]
}

resource "google_project_iam_member" "cluster_getter" {
  for_each = toset(local.cluster_readers)

  project = local.project
  role    = google_project_iam_custom_role.cluster_getter.id
  member  = google_service_account.role[each.value].member
}

# --- The Cloudflare token ---------------------------------------------------------------

resource "google_secret_manager_secret_iam_member" "secret_reader" {
  # The webhooks' secrets are granted in notify.tf, on their own resources.
  for_each = { for key, grant in local.secret_grants : key => grant if grant.secret == local.cloudflare_api_token_secret }

  secret_id = google_secret_manager_secret.cloudflare_token.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.role[each.value.identity].member
}

# --- Pub/Sub push: the invoker, and what the Pub/Sub service agent needs ---------------

resource "google_cloud_run_service_iam_member" "push_invoker" {
  for_each = local.event_functions

  project  = local.project
  location = google_cloudfunctions2_function.fn[each.key].location
  service  = google_cloudfunctions2_function.fn[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.role["push"].member
}

# Pub/Sub mints the push requests' OIDC tokens for the push account.
resource "google_service_account_iam_member" "pubsub_mints_push_tokens" {
  service_account_id = google_service_account.role["push"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

# Dead-lettering: Pub/Sub forwards a message from the subscription to the dead-letter topic.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  topic  = google_pubsub_topic.central["dead_letter"].id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  # Every subscription that dead-letters (not notify's own on the dead-letter topic).
  for_each = { for name, s in local.subscriptions : name => s if s.topic != local.topics.dead_letter }

  subscription = google_pubsub_subscription.push[each.key].id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# --- Building the functions -------------------------------------------------------------
# The build writes logs, reads the source that Cloud Functions copies into its own
# gcf-v2-sources bucket (created on the first deploy, so only a project-level grant can
# name it beforehand), and pushes the function images. Push is granted only on the
# functions' own repositories (functions.tf), never project-wide: a project-level
# artifactregistry.writer would let a build push into the apps' repositories, and a push
# there is a deploy to every region.

resource "google_project_iam_member" "build" {
  for_each = toset(["roles/logging.logWriter", "roles/storage.objectViewer"])

  project = local.project
  role    = each.value
  member  = google_service_account.role["build"].member
}

resource "google_artifact_registry_repository_iam_member" "build_push" {
  for_each = google_artifact_registry_repository.functions

  project    = local.project
  location   = each.value.location
  repository = each.value.repository_id
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.role["build"].member
}

# --- GKE nodes ---------------------------------------------------------------------------
# The minimal node roles GKE documents, and read access to the apps' repositories only.

resource "google_project_iam_member" "nodes" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
  ])

  project = local.project
  role    = each.value
  member  = google_service_account.role["nodes"].member
}

resource "google_artifact_registry_repository_iam_member" "nodes_pull" {
  for_each = local.app_repositories

  project    = each.value.project
  location   = each.value.location
  repository = each.value.repository
  role       = "roles/artifactregistry.reader"
  member     = google_service_account.role["nodes"].member
}
