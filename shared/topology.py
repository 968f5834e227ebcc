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

from shared.config import Config

__all__ = [
    "Access",
    "FunctionSpec",
    "KubeRule",
    "Names",
    "functions_of",
    "service_account_email",
    "service_account_id",
    "subscription_name",
]


class Names:
    """Which objects a KubeRule is limited to (resourceNames), per app."""

    RECORD = "record"  # the app's release-record ConfigMap
    APP = "app"  # the app's own objects (Deployment, Service, HPA, PDB share its name)
    NAMESPACE = "namespace"  # the app's Namespace
    RECONCILE_MARK = "reconcile-mark"  # reconcile-traffic's record of its last full reconcile
    ANY = "any"  # unlimited: a create names no object at authorization time


@dataclass(frozen=True)
class KubeRule:
    """Verbs on one resource in each app's namespace (cluster-wide for namespaces)."""

    api_group: str
    resource: str
    verbs: tuple[str, ...]
    names: str = Names.APP


# Reading a region's release record: the waves, the control function's `previous`,
# traffic (health) and drift all start there.
_READ_RECORD = KubeRule("", "configmaps", ("get",), Names.RECORD)
_APPLIED = (("", "services"), ("autoscaling", "horizontalpodautoscalers"), ("policy", "poddisruptionbudgets"))

KUBE_DEPLOY = (
    KubeRule("", "configmaps", ("get", "update"), Names.RECORD),
    KubeRule("", "configmaps", ("create",), Names.ANY),  # the first record
    KubeRule("", "namespaces", ("patch",), Names.NAMESPACE),  # apply_release applies it first
    KubeRule("apps", "deployments", ("get", "patch", "watch"), Names.APP),  # guarded apply, then the watch
    KubeRule("apps", "deployments", ("create",), Names.ANY),  # the first release POSTs it
    KubeRule("apps", "deployments/scale", ("patch",), Names.APP),  # the initial scale
    # Server-side applied. An apply that creates is authorized as a `create` of that
    # name, so even the first one is limited to the app's objects.
    *(KubeRule(group, resource, ("patch", "create"), Names.APP) for group, resource in _APPLIED),
)
KUBE_DRIFT = (
    _READ_RECORD,
    # get to compare, patch for the dry-run apply that normalizes (and, healing, the heal)
    KubeRule("", "namespaces", ("get", "patch"), Names.NAMESPACE),
    KubeRule("apps", "deployments", ("get", "patch"), Names.APP),
    # A heal re-creates a deleted Service, HPA or PDB by name (never a Deployment: that
    # is a deploy's, ordered by its release).
    *(KubeRule(group, resource, ("get", "patch", "create"), Names.APP) for group, resource in _APPLIED),
)
KUBE_TRAFFIC = (
    _READ_RECORD,
    KubeRule("apps", "deployments", ("get",), Names.APP),
    # The coalescing mark: read, and server-side applied (its first apply is a create of
    # that name), so no other ConfigMap can be written.
    KubeRule("", "configmaps", ("get", "patch", "create"), Names.RECONCILE_MARK),
)
KUBE_RECORDS = (_READ_RECORD,)


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
            (topics.results,),
            central,
            identity="waves",
            access=Access(publishes=later_wave_topics, clusters=every_region, kube=KUBE_RECORDS),
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
    return specs


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
