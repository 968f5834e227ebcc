output "functions" {
  description = "Each function's location and URL (internal ingress: only Pub/Sub push reaches it)."
  value = {
    for name, fn in google_cloudfunctions2_function.fn : name => {
      location = fn.location
      uri      = fn.service_config[0].uri
    }
  }
}

output "clusters" {
  description = "Each region's cluster, as shared/config.py names it."
  value = {
    for region, cluster in google_container_cluster.region : region => {
      id       = cluster.id
      location = cluster.location
      endpoint = cluster.endpoint
    }
  }
}

output "static_addresses" {
  description = "Each region's reserved address (the Service's loadBalancerIP and the Cloudflare pool's origin)."
  value       = { for region, address in google_compute_address.region : region => address.address }
}

output "deployer_service_accounts" {
  description = "The identity of each region's deploy function: bind it with Kubernetes RBAC in that region's cluster (docs/infra.md)."
  value       = { for region in keys(local.regions_by_name) : region => google_service_account.role["deploy-${region}"].email }
}

output "central_service_accounts" {
  description = "The identities of the central functions that read the clusters (docs/infra.md: RBAC)."
  value       = { for key in ["waves", "traffic", "drift"] : key => google_service_account.role[key].email }
}

output "topics" {
  description = "Where to publish: control messages (rollback, manual deploy) and drift checks."
  value = {
    control       = google_pubsub_topic.central["control"].name
    drift         = google_pubsub_topic.central["drift"].name
    drift_reports = google_pubsub_topic.central["drift_reports"].name
    dead_letter   = google_pubsub_topic.central["dead_letter"].name
  }
}

output "cloudflare_token_secret" {
  description = "Add the token with: gcloud secrets versions add <this> --data-file=-"
  value       = google_secret_manager_secret.cloudflare_token.secret_id
}
