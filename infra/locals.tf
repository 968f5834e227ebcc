# Everything derived from the geodeploy config file. This file only reads var.config_path
# (no resources, no data sources), so its values can be evaluated on their own: the tests
# in tests/infra/test_terraform.py evaluate them for several configs and compare the
# result with shared/topology.py.

locals {
  config = yamldecode(file(var.config_path))
}

# Defaults: the same values the Python model gives a key the config leaves out. Keep this
# block in step with shared/config.py (Config.name, Topics, Rollout.call_budget_seconds,
# Drift, Cloudflare.api_token_secret, Region.wave); tests/infra checks it against the model.
locals {
  defaults = {
    name = "geodeploy"
    topics = {
      images        = "gcr"
      deploy_prefix = "geodeploy-deploy"
      results       = "geodeploy-results"
      control       = "geodeploy-control"
      drift         = "geodeploy-drift"
      drift_reports = "geodeploy-drift-reports"
      dead_letter   = "geodeploy-dead-letter"
    }
    call_budget_seconds = 420
    drift_schedule      = "0 */6 * * *"
    drift_time_zone     = "Etc/UTC"
    api_token_secret    = "cloudflare-api-token"
    wave                = 1
  }
}

locals {
  project = local.config.project
  name    = coalesce(try(local.config.name, null), local.defaults.name)

  regions = [
    for r in local.config.regions : {
      name      = r.name
      cluster   = { location = r.cluster.location, name = r.cluster.name }
      static_ip = { name = r.static_ip.name, address = r.static_ip.address }
      wave      = coalesce(try(r.wave, null), local.defaults.wave)
    }
  ]
  regions_by_name = { for r in local.regions : r.name => r }

  # The central functions run here; default: the first region.
  functions_region = coalesce(try(local.config.functions_region, null), local.config.regions[0].name)

  topics = {
    images        = coalesce(try(local.config.topics.images, null), local.defaults.topics.images)
    deploy_prefix = coalesce(try(local.config.topics.deploy_prefix, null), local.defaults.topics.deploy_prefix)
    results       = coalesce(try(local.config.topics.results, null), local.defaults.topics.results)
    control       = coalesce(try(local.config.topics.control, null), local.defaults.topics.control)
    drift         = coalesce(try(local.config.topics.drift, null), local.defaults.topics.drift)
    drift_reports = coalesce(try(local.config.topics.drift_reports, null), local.defaults.topics.drift_reports)
    dead_letter   = coalesce(try(local.config.topics.dead_letter, null), local.defaults.topics.dead_letter)
  }

  call_budget_seconds         = coalesce(try(local.config.rollout.call_budget_seconds, null), local.defaults.call_budget_seconds)
  drift_schedule              = coalesce(try(local.config.drift.schedule, null), local.defaults.drift_schedule)
  drift_time_zone             = coalesce(try(local.config.drift.time_zone, null), local.defaults.drift_time_zone)
  cloudflare_api_token_secret = coalesce(try(local.config.cloudflare.api_token_secret, null), local.defaults.api_token_secret)

  # Event-driven functions may run at most 540 s; a deploy call watches for the call
  # budget, plus time to apply, record and report.
  deploy_timeout_seconds = min(540, local.call_budget_seconds + 60)
}

# Topics geodeploy creates. The images topic is Artifact Registry's (see pubsub.tf).
locals {
  deploy_topics = { for r in local.regions : r.name => "${local.topics.deploy_prefix}-${r.name}" }
  central_topics = {
    results       = local.topics.results
    control       = local.topics.control
    drift         = local.topics.drift
    drift_reports = local.topics.drift_reports
    dead_letter   = local.topics.dead_letter
  }
}

