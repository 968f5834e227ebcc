# The Cloud Functions (2nd gen): one per entry of shared/topology.py's functions_of(config)
# (local.functions), all built from one source archive that carries the config as
# geodeploy.yaml, with the manifests its apps bring beside it, so every function of every
# region runs with the same files Terraform read.
# Their triggers are the push subscriptions in pubsub.tf, not event_trigger.

locals {
  source_root = "${path.module}/.."
  source_files = setunion(
    ["main.py", "requirements.txt"],
    fileset(local.source_root, "functions/**/*.py"),
    fileset(local.source_root, "shared/**/*.py"),
  )
}

data "archive_file" "source" {
  type = "zip"
  # Inside .terraform/, Terraform's own scratch directory (ignored by git).
  output_path = "${path.module}/.terraform/geodeploy-functions-source.zip"

  dynamic "source" {
    for_each = local.source_files
    content {
      filename = source.value
      content  = file("${local.source_root}/${source.value}")
    }
  }
  source {
    filename = "geodeploy.yaml"
    content  = file(var.config_path)
  }
  # The apps' own manifests, at the same path relative to geodeploy.yaml as to the config
  # (locals.tf), so the config the functions load finds them. (None can land on the code
  # or the config: such a file is not Kubernetes YAML, and the config would not load.)
  dynamic "source" {
    for_each = local.manifest_files
    content {
      filename = source.value
      content  = file("${local.config_directory}/${source.value}")
    }
  }
}

resource "google_storage_bucket" "source" {
  # checkov:skip=CKV_GCP_62:holds only the functions' source archives, written by Terraform; turn on Data Access audit logs if reads must be traced

  name                        = "${local.project}-${local.name}-functions-source"
  location                    = upper(local.functions_region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  versioning {
    enabled = true
  }

  # Superseded archives are only kept for a while.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket_object" "source" {
  # The content hash in the name makes a changed archive (code or config) redeploy.
  name   = "functions-source-${data.archive_file.source.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.source.output_path
}

# The functions' images go to a repository of geodeploy's own in each function location,
# not to the gcf-artifacts repository Cloud Functions would create on the first deploy: a
# repository Terraform creates exists before the build needs it, so the build identity can
# be granted push on exactly these (iam.tf) instead of on every repository in the project,
# the apps' included, where a push is a deploy.
locals {
  functions_repository_id = "${local.name}-functions"
  function_locations      = distinct([for f in values(local.functions) : f.location])
}

resource "google_artifact_registry_repository" "functions" {
  for_each = toset(local.function_locations)
  # checkov:skip=CKV_GCP_84:holds only the functions' images, built from the source archive above (no secrets in it); Google-managed encryption suffices

  location      = each.key
  repository_id = local.functions_repository_id
  format        = "DOCKER"
  description   = "${local.name}: the Cloud Functions' images (written only by the build identity)"
  labels        = local.labels

  # Each deploy adds an image per function. Keep each function's 5 newest (the serving one
  # among them); delete older ones after 30 days.
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-newest"
    action = "KEEP"
    most_recent_versions {
      keep_count = 5
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }

  lifecycle {
    # The build may push here; that must never be an app's repository.
    precondition {
      condition     = !contains(local.app_repository_paths, "${each.key}-docker.pkg.dev/${local.project}/${local.functions_repository_id}")
      error_message = "An app's repository is named ${local.functions_repository_id} in ${each.key}: the functions' builds would push into it. Rename the app's repository or set the config's name."
    }
  }
}

resource "google_cloudfunctions2_function" "fn" {
  for_each = local.functions

  name        = each.key
  location    = each.value.location
  description = length(each.value.topics) > 0 ? "geodeploy ${each.value.entry_point}; triggered by ${join(", ", each.value.topics)}" : "geodeploy ${each.value.entry_point}; opened by its viewers (IAM)"
  labels      = local.labels

  build_config {
    runtime         = "python312"
    entry_point     = each.value.entry_point
    service_account = google_service_account.role["build"].id
    # projects/<project>/locations/<location>/repositories/<name>-functions
    docker_repository = google_artifact_registry_repository.functions[each.value.location].id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory = each.value.memory
    timeout_seconds  = each.value.timeout_seconds
    # reconcile-traffic (serialized): one instance, one request at a time, so reconciles
    # never race; a push beyond that gets 429 and Pub/Sub retries it with backoff.
    max_instance_count               = each.value.max_instances
    min_instance_count               = 0
    max_instance_request_concurrency = 1
    # Pub/Sub push from the same project is internal traffic; nothing else may call. The
    # status page is opened from operators' machines (gcloud run services proxy): any
    # network may reach it, and Cloud Run's IAM check lets only its viewers in.
    ingress_settings               = contains(keys(local.http_functions), each.key) ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.role[each.value.identity].email
    environment_variables = merge(
      # The bundled config: the source root is /workspace in the gen2 Python runtime.
      { GEODEPLOY_CONFIG = "/workspace/geodeploy.yaml" },
      # shared/topology.py RUNTIME_ENVIRONMENT: functions-framework labels its own lines
      # with the call's execution id, as shared/logs.py labels ours.
      { LOG_EXECUTION_ID = "true" },
      each.value.region == null ? {} : { GEODEPLOY_REGION = each.value.region },
    )
  }

  depends_on = [google_project_iam_member.build, google_artifact_registry_repository_iam_member.build_push]
}
