"""The geodeploy configuration: one YAML file, the single source of truth for the
functions, the local sandbox, the Terraform in infra/ and CI.

Pure: parsing and validation only. Reading the file's path from the environment is
`shared.settings`' job. Every model forbids unknown keys, so a typo is an error that
names the key (see docs/configuration.md for the reference). The only files read are
the config (load_config) and, through DirectoryFiles, the manifests an app's template or
directory source names, beside it: once, at load, so rendering reads none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.errors import ConfigError, InvalidMessage
from shared.manifest_sources import BUILTIN, KUSTOMIZE, ManifestSource, SourceFiles, read_rendered, read_source
from shared.notification_kinds import NotificationStatus, WebhookKind
from shared.schedule import longest_gap_minutes
from shared.yaml_loading import load_strict

__all__ = ["Alerts", "App", "Config", "DirectoryFiles", "Region", "load_config", "parse_config"]

# Cloudflare's 13 geo-steering region codes.
CloudflareRegionCode = Literal[
    "WNAM", "ENAM", "WEU", "EEU", "NSAM", "SSAM", "OC", "ME", "NAF", "SAF", "SAS", "SEAS", "NEAS"
]

DnsLabel = Annotated[str, Field(pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")]
GcpRegion = Annotated[str, Field(pattern=r"^[a-z]+-[a-z]+[0-9]+$")]
Hex32 = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Ipv4 = Annotated[str, Field(pattern=r"^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$")]
Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G)?$")]


def _int_or_percent(value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]+%", value):
        return value
    raise ValueError("must be a number of pods (e.g. 1) or a percentage (e.g. 25%)")


# A rolling-update bound as Kubernetes takes it (IntOrString): a number of pods or a percentage.
IntOrPercent = Annotated[int | str, PlainValidator(_int_or_percent)]

# The longest an event-driven Cloud Function may run.
EVENT_FUNCTION_TIMEOUT_SECONDS = 540
# Every push subscription's retry and dead-letter policy (infra/pubsub.tf): a raise is
# redelivered after 10 s to 600 s of backoff; after the fifth attempt the message goes to
# the dead-letter topic.
PUSH_MIN_BACKOFF_SECONDS = 10
PUSH_MAX_BACKOFF_SECONDS = 600
PUSH_DELIVERY_ATTEMPTS = 5


def deliveries_to_decide(progress_deadline_seconds: int, call_budget_seconds: int) -> int:
    """How many deliveries of one deploy request a rollout that stalls from the start can
    take: one per call budget of watching until the progress deadline has passed, plus the
    delivery that sees ProgressDeadlineExceeded and rolls back. Backoff between deliveries
    is not counted: wall-clock time only brings the deadline sooner."""
    return progress_deadline_seconds // call_budget_seconds + 2


def event_age_to_decide(progress_deadline_seconds: int, call_budget_seconds: int) -> int:
    """How old a deploy request may be at the start of the delivery that decides its
    rollout: each earlier delivery may watch a whole call budget, then Pub/Sub may wait
    the subscription's maximum backoff before the next one."""
    earlier = deliveries_to_decide(progress_deadline_seconds, call_budget_seconds) - 1
    return earlier * (call_budget_seconds + PUSH_MAX_BACKOFF_SECONDS)


def _is_zero(bound: int | str) -> bool:
    """0 and "0%" (or "00%") both allow no pod at all."""
    return int(bound.removesuffix("%")) == 0 if isinstance(bound, str) else bound == 0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterRef(_Model):
    location: str = Field(min_length=1)  # a zone or a region, as GKE names it
    name: DnsLabel

    def resource_name(self, project: str) -> str:
        return f"projects/{project}/locations/{self.location}/clusters/{self.name}"


class StaticIp(_Model):
    name: DnsLabel
    address: Ipv4


class RegionTraffic(_Model):
    pool: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")]
    geo_regions: list[CloudflareRegionCode] = Field(min_length=1)


class Region(_Model):
    name: GcpRegion
    cluster: ClusterRef
    static_ip: StaticIp
    cloudflare: RegionTraffic
    wave: int = Field(default=1, ge=1)


class Probe(_Model):
    path: str = Field(pattern=r"^/")
    initial_delay_seconds: int = Field(ge=0)
    timeout_seconds: int = Field(ge=1)
    period_seconds: int = Field(ge=1)
    failure_threshold: int = Field(ge=1)
    success_threshold: int = Field(ge=1)


