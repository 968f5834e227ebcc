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
      entry_point = "on_deploy_result"
      # a release Cloudflare's verdict holds is looked at again on each drift-check tick
      topics          = local.edge_gates ? [local.topics.results, local.topics.drift] : [local.topics.results]
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
  event_functions = merge(local.central_functions, local.regional_functions, local.notify_functions)

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
    },
    { for identity in local.notify_identities : identity => { account_id = "${local.name}-notify", display_name = "${local.name}: notify function (webhooks)" } },
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

  # Promotion gates (config `gates`): whether one waits for Cloudflare's verdict
  # (shared/topology.py decides the same).
  edge_gates = length([for g in try(local.config.gates, []) : g if try(g.require_edge_healthy, false)]) > 0

  access = merge(
    {
      # a push starts the first wave
      image_pushed = { publishes = local.first_wave_topics, clusters = false, secrets = [] }
      # rollbacks go to every region (manual deploys to the first wave); `previous` reads the records
      control = { publishes = values(local.deploy_topics), clusters = true, secrets = [] }
      # the later waves, once every region of a wave has succeeded (read from their records)
      # (and, when a gate requires it, Cloudflare's verdict on the wave's pools)
      waves   = { publishes = local.later_wave_topics, clusters = true, secrets = local.edge_gates ? [local.cloudflare_api_token_secret] : [] }
      traffic = { publishes = [], clusters = true, secrets = [local.cloudflare_api_token_secret] }
      # its report, and a heal request for reconcile-traffic (the one writer of Cloudflare)
      drift = { publishes = [local.topics.drift_reports, local.topics.drift], clusters = true, secrets = [local.cloudflare_api_token_secret] }
      # the status page reads what `geodeploy status` reads: the regions and the pools
      status_page = { publishes = [], clusters = true, secrets = [local.cloudflare_api_token_secret] }
    },
    { for r in local.regions : "deploy-${r.name}" => { publishes = [local.topics.results], clusters = true, secrets = [] } },
    # reads exactly the webhooks' URLs and signing keys (notify.tf grants them)
    { for identity in local.notify_identities : identity => { publishes = [], clusters = false, secrets = local.webhook_secrets } },
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

# The notify function (shared/topology.py): deployed only when the config names webhooks.
# It listens to the results, drift-reports and dead-letter topics and reads exactly the
# secrets the webhooks name (url_secret, and signing_secret for a json webhook).
locals {
  webhooks = try(local.config.notifications.webhooks, [])
  webhook_secrets = distinct(flatten([
    for w in local.webhooks : concat([w.url_secret], try(w.signing_secret, null) == null ? [] : [w.signing_secret])
  ]))
  notify_identities = length(local.webhooks) > 0 ? ["notify"] : []
  notify_functions = {
    for identity in local.notify_identities : "${local.name}-notify" => {
      entry_point     = "notify"
      topics          = [local.topics.results, local.topics.drift_reports, local.topics.dead_letter]
      location        = local.functions_region
      region          = null
      serialized      = false
      timeout_seconds = 60
      memory          = "512Mi"
      max_instances   = 3
      identity        = identity
    }
  }
}

# Monitoring (monitoring.tf): the same log-based metrics and alert thresholds as
# shared/monitoring.py's log_metrics_of / alert_policies_of, which tests/infra compares
# with these. The event names are shared/log_events.py's.
locals {
  alerts_defaults = {
    drained_minutes           = 30
    dead_letter_messages      = 1
    failed_rollouts           = 1
    drift_check_slack_minutes = 30
  }
  alerts = {
    notification_channels     = try(local.config.alerts.notification_channels, null) == null ? [] : local.config.alerts.notification_channels
    drained_minutes           = coalesce(try(local.config.alerts.drained_minutes, null), local.alerts_defaults.drained_minutes)
    dead_letter_messages      = coalesce(try(local.config.alerts.dead_letter_messages, null), local.alerts_defaults.dead_letter_messages)
    failed_rollouts           = coalesce(try(local.config.alerts.failed_rollouts, null), local.alerts_defaults.failed_rollouts)
    drift_check_slack_minutes = try(local.config.alerts.drift_check_slack_minutes, null) == null ? local.alerts_defaults.drift_check_slack_minutes : local.config.alerts.drift_check_slack_minutes
  }

  # The drift schedule's longest gap between two runs, for a daily-repeating cron (day of
  # month, month and day of week `*`; minute and hour `*`, `*/n`, `a`, `a-b`, `a-b/n`, or
  # lists): as shared/schedule.py works it out. null for any other schedule: no alert
  # unless alerts.drift_check_overdue_minutes states its time.
  drift_cron = split(" ", trimspace(local.drift_schedule))
  drift_cron_values = length(local.drift_cron) != 5 || join(" ", slice(local.drift_cron, 2, min(5, length(local.drift_cron)))) != "* * *" ? null : try({
    for name, f in { minute = { text = local.drift_cron[0], size = 60 }, hour = { text = local.drift_cron[1], size = 24 } } :
    name => sort(distinct(flatten([
      for item in split(",", f.text) : [
        for v in range(
          split("/", item)[0] == "*" ? 0 : tonumber(split("-", split("/", item)[0])[0]),
          (split("/", item)[0] == "*" ? f.size - 1 : tonumber(split("-", split("/", item)[0])[length(split("-", split("/", item)[0])) - 1])) + 1,
          length(split("/", item)) > 1 ? tonumber(split("/", item)[1]) : 1
        ) : format("%04d", v)
      ]
    ])))
  }, null)
  drift_run_minutes = local.drift_cron_values == null ? [] : flatten([
    for h in local.drift_cron_values.hour : [for m in local.drift_cron_values.minute : tonumber(h) * 60 + tonumber(m)]
  ])
  drift_longest_gap_minutes = length(local.drift_run_minutes) == 0 ? null : max([
    for i, t in local.drift_run_minutes : (i + 1 < length(local.drift_run_minutes) ? local.drift_run_minutes[i + 1] : local.drift_run_minutes[0] + 1440) - t
  ]...)
  # 0: no alert: stated, or a schedule not worked out or sparser than an absence can wait
  # for (1410 minutes), as in shared/config.py.
  drift_check_overdue_minutes = (
    try(local.config.alerts.drift_check_overdue_minutes, null) != null ? local.config.alerts.drift_check_overdue_minutes :
    local.drift_longest_gap_minutes == null ? 0 :
    local.drift_longest_gap_minutes + local.alerts.drift_check_slack_minutes > 1410 ? 0 :
    local.drift_longest_gap_minutes + local.alerts.drift_check_slack_minutes
  )

  # Each metric counts the lines with one of its events from the functions that write them.
  log_metric_sources = {
    deploy_results   = { entry_points = ["deploy_region"], events = ["result_published"], labels = { status = "status", app = "app", region = "region" } }
    rollbacks        = { entry_points = ["deploy_region", "on_control"], events = ["automatic_rollback_started", "rollback_requested"], labels = { event = "event", app = "app" } }
    drift_findings   = { entry_points = ["check_drift"], events = ["drift_detected"], labels = { system = "system", app = "app", region = "region" } }
    drift_checks     = { entry_points = ["check_drift"], events = ["drift_checked"], labels = {} }
    drained_too_long = { entry_points = ["reconcile_traffic"], events = ["pool_drained"], labels = { region = "drained_region" } }
  }
  log_metrics = {
    for key, m in local.log_metric_sources : key => {
      name = "${local.name}-${replace(key, "_", "-")}"
      filter = join(" AND ", concat(
        [
          "resource.type=\"cloud_run_revision\"",
          "(${join(" OR ", [for n, f in local.functions : "resource.labels.service_name=\"${n}\"" if contains(m.entry_points, f.entry_point)])})",
          "(${join(" OR ", [for e in m.events : "jsonPayload.event=\"${e}\""])})",
        ],
        key == "drained_too_long" ? ["jsonPayload.drained_seconds>=${local.alerts.drained_minutes * 60}"] : [],
      ))
      labels = m.labels
    }
  }
}
