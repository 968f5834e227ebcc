"""Which functions exist, which topics trigger them, and what each may touch, derived
from the config. Pure.

The one list the sandbox starts, infra/ deploys (checked by tests) and cloudbuild.yaml
ships, so the three cannot disagree. Each function's `access` is the one table of
permissions: infra/ grants its IAM half (tests compare the two), `shared.rbac` renders
its Kubernetes half, and the sandbox enforces both.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from shared.config import Config

__all__ = [
    "RUNTIME_ENVIRONMENT",
    "Access",
    "FunctionSpec",
    "KubeRule",
    "Names",
    "Rendered",
    "Resource",
    "dead_letter_topic_for",
    "functions_of",
    "service_account_email",
    "service_account_id",
    "subscription_name",
]


class Names:
    """Which objects a KubeRule is limited to (resourceNames), per app."""

    RECORD = "record"  # the app's release-record ConfigMap
    RENDERED = "rendered"  # the names the app's release gives each resource of the rule's part
    NAMESPACE = "namespace"  # the app's Namespace
    RECONCILE_MARK = "reconcile-mark"  # reconcile-traffic's record of its last full reconcile
    DRIFT_MARK = "drift-mark"  # check-drift's record of its last check, per region
    ANY = "any"  # unlimited: a create names no object at authorization time


class Resource(NamedTuple):
    """One RBAC resource: its API group ("" for the core group) and its name."""

    api_group: str
    resource: str


class Rendered(StrEnum):
    """A part of what an app's release renders in a region (shared.rbac renders it with
    a placeholder image: no name depends on the image). A rule on a part grants its verbs
    on each resource the part holds, limited to the part's names of that resource, so an
    app that brings its own manifests is granted exactly the objects they name (the
    built-in source renders one Deployment, Service, HPA and PDB, each named `<app>`).
    The Namespace is never in a part: NAMESPACES grants it, cluster-wide, by name."""

    WORKLOADS = "workloads"  # the apps/v1 Deployments, StatefulSets, DaemonSets a deploy watches
    SCALED = "scaled"  # `<workload>/scale` of those a deploy scales: the workloads an HPA scales
    OBJECTS = "objects"  # every other object: server-side applied, so even the first is a named create
    # Every namespaced kind geodeploy can apply, for an app that brings its own manifests:
    # a prune deletes what an earlier config rendered, which the current one cannot name.
    # (The built-in source always renders the same objects: it never prunes.)
    PRUNABLE = "prunable"


CONFIGMAPS = Resource("", "configmaps")
NAMESPACES = Resource("", "namespaces")
_NAMES_OF = {
    Resource: {Names.RECORD, Names.NAMESPACE, Names.RECONCILE_MARK, Names.DRIFT_MARK, Names.ANY},
    Rendered: {Names.RENDERED, Names.ANY},
}


@dataclass(frozen=True)
class KubeRule:
    """Verbs on one resource in each app's namespace (cluster-wide for namespaces), or on
    each resource of a part of what the app renders."""

    on: Resource | Rendered
    verbs: tuple[str, ...]
    names: str

    def __post_init__(self) -> None:
        if self.names not in _NAMES_OF[type(self.on)]:
            raise ValueError(f"{self.on!r} cannot be limited to {self.names!r} names")

    @property
    def resource(self) -> Resource:
        """The resource of a rule on one fixed resource (a part's are per app: shared.rbac)."""
        if not isinstance(self.on, Resource):
            raise TypeError(f"a rule on the rendered {self.on} has one resource per kind the app renders")
        return self.on


# Reading a region's release record: the waves, the control function's `previous`,
# traffic (health) and drift all start there.
_READ_RECORD = KubeRule(CONFIGMAPS, ("get",), Names.RECORD)

KUBE_DEPLOY = (
    KubeRule(CONFIGMAPS, ("get", "update"), Names.RECORD),
    KubeRule(CONFIGMAPS, ("create",), Names.ANY),  # the first record
    KubeRule(NAMESPACES, ("patch",), Names.NAMESPACE),  # apply_release applies it first
    KubeRule(Rendered.WORKLOADS, ("get", "patch", "watch"), Names.RENDERED),  # guarded apply, then the watch
    KubeRule(Rendered.WORKLOADS, ("create",), Names.ANY),  # the first release POSTs each
    KubeRule(Rendered.SCALED, ("patch",), Names.RENDERED),  # the initial scale
    # Server-side applied. An apply that creates is authorized as a `create` of that
    # name, so even the first one is limited to the app's objects.
    KubeRule(Rendered.OBJECTS, ("patch", "create"), Names.RENDERED),
    KubeRule(Rendered.PRUNABLE, ("delete",), Names.ANY),  # the prune, in the app's namespace only
)
KUBE_DRIFT = (
    _READ_RECORD,
    # get to compare, patch for the dry-run apply that normalizes (and, healing, the heal)
    KubeRule(NAMESPACES, ("get", "patch"), Names.NAMESPACE),
    KubeRule(Rendered.WORKLOADS, ("get", "patch"), Names.RENDERED),
    # A heal re-creates a deleted Service, HPA, PDB, ... by name (never a workload: that
    # is a deploy's, ordered by its release).
    KubeRule(Rendered.OBJECTS, ("get", "patch", "create"), Names.RENDERED),
    # Its last check, for the status page: server-side applied (the first is a create).
    KubeRule(CONFIGMAPS, ("get", "patch", "create"), Names.DRIFT_MARK),
)
KUBE_TRAFFIC = (
    _READ_RECORD,
    KubeRule(Rendered.WORKLOADS, ("get",), Names.RENDERED),
    # The coalescing mark: read, and server-side applied (its first apply is a create of
    # that name), so no other ConfigMap can be written.
    KubeRule(CONFIGMAPS, ("get", "patch", "create"), Names.RECONCILE_MARK),
)
KUBE_RECORDS = (_READ_RECORD,)
# The status page: what `geodeploy status` reads, and the last drift check. Reads only.
KUBE_STATUS_PAGE = (
    _READ_RECORD,
    KubeRule(Rendered.WORKLOADS, ("get",), Names.RENDERED),
    KubeRule(CONFIGMAPS, ("get",), Names.DRIFT_MARK),
)


@dataclass(frozen=True)
class Access:
    """What a function's code path uses, and nothing else."""

    publishes: tuple[str, ...] = ()  # topics: roles/pubsub.publisher on each
    clusters: tuple[str, ...] = ()  # regions whose cluster it connects to: container.clusters.get
    secrets: tuple[str, ...] = ()  # secrets it reads: roles/secretmanager.secretAccessor on each
    kube: tuple[KubeRule, ...] = ()  # in each of those clusters, for every app


@dataclass(frozen=True)
class FunctionSpec:
    name: str  # the deployed function's name
    entry_point: str  # the function in main.py
    topics: tuple[str, ...]  # each topic is one trigger
    location: str  # GCP region the function runs in
    region: str | None = None  # for deploy_region: the region it deploys to
    # Reconciling traffic must not race itself: one instance, one request at a time.
    serialized: bool = False
    timeout_seconds: int = 120
    memory: str = "512Mi"
    identity: str = ""  # the service account it runs as: a key of infra's service_accounts
    access: Access = field(default_factory=Access)
    # Called over HTTP by people (no topics): Cloud Run lets only these IAM members invoke it.
    viewers: tuple[str, ...] = ()

    @property
    def http(self) -> bool:
        """Opened by people over HTTP (the status page), not pushed to by Pub/Sub."""
        return not self.topics


def functions_of(config: Config) -> list[FunctionSpec]:
    central = config.functions_region or config.regions[0].name
    topics = config.topics
    n = config.name
    every_region = tuple(r.name for r in config.regions)
    first_wave = config.waves[0]
    # A push starts the first wave; the waves function sends the later ones; the control
    # function sends rollbacks to every region and manual deploys to the first wave.
    first_wave_topics = tuple(config.deploy_topic(r.name) for r in config.regions_in_wave(first_wave))
    later_wave_topics = tuple(config.deploy_topic(r.name) for r in config.regions if r.wave != first_wave)
    every_deploy_topic = tuple(config.deploy_topic(r) for r in every_region)
    token = (config.cloudflare.api_token_secret,)
    specs = [
        FunctionSpec(
            f"{n}-on-image-pushed",
            "on_image_pushed",
            (topics.images,),
            central,
            timeout_seconds=60,
            identity="image_pushed",
            access=Access(publishes=first_wave_topics),
        ),
        FunctionSpec(
            f"{n}-on-control",
            "on_control",
            (topics.control,),
            central,
            timeout_seconds=60,
            identity="control",
            # `target: previous` reads every region's record
            access=Access(publishes=every_deploy_topic, clusters=every_region, kube=KUBE_RECORDS),
        ),
        FunctionSpec(
            f"{n}-on-deploy-result",
            "on_deploy_result",
            # A release Cloudflare's verdict holds is looked at again on each drift-check tick.
            (topics.results, topics.drift) if any(g.require_edge_healthy for g in config.gates) else (topics.results,),
            central,
            identity="waves",
            access=Access(
                publishes=later_wave_topics,
                clusters=every_region,
                # require_edge_healthy: Cloudflare's verdict on the wave's pools
                secrets=token if any(g.require_edge_healthy for g in config.gates) else (),
                kube=KUBE_RECORDS,
            ),
        ),
        FunctionSpec(
            f"{n}-reconcile-traffic",
            "reconcile_traffic",
            (topics.results, topics.drift),
            central,
            serialized=True,
            identity="traffic",
            access=Access(clusters=every_region, secrets=token, kube=KUBE_TRAFFIC),
        ),
        FunctionSpec(
            f"{n}-check-drift",
            "check_drift",
            (topics.drift,),
            central,
            timeout_seconds=300,
            identity="drift",
            # its report, and a heal request for reconcile-traffic (the one writer of Cloudflare)
            access=Access(
                publishes=(topics.drift_reports, topics.drift), clusters=every_region, secrets=token, kube=KUBE_DRIFT
            ),
        ),
    ]
    specs.append(
        FunctionSpec(
            f"{n}-status-page",
            "status_page",
            (),
            central,
            timeout_seconds=60,
            identity="status_page",
            access=Access(clusters=every_region, secrets=token, kube=KUBE_STATUS_PAGE),
            viewers=tuple(config.status_page.viewers),
        )
    )
    specs += [
        FunctionSpec(
            f"{n}-deploy-{region.name}",
            "deploy_region",
            (config.deploy_topic(region.name),),
            region.name,
            region=region.name,
            # The watch budget plus time to apply, record and report.
            timeout_seconds=min(540, config.rollout.call_budget_seconds + 60),
            memory="1Gi",
            identity=f"deploy-{region.name}",
            access=Access(publishes=(topics.results,), clusters=(region.name,), kube=KUBE_DEPLOY),
        )
        for region in config.regions
    ]
    specs += _notify_functions(config, central)
    return specs


# --- notify: the webhooks' one subscriber -------------------------------------------------

NOTIFY_TIMEOUT_SECONDS = 60  # its posts are bounded well inside (shared/adapters/webhooks.py)


def _notify_functions(config: Config, central: str) -> list[FunctionSpec]:
    """The notify function, when the config names webhooks. It publishes nothing and
    connects to no cluster: it reads exactly the webhooks' secrets."""
    if not config.notifications.webhooks:
        return []
    topics = config.topics
    return [
        FunctionSpec(
            f"{config.name}-notify",
            "notify",
            (topics.results, topics.drift_reports, topics.dead_letter),
            central,
            timeout_seconds=NOTIFY_TIMEOUT_SECONDS,
            identity="notify",
            access=Access(secrets=config.notifications.secrets),
        )
    ]


def dead_letter_topic_for(config: Config, topic: str) -> str | None:
    """Where a push subscription on `topic` sends a message after its last attempt: the
    dead-letter topic, except for a subscription on that topic itself (a dead letter the
    notify function could not handle would come back to it, forever)."""
    return None if topic == config.topics.dead_letter else config.topics.dead_letter


def service_account_id(config: Config, identity: str) -> str:
    """The account id infra/locals.tf gives an identity (at most 30 characters: a deployer
    whose readable id would be longer is named by a short hash of its region)."""
    readable = f"{config.name}-{identity.replace('_', '-')}"
    region = identity.removeprefix("deploy-") if identity.startswith("deploy-") else None
    if region is not None and len(readable) > 30:
        return f"{config.name}-dp-{hashlib.sha1(region.encode()).hexdigest()[:8]}"
    return readable


def service_account_email(config: Config, identity: str) -> str:
    """The Google identity a function runs as; GKE names its Kubernetes user the same."""
    return f"{service_account_id(config, identity)}@{config.project}.iam.gserviceaccount.com"


def subscription_name(function: FunctionSpec, topic: str) -> str:
    return f"{function.name}--{topic}"


# Set on every function, by infra/functions.tf and the sandbox alike: functions-framework
# then labels its own log lines (a crash's traceback) with the call's execution id, as
# shared/logs.py labels geodeploy's.
RUNTIME_ENVIRONMENT = {"LOG_EXECUTION_ID": "true"}
