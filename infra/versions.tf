terraform {
  required_version = ">= 1.5.0"

  required_providers {
    # The release line tests/infra checks infra/ against (scripts/provider_schema.py):
    # 6.50 or a later 6.x, which only adds to that schema.
    google = {
      source  = "hashicorp/google"
      version = "~> 6.50"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.4"
    }
  }

  # State must outlive a Cloud Build run, so it lives in a GCS bucket, named at init:
  #   terraform -chdir=infra init -backend-config=bucket=<bucket> -backend-config=prefix=geodeploy
  # (cloudbuild.yaml passes ${_TF_STATE_BUCKET}; docs/infra.md says how to create it).
  backend "gcs" {}
}

provider "google" {
  project = local.project
  default_labels = {
    "managed-by" = "terraform"
  }
}

data "google_project" "this" {
  project_id = local.project
}

locals {
  # Google-managed service agents that act on geodeploy's behalf.
  pubsub_service_agent    = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  scheduler_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-cloudscheduler.iam.gserviceaccount.com"
}
