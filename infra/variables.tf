# Inputs. Everything about the installation itself (project, regions, topics, apps) comes
# from the geodeploy config file, the same file the functions read; these variables only
# say where that file is and how the infrastructure around it is sized.

variable "config_path" {
  description = "The geodeploy config file (relative to infra/). It is also bundled into the functions' source as geodeploy.yaml."
  type        = string
  default     = "../geodeploy.yaml"
}

variable "create_images_topic" {
  description = "Create the images topic (`gcr` by default). Artifact Registry creates it when its API is enabled, so normally it is only looked up."
  type        = bool
  default     = false
}

variable "master_authorized_networks" {
  description = "CIDR ranges (besides Google Cloud's public ranges, from which the functions call) allowed to reach the clusters' control planes, e.g. an office or a bastion."
  type = list(object({
    cidr_block   = string
    display_name = string
  }))
  default = []
}

variable "node_machine_type" {
  description = "Machine type of the spot node pools. The app requests 1 CPU per pod (the seed's value), so 4 vCPUs hold 3 pods."
  type        = string
  default     = "e2-standard-4"
}

variable "node_min_count" {
  description = "Minimum nodes per spot node pool (per cluster zone)."
  type        = number
  default     = 1
}

variable "node_max_count" {
  description = "Maximum nodes per spot node pool (per cluster zone)."
  type        = number
  default     = 5
}

variable "deletion_protection" {
  description = "Refuse to destroy the clusters; set false only to tear an installation down."
  type        = bool
  default     = true
}
