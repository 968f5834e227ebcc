# One GKE cluster per region of the config, at regions[].cluster.location and named
# regions[].cluster.name, on spot VMs: the seed's "preemptible nodes, chaos engineering for
# free". A reclaimed node is exactly the failure geodeploy is built to absorb: the
# Deployment's replicas, anti-affinity and PDB keep serving, and when a whole region goes
# bad, reconcile-traffic drains its Cloudflare pool.
#
# Each region gets its own VPC, so no address range has to be coordinated between regions
# (the clusters never talk to each other; the functions reach each control plane through
# its public endpoint). Nodes are private; Cloud NAT gives them egress, Private Google
# Access lets them pull from Artifact Registry.

resource "google_compute_network" "region" {
  for_each = local.regions_by_name

  name                    = "${local.name}-${each.key}"
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"
}

# Ingress nothing by default, and log what is refused. GKE adds its own rules (control
# plane to nodes, node to node, load-balancer health checks and the Service's port) at
# priority 1000, above this one.
resource "google_compute_firewall" "deny_ingress" {
  for_each = local.regions_by_name

  name          = "${local.name}-${each.key}-deny-ingress"
  network       = google_compute_network.region[each.key].id
  direction     = "INGRESS"
  priority      = 65534
  source_ranges = ["0.0.0.0/0"]

  deny {
    protocol = "all"
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_subnetwork" "region" {
  for_each = local.regions_by_name

  name                     = "${local.name}-${each.key}"
  region                   = each.key
  network                  = google_compute_network.region[each.key].id
  ip_cidr_range            = "10.0.0.0/20"
  private_ip_google_access = true

  secondary_ip_range {
    range_name    = "pods"
    ip_cidr_range = "10.4.0.0/14"
  }
  secondary_ip_range {
    range_name    = "services"
    ip_cidr_range = "10.8.0.0/20"
  }

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_router" "region" {
  for_each = local.regions_by_name

  name    = "${local.name}-${each.key}"
  region  = each.key
  network = google_compute_network.region[each.key].id
}

resource "google_compute_router_nat" "region" {
  for_each = local.regions_by_name

  name                               = "${local.name}-${each.key}"
  region                             = each.key
  router                             = google_compute_router.region[each.key].name
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# The regional static IP the app's Service binds to (the seed's `gcloud compute addresses
# create`), and the address Cloudflare's pool for the region points at. `address` is set
# from the config, so Terraform and the config cannot disagree; GCP only lets you reserve
# an external address you held before, so a new installation reserves it first and
# imports it (docs/infra.md).
resource "google_compute_address" "region" {
  for_each = local.regions_by_name

  name         = each.value.static_ip.name
  region       = each.key
  address      = each.value.static_ip.address
  address_type = "EXTERNAL"
  network_tier = "PREMIUM"
}

resource "google_container_cluster" "region" {
  for_each = local.regions_by_name
  # checkov:skip=CKV_GCP_65:Google Groups for RBAC needs a Google Workspace domain; the deployer identities are bound to RBAC as users (docs/infra.md)
  # checkov:skip=CKV_GCP_69:the default node pool is removed at creation; the spot pool runs the GKE metadata server (node_config.workload_metadata_config)

  name     = each.value.cluster.name
  location = each.value.cluster.location

  # The node pool below replaces the default one.
  remove_default_node_pool = true
  initial_node_count       = 1
  deletion_protection      = var.deletion_protection

  network         = google_compute_network.region[each.key].id
  subnetwork      = google_compute_subnetwork.region[each.key].id
  networking_mode = "VPC_NATIVE"
  ip_allocation_policy {
    cluster_secondary_range_name  = "pods"
    services_secondary_range_name = "services"
  }

  # Private nodes; the control plane keeps a public endpoint, because the functions call
  # it from Google Cloud's public ranges (gcp_public_cidrs_access_enabled). Reaching it
  # still takes a Google identity with container.clusters.get and an RBAC binding.
  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = false
    master_ipv4_cidr_block  = "172.16.0.0/28"
  }
  master_authorized_networks_config {
    gcp_public_cidrs_access_enabled = true
    dynamic "cidr_blocks" {
      for_each = var.master_authorized_networks
      content {
        cidr_block   = cidr_blocks.value.cidr_block
        display_name = cidr_blocks.value.display_name
      }
    }
  }

  release_channel {
    channel = "REGULAR"
  }

  workload_identity_config {
    workload_pool = "${local.project}.svc.id.goog"
  }

  enable_shielded_nodes       = true
  enable_legacy_abac          = false
  enable_intranode_visibility = true

  network_policy {
    enabled  = true
    provider = "CALICO"
  }
  addons_config {
    network_policy_config {
      disabled = false
    }
    http_load_balancing {
      disabled = false
    }
  }

  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  logging_service    = "logging.googleapis.com/kubernetes"
  monitoring_service = "monitoring.googleapis.com/kubernetes"

  binary_authorization {
    evaluation_mode = "PROJECT_SINGLETON_POLICY_ENFORCE"
  }

  resource_labels = local.labels
}

resource "google_container_node_pool" "spot" {
  for_each = local.regions_by_name

  name     = "spot"
  cluster  = google_container_cluster.region[each.key].id
  location = each.value.cluster.location

  initial_node_count = var.node_min_count
  autoscaling {
    min_node_count = var.node_min_count
    max_node_count = var.node_max_count
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    spot         = true
    machine_type = var.node_machine_type
    image_type   = "COS_CONTAINERD"
    disk_type    = "pd-balanced"
    disk_size_gb = 50

    service_account = google_service_account.role["nodes"].email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]

    workload_metadata_config {
      mode = "GKE_METADATA"
    }
    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
    metadata = {
      disable-legacy-endpoints = "true"
    }
    labels = local.labels
  }

  lifecycle {
    # The autoscaler owns the node count once the pool exists.
    ignore_changes = [initial_node_count]
  }
}
