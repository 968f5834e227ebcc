# Binary Authorization: the clusters (binary_authorization in clusters.tf) enforce this
# project's policy, which admits only the apps' own images and denies everything else.
# Without a policy resource, Google's default (allow all) applies and the enforcement is
# only a formality.
#
# The policy is a project singleton: it also governs any other cluster in the project
# that enforces the project policy. A cluster without binary_authorization is unaffected.

locals {
  # geodeploy deploys every image by digest (<repository>@sha256:…). A trailing `*` does
  # not cross a `/`, so `<repository>@sha256:*` admits that image by any digest and
  # nothing else: not a sibling (<repository>-debug), not a nested path, not a tag.
  binauthz_admitted_patterns = distinct([for a in local.config.apps : "${a.repository}@sha256:*"])
}

resource "google_binary_authorization_policy" "apps_only" {
  project     = local.project
  description = "${local.name}: only the apps' images (by digest) and Google's GKE system images"

  # Google-maintained system images (kube-system, GKE add-ons such as Calico and the
  # metadata server) are exempted by Google's global policy, which Google keeps current;
  # without it, ALWAYS_DENY below would block the clusters' own components.
  global_policy_evaluation_mode = "ENABLE"

  dynamic "admission_whitelist_patterns" {
    for_each = local.binauthz_admitted_patterns
    content {
      name_pattern = admission_whitelist_patterns.value
    }
  }

  # Everything not admitted above is refused at Pod admission, and the refusal is logged.
  # To require an attestation for the apps too, see docs/infra.md ("Supply chain").
  default_admission_rule {
    evaluation_mode  = "ALWAYS_DENY"
    enforcement_mode = "ENFORCED_BLOCK_AND_AUDIT_LOG"
  }
}
