# Notifications: the webhooks' secrets, and the notify function's access to exactly those.
# The function itself, its identity and its subscriptions (results, drift reports, dead
# letters) come from local.functions like every other (locals.tf, functions.tf, pubsub.tf);
# all of it exists only when the config names webhooks (notifications.webhooks).
#
# A webhook's URL is a credential (anyone holding a Slack webhook URL can post to the
# channel), and a json webhook's signing key is one too: neither passes through Terraform
# (it would land in the state). Add each by hand, once and on every rotation:
#
#   printf '%s' "$WEBHOOK_URL" | gcloud secrets versions add <url_secret> --data-file=-
#   openssl rand -hex 32 | tr -d '\n' | gcloud secrets versions add <signing_secret> --data-file=-
#
# and give the receiver the same key. The function reads the latest version of each when
# an instance starts.

resource "google_secret_manager_secret" "webhook" {
  for_each = toset(local.webhook_secrets)

  secret_id = each.key
  labels    = local.labels

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_iam_member" "webhook_reader" {
  for_each = { for key, grant in local.secret_grants : key => grant if contains(local.webhook_secrets, grant.secret) }

  secret_id = google_secret_manager_secret.webhook[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.role[each.value.identity].member
}