class Resources(_Model):
    requests_cpu: Quantity = "1"
    requests_memory: Quantity = "100Mi"
    limits_cpu: Quantity = "2"
    limits_memory: Quantity = "380Mi"


def _seed_readiness() -> Probe:
    return Probe(
        path="/_ready",
        initial_delay_seconds=20,
        timeout_seconds=4,
        period_seconds=5,
        failure_threshold=1,
        success_threshold=2,
    )


def _seed_liveness() -> Probe:
    return Probe(
        path="/healthz",
        initial_delay_seconds=20,
        timeout_seconds=2,
        period_seconds=2,
        failure_threshold=5,
        success_threshold=1,
    )


class Manifests(_Model):
    """What the rendered objects are made of; every default is the seed article's value."""

    container_name: DnsLabel = "app"
    traffic_port: int = Field(default=8080, ge=1, le=65535)
    monitoring_port: int = Field(default=8081, ge=1, le=65535)
    service_port: int = Field(default=80, ge=1, le=65535)
    min_replicas: int = Field(default=3, ge=1)
    max_replicas: int = Field(default=5, ge=1)
    cpu_target_percent: int = Field(default=200, ge=1)
    min_available: int = Field(default=2, ge=0)
    revision_history_limit: int = Field(default=2, ge=0)
    max_unavailable: IntOrPercent = "25%"
    max_surge: IntOrPercent = Field(default="200%", validate_default=True)
    resources: Resources = Resources()
    readiness: Probe = Field(default_factory=_seed_readiness)
    liveness: Probe = Field(default_factory=_seed_liveness)
    env: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], str] = {}

    @field_validator("max_surge")
    @classmethod
    def _surge_or_unavailable(cls, value: int | str, info: ValidationInfo) -> int | str:
        unavailable = info.data.get("max_unavailable")  # absent when it was invalid itself
        if unavailable is not None and _is_zero(value) and _is_zero(unavailable):
            raise ValueError(
                "cannot be 0 while max_unavailable is 0 too: the rolling update could then neither add "
                "nor remove a pod (Kubernetes refuses the Deployment)"
            )
        return value

    @model_validator(mode="after")
    def _check_counts(self) -> Manifests:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be at least min_replicas")
        if self.min_available > self.min_replicas:
            raise ValueError("min_available (the PDB) cannot exceed min_replicas")
        if self.traffic_port == self.monitoring_port:
            raise ValueError("traffic_port and monitoring_port must differ")
        if self.liveness.success_threshold != 1:
            raise ValueError("liveness.success_threshold must be 1 (Kubernetes rejects any other value)")
        return self


# Namespaces of the cluster itself (Kubernetes', GKE's): never an app's.
SYSTEM_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
SYSTEM_NAMESPACE_PREFIXES = ("kube-", "gke-", "gmp-")


