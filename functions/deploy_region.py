"""Topic `<deploy_prefix>-<region>`: apply one release to this function's region and watch it.
Deployed once per region, with GEODEPLOY_REGION naming it."""

from __future__ import annotations

from typing import Any

import functions_framework

from functions import _wiring
from functions._entry import EventInfo, run_handler
from shared.logs import BoundLogger


@functions_framework.cloud_event
def deploy_region(cloud_event: Any) -> None:
    run_handler("deploy_region", cloud_event, _handle)


def _handle(data: dict[str, Any], event: EventInfo, log: BoundLogger) -> None:
    from shared.contracts import DeployRequest, DeployResult, parse_message
    from shared.errors import ConfigError
    from shared.flows.deploy import RegionDeployer
    from shared.settings import load_instance_config, load_settings

    config = load_instance_config()
    region_name = load_settings().region
    if not region_name or region_name not in {r.name for r in config.regions}:
        raise ConfigError(f"GEODEPLOY_REGION={region_name!r} is not a region of the config")
    region = config.region(region_name)
    request = parse_message(DeployRequest, data)

    def publish_result(result: DeployResult) -> None:
        _wiring.publisher().publish(config.topics.results, result.to_bytes())

    deployer = RegionDeployer(
        config=config,
        region=region,
        kube=_wiring.connect(region),
        publish_result=publish_result,
        log=log.bind(digest=request.image),
    )
    deployer.handle(request)
