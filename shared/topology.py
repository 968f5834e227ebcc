"""Which functions exist and which topics trigger them, derived from the config. Pure.

The one list the sandbox starts, infra/ deploys (checked by tests) and cloudbuild.yaml
ships, so the three cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import Config

__all__ = ["FunctionSpec", "functions_of", "subscription_name"]


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


def functions_of(config: Config) -> list[FunctionSpec]:
    central = config.functions_region or config.regions[0].name
    topics = config.topics
    n = config.name
    specs = [
        FunctionSpec(f"{n}-on-image-pushed", "on_image_pushed", (topics.images,), central, timeout_seconds=60),
        FunctionSpec(f"{n}-on-control", "on_control", (topics.control,), central, timeout_seconds=60),
        FunctionSpec(f"{n}-on-deploy-result", "on_deploy_result", (topics.results,), central),
        FunctionSpec(
            f"{n}-reconcile-traffic", "reconcile_traffic", (topics.results, topics.drift), central, serialized=True
        ),
        FunctionSpec(f"{n}-check-drift", "check_drift", (topics.drift,), central, timeout_seconds=300),
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
        )
        for region in config.regions
    ]
    return specs


def subscription_name(function: FunctionSpec, topic: str) -> str:
    return f"{function.name}--{topic}"