class App(_Model):
    name: DnsLabel
    # Artifact Registry repository path of the image, e.g. europe-docker.pkg.dev/p/repo/app
    repository: Annotated[str, Field(pattern=r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+$")]
    # An RE2 regular expression the pushed tag must match in full. RE2 matches in linear
    # time: tags are chosen by whoever can push, so a backtracking engine could be made
    # to take forever on a pattern like `v([0-9]+\.?)+`.
    tag_filter: str = ".*"
    # Whether a push that carries no tag at all deploys; set false when tags must gate.
    deploy_untagged: bool = True
    namespace: DnsLabel
    # Where the objects come from (docs/configuration.md, "Manifest sources"); declared
    # after `namespace`, which its documents are checked against, and before `manifests`,
    # which only the builtin source reads.
    source: ManifestSource = ManifestSource()
    manifests: Manifests = Manifests()

    @field_validator("tag_filter")
    @classmethod
    def _compiles(cls, value: str) -> str:
        _tag_pattern(value)
        return value

    @field_validator("source")
    @classmethod
    def _read_documents(cls, source: ManifestSource, info: ValidationInfo) -> ManifestSource:
        namespace = info.data.get("namespace")
        if source.kind == BUILTIN or namespace is None:  # an invalid namespace is reported on its own
            return source
        files = (info.context or {}).get(_SOURCE_FILES)
        if files is None:
            raise ValueError("manifest files are read only by parse_config or load_config")
        if source.kind == KUSTOMIZE:
            return source  # one rendering per region: the config reads them (_read_rendered)
        return read_source(source, namespace, files)

    @field_validator("manifests")
    @classmethod
    def _only_for_builtin(cls, manifests: Manifests, info: ValidationInfo) -> Manifests:
        # Runs only when `manifests` is written: a brought source carries its own objects, and
        # silently ignoring the key would look like it took effect.
        source = info.data.get("source")
        if source is not None and source.kind != BUILTIN:
            raise ValueError(f"applies only to the builtin source; this app's objects come from its {source.kind}")
        return manifests

    @field_validator("namespace")
    @classmethod
    def _not_a_system_namespace(cls, value: str) -> str:
        # The deployer may create Deployments in the app's namespace: in kube-system or
        # default that would be a foothold in the cluster's own workloads.
        if value in SYSTEM_NAMESPACES or value.startswith(SYSTEM_NAMESPACE_PREFIXES):
            raise ValueError(f"{value!r} is a system namespace; give the app a namespace of its own")
        return value

    def accepts_tag(self, tag: str | None) -> bool:
        if tag is None:
            return self.deploy_untagged
        return _tag_pattern(self.tag_filter).fullmatch(tag) is not None


@lru_cache(maxsize=64)
def _tag_pattern(pattern: str) -> Any:
    """The compiled RE2 pattern, once per process. re2 is imported here, not at module
    import: loading a config that keeps the default filter does not import it."""
    import re2

    if _OPEN_LOWER_BOUND.search(pattern):
        # Python reads `{,3}` as 0 to 3 repeats, RE2 as the text "{,3}": a filter that
        # silently refuses every tag.
        raise ValueError("`{,n}` is literal text in RE2, not a repeat: write `{0,n}`")
    options = re2.Options()
    options.log_errors = False  # the error is ours to report, naming the key
    try:
        return re2.compile(pattern, options)
    except re2.error as e:
        detail = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise ValueError(
            f"not a valid RE2 regular expression (RE2 has no backreferences or lookaround): {detail}"
        ) from None


_OPEN_LOWER_BOUND = re.compile(r"(?<!\\)\{,[0-9]*\}")


class Monitor(_Model):
    type: Literal["http", "https"] = "http"
    method: Literal["GET", "HEAD"] = "GET"
    path: str = Field(default="/", pattern=r"^/")
    port: int = Field(default=0, ge=0, le=65535)  # 0: 80 for http, 443 for https
    expected_codes: str = "200"
    expected_body: str = ""
    interval: int = Field(default=60, ge=10, le=3600)
    timeout: int = Field(default=5, ge=1, le=10)
    retries: int = Field(default=2, ge=0, le=5)
    follow_redirects: bool = False
    allow_insecure: bool = False


class Cloudflare(_Model):
    account_id: Hex32
    zone_id: Hex32
    hostname: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    app: DnsLabel  # the app whose regions the load balancer steers users to
    api_token_secret: DnsLabel = "cloudflare-api-token"
    fallback_region: GcpRegion | None = None  # default: the first region
    proxied: bool = True
    monitor: Monitor = Monitor()


class Rollout(_Model):
    # How long one deploy_region call may watch before it reports "progressing" and lets
    # a redelivery finish the job; must stay inside the 540 s limit of event functions.
    # (Declared first: the rules on the two keys below are relative to it.)
    call_budget_seconds: int = Field(default=420, ge=10, le=EVENT_FUNCTION_TIMEOUT_SECONDS - 30)
    # Both checked against the budget even when left at their defaults.
    progress_deadline_seconds: int = Field(default=240, ge=10, validate_default=True)
    history_limit: int = Field(default=10, ge=2, le=50)
    # After an automatic rollback, how long the region must stay healthy before it is
    # reported recovered (and its Cloudflare pool restored).
    rollback_bake_seconds: int = Field(default=30, ge=0, le=300)
    # Events older than this are dropped rather than retried for the 24 h retry window.
    max_event_age_seconds: int = Field(default=3600, ge=60, validate_default=True)

    @field_validator("progress_deadline_seconds")
    @classmethod
    def _decided_within_the_deliveries(cls, value: int, info: ValidationInfo) -> int:
        budget = info.data.get("call_budget_seconds")
        if budget is not None and deliveries_to_decide(value, budget) > PUSH_DELIVERY_ATTEMPTS:
            limit = (PUSH_DELIVERY_ATTEMPTS - 1) * budget
            raise ValueError(
                f"must be less than {limit} s ({PUSH_DELIVERY_ATTEMPTS - 1} × call_budget_seconds): a stalled "
                f"rollout must fail before the last of the {PUSH_DELIVERY_ATTEMPTS} deliveries starts, so that "
                "delivery can still roll it back; later, the request is dead-lettered with the region half-done"
            )
        return value

    @field_validator("max_event_age_seconds")
    @classmethod
    def _outlives_the_redeliveries(cls, value: int, info: ValidationInfo) -> int:
        budget, deadline = info.data.get("call_budget_seconds"), info.data.get("progress_deadline_seconds")
        if budget is None or deadline is None:
            return value
        needed = event_age_to_decide(deadline, budget)
        if value < needed:
            deliveries = deliveries_to_decide(deadline, budget)
            raise ValueError(
                f"must be at least {needed} s: with progress_deadline_seconds {deadline} and call_budget_seconds "
                f"{budget}, a stalled rollout is decided and rolled back by delivery {deliveries}, which may come "
                f"{deliveries - 1} × ({budget} s + {PUSH_MAX_BACKOFF_SECONDS} s of Pub/Sub backoff) after the "
                "event was published; a younger limit drops it first and loses the deploy"
            )
        return value


class Drift(_Model):
    schedule: str = "0 */6 * * *"
    time_zone: str = "Etc/UTC"
    heal: bool = False


# --- alerts: thresholds of infra/monitoring.tf's alert policies ---------------------------

# The longest absence a Cloud Monitoring metric-absence condition can wait for (23.5 h).
MAX_ABSENCE_MINUTES = 1410


class Alerts(_Model):
    """Thresholds of the alert policies infra/ creates (shared/monitoring.py lists them)."""

    # Cloud Monitoring channels every policy notifies: projects/<project>/notificationChannels/<id>.
    notification_channels: list[Annotated[str, Field(pattern=r"^projects/[^/]+/notificationChannels/[0-9]+$")]] = []
    # A region whose pool reconcile_traffic has kept disabled longer than this.
    drained_minutes: int = Field(default=30, ge=1, le=10080)
    # Undelivered messages on the dead-letter subscription that raise the alert.
    dead_letter_messages: int = Field(default=1, ge=1)
    # Failed rollouts (results `failed` or `rolling_back`) of one app in one region within
    # 10 minutes that raise the alert.
    failed_rollouts: int = Field(default=1, ge=1)
    # A drift check overdue: no completed check for the schedule's longest gap plus this.
    drift_check_slack_minutes: int = Field(default=30, ge=0)
    # Or the overdue time itself, for a schedule geodeploy cannot work out; 0: no alert.
    drift_check_overdue_minutes: int | None = Field(default=None, ge=0, le=MAX_ABSENCE_MINUTES)

    @field_validator("drift_check_overdue_minutes")
    @classmethod
    def _an_absence_alert_waits_two_minutes(cls, value: int | None) -> int | None:
        if value == 1:
            raise ValueError("0 (no alert) or at least 2: Cloud Monitoring waits at least 2 minutes for an absence")
        return value


class Topics(_Model):
    images: DnsLabel = "gcr"
    deploy_prefix: DnsLabel = "geodeploy-deploy"  # one topic per region: <prefix>-<region>
    results: DnsLabel = "geodeploy-results"
    control: DnsLabel = "geodeploy-control"
    drift: DnsLabel = "geodeploy-drift"
    drift_reports: DnsLabel = "geodeploy-drift-reports"
    # Where push subscriptions send a message after its last failed delivery attempt.
    dead_letter: DnsLabel = "geodeploy-dead-letter"


# --- notifications: the webhooks the notify function posts to ---------------------------

# A Secret Manager secret id.
SecretId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,255}$")]


class WebhookFilters(_Model):
    """Which events a webhook gets; an empty list lets every value through."""

    statuses: list[NotificationStatus] = []
    apps: list[DnsLabel] = []


class Webhook(_Model):
    name: DnsLabel
    kind: WebhookKind
    # The secret holding the webhook's URL (a URL with a token in it is a credential).
    url_secret: SecretId
    # json only: the secret holding the HMAC-SHA256 key the body is signed with.
    signing_secret: SecretId | None = None
    filters: WebhookFilters = WebhookFilters()

    @model_validator(mode="after")
    def _signed_when_json(self) -> Webhook:
        if self.kind == WebhookKind.JSON and self.signing_secret is None:
            raise ValueError("a json webhook needs signing_secret: receivers verify its signature")
        if self.kind == WebhookKind.SLACK and self.signing_secret is not None:
            raise ValueError("signing_secret applies to json webhooks only (Slack verifies no signature)")
        if self.signing_secret == self.url_secret:
            raise ValueError("url_secret and signing_secret must be two secrets")
        return self

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.url_secret,) if self.signing_secret is None else (self.url_secret, self.signing_secret)


