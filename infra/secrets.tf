# The Cloudflare API token: the secret only. Its value never passes through Terraform (it
# would land in the state); add it by hand, once and on every rotation:
#
#   printf '%s' "$CLOUDFLARE_API_TOKEN" | gcloud secrets versions add <api_token_secret> --data-file=-
#
# The functions read the latest version; reconcile-traffic drops its cached token when
# Cloudflare answers 401/403, so a rotation needs no redeploy.
#
# The Cloudflare objects themselves (monitor, pools, load balancer) are deliberately NOT
# managed by Terraform: reconcile-traffic owns them and changes them at run time (it
# drains unhealthy regions); two owners of the same objects would undo each other.

resource "google_secret_manager_secret" "cloudflare_token" {
  secret_id = local.cloudflare_api_token_secret
  labels    = local.labels

  replication {
    auto {}
  }
}