# The functions: the same list as shared/topology.py's functions_of(config), keyed by the
# deployed name. `identity` names the service account the function runs as (iam.tf).
# `serialized`: one instance, one request at a time, so reconciles never race.
locals {
  central_functions = {
    "${local.name}-on-image-pushed" = {
      entry_point     = "on_image_pushed"
      topics          = [local.topics.images]
      location        = local.functions_region
      region          = null
      serialized      = false
      timeout_seconds = 60
      memory          = "512Mi"
      max_instances   = 10
      identity        = "image_pushed"
    }
    "${local.name}-on-control" = {
      entry_point     = "on_control"
      topics          = [local.topics.control]
      location        = local.functions_region
      region          = null
      serialized      = false
      timeout_seconds = 60
      memory          = "512Mi"
      max_instances   = 3
      identity        = "control"
    }
    "${local.name}-on-deploy-result" = {
      entry_point     = "on_deploy_result"
      topics          = [local.topics.results]
      location        = local.functions_region
      region          = null
      serialized      = false
      timeout_seconds = 120
      memory          = "512Mi"
      max_instances   = 10
      identity        = "waves"
    }
    "${local.name}-reconcile-traffic" = {
      entry_point     = "reconcile_traffic"
      topics          = [local.topics.results, local.topics.drift]
      location        = local.functions_region
      region          = null
      serialized      = true
      timeout_seconds = 120
      memory          = "512Mi"
      max_instances   = 1
      identity        = "traffic"
    }
    "${local.name}-check-drift" = {
      entry_point     = "check_drift"
      topics          = [local.topics.drift]
      location        = local.functions_region
      region          = null
      serialized      = false
      timeout_seconds = 300
      memory          = "512Mi"
      max_instances   = 2
      identity        = "drift"
    }
  }

  # One deploy function per region, deployed in that region.
  regional_functions = {
    for r in local.regions : "${local.name}-deploy-${r.name}" => {
      entry_point     = "deploy_region"
      topics          = ["${local.topics.deploy_prefix}-${r.name}"]
      location        = r.name
      region          = r.name
      serialized      = false
      timeout_seconds = local.deploy_timeout_seconds
      memory          = "1Gi"
      max_instances   = 5
      identity        = "deploy-${r.name}"
    }
  }

  # Called by people over HTTP (IAM-protected: status_page.tf), not by Pub/Sub: no topics.
  http_functions = {
    "${local.name}-status-page" = {
      entry_point     = "status_page"
      topics          = []
      location        = local.functions_region
      region          = null
      serialized      = false
      timeout_seconds = 60
      memory          = "512Mi"
      max_instances   = 2
      identity        = "status_page"
    }
  }
  # What Pub/Sub pushes to (the push invoker's grants, pubsub.tf's subscriptions).
  event_functions = merge(local.central_functions, local.regional_functions)

  functions = merge(local.event_functions, local.http_functions)

  # One push subscription per function and trigger topic, named like
  # shared.topology.subscription_name: <function>--<topic>.
  subscriptions = {
    for pair in flatten([
      for fname, f in local.functions : [for topic in f.topics : { function = fname, topic = topic }]
    ]) : "${pair.function}--${pair.topic}" => pair
  }
}

# Service accounts, one per role (iam.tf grants each only what it needs). account_id is at
# most 30 characters: a regional deployer whose readable id would be longer is named with
# a short, stable hash of its region instead.
locals {
  service_accounts = merge(
    {
      image_pushed = { account_id = "${local.name}-image-pushed", display_name = "${local.name}: on-image-pushed function" }
      control      = { account_id = "${local.name}-control", display_name = "${local.name}: on-control function" }
      waves        = { account_id = "${local.name}-waves", display_name = "${local.name}: on-deploy-result function (waves)" }
      traffic      = { account_id = "${local.name}-traffic", display_name = "${local.name}: reconcile-traffic function" }
      drift        = { account_id = "${local.name}-drift", display_name = "${local.name}: check-drift function" }
      status_page  = { account_id = "${local.name}-status-page", display_name = "${local.name}: status-page function" }
      push         = { account_id = "${local.name}-push", display_name = "${local.name}: Pub/Sub push invoker" }
      build        = { account_id = "${local.name}-build", display_name = "${local.name}: builds the functions" }
      nodes        = { account_id = "${local.name}-nodes", display_name = "${local.name}: GKE nodes" }
    },
    {
      for r in local.regions : "deploy-${r.name}" => {
        account_id   = length("${local.name}-deploy-${r.name}") <= 30 ? "${local.name}-deploy-${r.name}" : "${local.name}-dp-${substr(sha1(r.name), 0, 8)}"
        display_name = "${local.name}: deploy function for ${r.name}"
      }
    }
  )

  # The apps' Artifact Registry repositories (<location>-docker.pkg.dev/<project>/<repository>/<image>),
  # which the nodes pull from. Images elsewhere need their own grant.
  app_repository_paths = distinct([
    for a in local.config.apps : join("/", slice(split("/", a.repository), 0, 3))
    if endswith(split("/", a.repository)[0], "-docker.pkg.dev") && length(split("/", a.repository)) >= 4
  ])
  app_repositories = {
    for path in local.app_repository_paths : path => {
      location   = trimsuffix(split("/", path)[0], "-docker.pkg.dev")
      project    = split("/", path)[1]
      repository = split("/", path)[2]
    }
  }

  # On every resource that takes labels (the provider adds managed-by = terraform).
  labels = { "geodeploy" = local.name }
}