class Notifications(_Model):
    webhooks: list[Webhook] = []

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret the webhooks name, each once, in config order."""
        return tuple(dict.fromkeys(s for w in self.webhooks for s in w.secrets))

    def check_against(self, apps: set[str], reserved_secrets: set[str]) -> None:
        _require_unique("notifications.webhooks", [w.name for w in self.webhooks])
        for i, webhook in enumerate(self.webhooks):
            unknown = sorted(set(webhook.filters.apps) - apps)
            if unknown:
                raise ValueError(f"notifications.webhooks[{i}].filters.apps: no app named {unknown[0]!r}")
            taken = sorted(set(webhook.secrets) & reserved_secrets)
            if taken:
                raise ValueError(
                    f"notifications.webhooks[{i}]: secret {taken[0]!r} is the Cloudflare token's; "
                    "give the webhook a secret of its own"
                )


# An IAM member as Cloud Run's policy names one; allUsers and allAuthenticatedUsers (the
# public) have no such prefix, so they cannot be a viewer.
IamMember = Annotated[str, Field(pattern=r"^(user|group|serviceAccount|domain):[^\s:]+$")]


class StatusPage(_Model):
    # Who may open the status page: each gets roles/run.invoker on its service, nothing more.
    viewers: list[IamMember] = []

    @field_validator("viewers", mode="before")
    @classmethod
    def _never_public(cls, value: Any) -> Any:
        public = {"allUsers", "allAuthenticatedUsers"}
        if isinstance(value, list) and public & {str(v) for v in value}:
            raise ValueError("the status page is never public: name users, groups or service accounts")
        return value


UNKNOWN_APP = "unknown_app"


class Approval(StrEnum):
    AUTOMATIC = "automatic"  # promote as soon as the other gates hold
    MANUAL = "manual"  # wait for a `promote` control message (`geodeploy promote`)


class WaveGate(_Model):
    """What must hold before the wave after `wave` starts (see docs/configuration.md)."""

    wave: int = Field(ge=1)
    # Each region of the wave must stay healthy this long after its rollout completed
    # (deploy_region keeps watching; a failure meanwhile rolls the region back).
    soak_seconds: int = Field(default=0, ge=0)
    # Cloudflare's own monitor must call each of the wave's pools healthy.
    require_edge_healthy: bool = False
    approval: Approval = Approval.AUTOMATIC


class Config(_Model):
    version: Literal[1]
    project: Annotated[str, Field(pattern=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")]
    # Prefixes every function, subscription and service account, so that several
    # installations can share a project.
    name: Annotated[str, Field(pattern=r"^[a-z][-a-z0-9]{0,14}$")] = "geodeploy"
    field_manager: DnsLabel = "geodeploy"
    # Where the central functions (push handling, waves, traffic, drift) run; default:
    # the first region.
    functions_region: GcpRegion | None = None
    # How long a central function (traffic, drift, waves, `previous`) waits for one
    # region's cluster; the regions are read at once, so a region that never answers
    # costs this much in all. The first call of a cold instance also pays imports and
    # the GKE lookup: keep it to several seconds.
    region_deadline_seconds: int = Field(default=10, ge=1, le=30)
    topics: Topics = Topics()
    rollout: Rollout = Rollout()
    drift: Drift = Drift()
    alerts: Alerts = Alerts()
    status_page: StatusPage = StatusPage()
    cloudflare: Cloudflare
    apps: list[App] = Field(min_length=1)
    regions: list[Region] = Field(min_length=1)
    # Promotion gates between waves, one entry per gated wave.
    gates: list[WaveGate] = Field(default_factory=list)
    notifications: Notifications = Notifications()

    @model_validator(mode="after")
    def _read_rendered(self, info: ValidationInfo) -> Config:
        """Loads each kustomize source's rendering for every region (an app does not know
        the regions). Skipped for `geodeploy kustomize`, which is about to write them."""
        context = info.context or {}
        if not context.get(_READ_RENDERED, True):
            return self
        for i, app in enumerate(self.apps):
            if app.source.kind != KUSTOMIZE:
                continue
            try:
                loaded = read_rendered(
                    app.source, app.namespace, context[_SOURCE_FILES], [r.name for r in self.regions]
                )
            except ValueError as e:
                raise ValueError(f"apps[{i}].source: {e}") from None
            object.__setattr__(app, "source", loaded)  # App is frozen: set once, while loading
        return self

    @model_validator(mode="after")
    def _check_references(self) -> Config:
        _require_unique("apps", [a.name for a in self.apps])
        _require_unique("regions", [r.name for r in self.regions])
        _require_unique("regions[].cloudflare.pool", [r.cloudflare.pool for r in self.regions])
        _require_unique("regions[].static_ip.address", [r.static_ip.address for r in self.regions])
        _require_unique("apps[].repository", [a.repository for a in self.apps])
        # Each app renders its own Namespace; two apps in one would fight over its labels.
        _require_unique("apps[].namespace", [a.namespace for a in self.apps])
        _require_unique("regions[].cloudflare.geo_regions", [c for r in self.regions for c in r.cloudflare.geo_regions])
        if self.cloudflare.app not in {a.name for a in self.apps}:
            raise ValueError(f"cloudflare.app: no app named {self.cloudflare.app!r}")
        fallback = self.cloudflare.fallback_region
        if fallback is not None and fallback not in {r.name for r in self.regions}:
            raise ValueError(f"cloudflare.fallback_region: no region named {fallback!r}")
        self._check_progress_deadlines()
        self._check_gates()
        self.notifications.check_against({a.name for a in self.apps}, {self.cloudflare.api_token_secret})
        return self

    def _check_gates(self) -> None:
        _require_unique("gates[].wave", [str(g.wave) for g in self.gates])
        for i, gate in enumerate(self.gates):
            if gate.wave not in self.waves:
                raise ValueError(f"gates[{i}].wave: no region is in wave {gate.wave}")
            if self.next_wave(gate.wave) is None:
                raise ValueError(f"gates[{i}].wave: wave {gate.wave} is the last wave: there is nothing to promote to")
            rollout = self.rollout
            watched = rollout.progress_deadline_seconds + gate.soak_seconds
            if deliveries_to_decide(watched, rollout.call_budget_seconds) > PUSH_DELIVERY_ATTEMPTS:
                limit = (PUSH_DELIVERY_ATTEMPTS - 1) * rollout.call_budget_seconds - rollout.progress_deadline_seconds
                raise ValueError(
                    f"gates[{i}].soak_seconds: must be less than {limit} s: a rollout and its soak must be decided "
                    f"within the {PUSH_DELIVERY_ATTEMPTS} deliveries of a deploy request "
                    f"(({PUSH_DELIVERY_ATTEMPTS - 1} × call_budget_seconds) − progress_deadline_seconds)"
                )
            needed = event_age_to_decide(watched, rollout.call_budget_seconds)
            if rollout.max_event_age_seconds < needed:
                raise ValueError(
                    f"gates[{i}].soak_seconds: a rollout and its soak may need deliveries until the request is "
                    f"{needed} s old; raise rollout.max_event_age_seconds ({rollout.max_event_age_seconds}) to "
                    "at least that, or it is dropped mid-soak"
                )

    @property
    def drift_check_overdue_minutes(self) -> int:
        """How long without a finished drift check raises the alert; 0: no alert. Worked
        out from the schedule unless stated; a schedule geodeploy cannot work out, or one
        sparser than a Cloud Monitoring absence can wait for, gets none."""
        alerts = self.alerts
        if alerts.drift_check_overdue_minutes is not None:
            return alerts.drift_check_overdue_minutes
        gap = longest_gap_minutes(self.drift.schedule)
        if gap is None or gap + alerts.drift_check_slack_minutes > MAX_ABSENCE_MINUTES:
            return 0
        return gap + alerts.drift_check_slack_minutes

    def _check_progress_deadlines(self) -> None:
        """A brought Deployment's progress deadline is the rollout's (rendering fills it in
        when absent): the deliveries a stalled rollout needs are computed from that one."""
        wanted = self.rollout.progress_deadline_seconds
        for i, app in enumerate(self.apps):
            for document in (d for d in app.source.documents if d.kind == "Deployment"):
                spec = document.body.get("spec")
                deadline = spec.get("progressDeadlineSeconds", wanted) if isinstance(spec, dict) else wanted
                if deadline != wanted:
                    raise ValueError(
                        f"apps[{i}].source: {document.describe()}: spec.progressDeadlineSeconds: {deadline} is not "
                        f"rollout.progress_deadline_seconds ({wanted}); remove it, or set the rollout's, which the "
                        "deploy's redeliveries are planned around"
                    )

    # --- look-ups the functions use -------------------------------------------------

    def app(self, name: str) -> App:
        return self._apps_by_name[name]

    def known_app(self, name: str) -> App:
        """The app a message names; a message naming none of ours is invalid (acked with
        reason `unknown_app`, never retried)."""
        try:
            return self._apps_by_name[name]
        except KeyError:
            raise InvalidMessage(UNKNOWN_APP, f"no app named {name!r} in the config") from None

    def region(self, name: str) -> Region:
        return self._regions_by_name[name]

    def app_for_repository(self, repository: str) -> App | None:
        return next((a for a in self.apps if a.repository == repository), None)

    @cached_property
    def _apps_by_name(self) -> dict[str, App]:
        return {a.name: a for a in self.apps}

    @cached_property
    def _regions_by_name(self) -> dict[str, Region]:
        return {r.name: r for r in self.regions}

    @property
    def waves(self) -> list[int]:
        return sorted({r.wave for r in self.regions})

    def regions_in_wave(self, wave: int) -> list[Region]:
        return [r for r in self.regions if r.wave == wave]

    def next_wave(self, wave: int) -> int | None:
        return next((w for w in self.waves if w > wave), None)

    def gate_after(self, wave: int) -> WaveGate:
        """The gate between `wave` and the next one (an open one when none is configured)."""
        return next((g for g in self.gates if g.wave == wave), WaveGate(wave=wave))

    @property
    def fallback_region(self) -> Region:
        name = self.cloudflare.fallback_region
        return self.region(name) if name else self.regions[0]

    def deploy_topic(self, region: str) -> str:
        return f"{self.topics.deploy_prefix}-{region}"


def _require_unique(what: str, values: list[str]) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{what}: {v!r} appears twice")
        seen.add(v)


def parse_config(
    text: str, source: str = "<config>", files: SourceFiles | None = None, *, read_rendered: bool = True
) -> Config:
    """Parses and validates config text; a ConfigError names the file and the bad key.
    An app's template or directory source (and a kustomize source's renderings, unless
    `read_rendered` is false) is read through `files` (default: the files in `source`'s
    directory), and only then."""
    import yaml  # imported here: only loading needs it

    try:
        data: Any = load_strict(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    context = {
        _SOURCE_FILES: files if files is not None else DirectoryFiles(Path(source).parent),
        _READ_RENDERED: read_rendered,
    }
    try:
        return Config.model_validate(data, context=context)
    except ValidationError as e:
        raise ConfigError(f"{source}: " + "; ".join(_describe(err) for err in e.errors())) from None


_SOURCE_FILES = "source_files"  # the validation context's key for the SourceFiles
_READ_RENDERED = "read_rendered"  # ... and for whether kustomize renderings are read


@dataclass(frozen=True)
class DirectoryFiles:
    """SourceFiles on a directory of the disk: the one place manifest files are read. A
    path (or a symlink) that resolves outside `base` is refused, so a source reads only
    files that are bundled beside the config."""

    base: Path

    def _inside(self, relative: str) -> Path:
        path = (self.base / relative).resolve()
        if not path.is_relative_to(self.base.resolve()):
            raise ValueError(f"{relative}: resolves outside the config's directory")
        return path

    def read_text(self, path: str) -> str:
        try:
            return self._inside(path).read_text()
        except OSError as e:
            raise ValueError(f"{path}: cannot read: {e.strerror}") from None

    def list_names(self, directory: str) -> list[str]:
        try:
            return [p.name for p in self._inside(directory).iterdir() if p.is_file()]
        except OSError as e:
            raise ValueError(f"{directory}/: cannot list: {e.strerror}") from None


def load_config(path: str | Path, *, read_rendered: bool = True) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    return parse_config(text, str(path), read_rendered=read_rendered)


def _describe(err: Any) -> str:
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
    if err["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    if err["type"] == "missing":
        return f"{loc}: required key is missing"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{loc}: {message}" if loc else message
