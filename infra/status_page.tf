# The status page (functions/status_page.py): an HTTP function that only the config's
# status_page.viewers may open. Cloud Run checks each request's identity token and this
# grant before the function runs; there is no public invoker (the config refuses the
# public members, and tests/infra checks that no grant names them). Operators open it with
# `gcloud run services proxy <name>-status-page --region <functions region>` (docs/infra.md).

locals {
  status_page_viewers = try(local.config.status_page.viewers, null) == null ? [] : local.config.status_page.viewers
  status_page_grants = {
    for pair in flatten([
      for fname in keys(local.http_functions) : [for member in local.status_page_viewers : { function = fname, member = member }]
    ]) : "${pair.function}/${pair.member}" => pair
  }
}

resource "google_cloud_run_service_iam_member" "status_page_viewer" {
  for_each = local.status_page_grants

  project  = local.project
  location = google_cloudfunctions2_function.fn[each.value.function].location
  service  = google_cloudfunctions2_function.fn[each.value.function].service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value.member
}