# What each identity's code path uses: the IAM half of the access table in
# shared/topology.py (functions_of(...).access), which tests/infra compares with this one.
# The Kubernetes half (RBAC) is rendered from the same table by `geodeploy rbac`.
#   publishes  topics it publishes to (roles/pubsub.publisher on each)
#   clusters   whether it connects to the clusters (container.clusters.get)
#   secrets    secrets it reads (roles/secretmanager.secretAccessor on each)
locals {
  first_wave        = min([for r in local.regions : r.wave]...)
  first_wave_topics = [for r in local.regions : local.deploy_topics[r.name] if r.wave == local.first_wave]
  later_wave_topics = [for r in local.regions : local.deploy_topics[r.name] if r.wave != local.first_wave]

  access = merge(
    {
      # a push starts the first wave
      image_pushed = { publishes = local.first_wave_topics, clusters = false, secrets = [] }
      # rollbacks go to every region (manual deploys to the first wave); `previous` reads the records
      control = { publishes = values(local.deploy_topics), clusters = true, secrets = [] }
      # the later waves, once every region of a wave has succeeded (read from their records)
      waves   = { publishes = local.later_wave_topics, clusters = true, secrets = [] }
      traffic = { publishes = [], clusters = true, secrets = [local.cloudflare_api_token_secret] }
      # its report, and a heal request for reconcile-traffic (the one writer of Cloudflare)
      drift = { publishes = [local.topics.drift_reports, local.topics.drift], clusters = true, secrets = [local.cloudflare_api_token_secret] }
      # the status page reads what `geodeploy status` reads: the regions and the pools
      status_page = { publishes = [], clusters = true, secrets = [local.cloudflare_api_token_secret] }
    },
    { for r in local.regions : "deploy-${r.name}" => { publishes = [local.topics.results], clusters = true, secrets = [] } }
  )

  publisher_grants = {
    for pair in flatten([
      for identity, a in local.access : [for topic in a.publishes : { identity = identity, topic = topic }]
    ]) : "${pair.identity}/${pair.topic}" => pair
  }
  cluster_readers = [for identity, a in local.access : identity if a.clusters]
  secret_grants = {
    for pair in flatten([
      for identity, a in local.access : [for secret in a.secrets : { identity = identity, secret = secret }]
    ]) : "${pair.identity}/${pair.secret}" => pair
  }
}

# The manifests the apps bring (apps[].source: `template: <file>`, `directory: <dir>`,
# every *.yaml and *.yml directly in it, or `kustomize: <dir>`, the rendering that
# `geodeploy kustomize` wrote in each region's kustomization directory before the plan),
# by path relative to the config's directory.
# functions.tf bundles each at that same path beside geodeploy.yaml, which is where the
# functions' config loader looks for them (shared/config.py DirectoryFiles). A `builtin`
# source, or none, brings no file.
locals {
  config_directory = dirname(var.config_path)
  manifest_directories = [
    for a in local.config.apps : trimsuffix(a.source.directory, "/") if try(a.source.directory, null) != null
  ]
  manifest_files = sort(distinct(concat(
    [for a in local.config.apps : a.source.template if try(a.source.template, null) != null],
    flatten([
      for a in local.config.apps : [
        for r in local.config.regions : "${trimsuffix(replace(a.source.kustomize, "__REGION__", r.name), "/")}/geodeploy-rendered.yaml"
      ] if try(a.source.kustomize, null) != null
    ]),
    flatten([
      for d in local.manifest_directories : [
        for f in setunion(
          fileset("${local.config_directory}/${d}", "*.yaml"),
          fileset("${local.config_directory}/${d}", "*.yml"),
        ) : "${d}/${f}"
      ]
    ]),
  )))
}
