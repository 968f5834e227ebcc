"""Functions Framework entry points (deploy each with --entry-point=<name>)."""

from functions.check_drift import check_drift
from functions.deploy_region import deploy_region
from functions.notify import notify
from functions.on_control import on_control
from functions.on_deploy_result import on_deploy_result
from functions.on_image_pushed import on_image_pushed
from functions.reconcile_traffic import reconcile_traffic
from functions.status_page import status_page

__all__ = [
    "check_drift",
    "deploy_region",
    "notify",
    "on_control",
    "on_deploy_result",
    "on_image_pushed",
    "reconcile_traffic",
    "status_page",
]
