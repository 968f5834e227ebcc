"""on_control's job: validate a hand-published rollback or deploy message and turn it
into per-region deploy requests. A bad message is rejected whole: nothing is sent."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime

from shared.adapters.kube import KubeClient
from shared.adapters.pubsub import Publisher
from shared.adapters.release_store import ReleaseStore
from shared.config import App, Config, Region
from shared.contracts import ControlMessage, DeployRequest, ImageRef, Trigger, release_id_for
from shared.errors import PERMISSION_DENIED, ClusterUnreachable, InvalidMessage, PermissionMissing, TransientError
from shared.flows.regions import each_region
from shared.flows.requests import send_deploy_requests
from shared.log_events import ROLLBACK_REQUESTED
from shared.logs import BoundLogger
from shared.planning import plan_region_requests
from shared.releases import ReleaseRecord, resolve_previous

__all__ = ["PREVIOUS_NEEDS_EVERY_REGION", "handle_control", "plan_control"]

PREVIOUS_NEEDS_EVERY_REGION = (
    "a region not read may run a newer release, and 'previous' would then go one release too far back; "
    "name the image, or the regions to roll back"
)


def handle_control(
    message: ControlMessage,
    *,
    event_id: str,
    published_at: datetime,
    config: Config,
    connect: Callable[[Region], KubeClient],
    publisher: Publisher,
    log: BoundLogger,
) -> list[DeployRequest]:
    previous = None
    if message.action == "rollback" and message.target.strip() == "previous":
        previous = _resolve_previous(message, config, connect, log)
    requests = plan_control(message, event_id=event_id, published_at=published_at, config=config, previous=previous)
    send_deploy_requests(requests, config, publisher)
    log.info(
        ROLLBACK_REQUESTED if message.action == "rollback" else "deploy_requested",
        app=message.app,
        target=message.target,
        image=requests[0].image,
        regions=[r.region for r in requests],
        release=requests[0].release_id,
        requested_by=message.requested_by,
    )
    return requests


def plan_control(
    message: ControlMessage,
    *,
    event_id: str,
    published_at: datetime,
    config: Config,
    previous: ImageRef | None = None,
) -> list[DeployRequest]:
    """Pure: the requests a control message leads to; InvalidMessage says what is wrong.
    `previous`: what "previous" resolved to across the regions (None: each region
    resolves it from its own history)."""
    app = config.known_app(message.app)
    for name in message.regions or []:
        if name not in {r.name for r in config.regions}:
            raise InvalidMessage("unknown_region", f"{name!r} is not a region of the config")
    if message.regions and len(set(message.regions)) != len(message.regions):
        raise InvalidMessage("duplicate_region", "a region is named more than once")
    image = _target_image(message, app)
    if message.action == "deploy" and image is None:
        raise InvalidMessage("deploy_needs_image", "a deploy names a digest, not 'previous'")
    if message.action == "deploy" and image is not None and image.repository != app.repository:
        raise InvalidMessage("image_not_allowed", f"{image.repository} is not {app.name}'s repository")
    image = image or previous
    if image is not None:
        release_id = release_id_for(app.name, image, event_id)
    else:
        release_id = "previous-" + hashlib.sha256(f"{app.name}\n{event_id}".encode()).hexdigest()[:10]
    trigger = Trigger(
        type="rollback" if message.action == "rollback" else "manual",
        event_id=event_id,
        requested_by=message.requested_by,
    )
    # Rollbacks go to every named region at once; manual deploys follow the waves.
    regions = message.regions or ([r.name for r in config.regions] if message.action == "rollback" else None)
    return plan_region_requests(
        config,
        app,
        release_id=release_id,
        image=image,
        trigger=trigger,
        issued_at=published_at,
        kind=message.action,
        regions=regions,
    )


def _resolve_previous(
    message: ControlMessage, config: Config, connect: Callable[[Region], KubeClient], log: BoundLogger
) -> ImageRef:
    """Reads every target region's release record to find the one image every region
    goes back to. A region that cannot be read may run a newer release than the others
    (a canary): resolving without it could go one release too far back, so the message
    is kept (redelivered) until every target answers, or the operator names the image or
    the regions."""
    app = config.known_app(message.app)
    for name in message.regions or []:
        if name not in {r.name for r in config.regions}:
            raise InvalidMessage("unknown_region", f"{name!r} is not a region of the config")
    targets = [config.region(name) for name in message.regions] if message.regions else config.regions

    def read(region: Region) -> ReleaseRecord | TransientError:
        try:
            return ReleaseStore(connect(region), app).read()[0]
        except (PermissionMissing, ClusterUnreachable) as e:  # logged with its region below
            return e

    def no_answer(region: Region, deadline: float) -> TransientError:
        return ClusterUnreachable(f"{region.name}: no answer within {deadline:.0f} s")

    records: list[ReleaseRecord] = []
    unread: list[str] = []
    denied: list[PermissionMissing] = []
    for region, found in zip(
        targets, each_region(targets, read, timed_out=no_answer, deadline=config.region_deadline_seconds), strict=True
    ):
        if isinstance(found, PermissionMissing):
            denied.append(found)
            log.error(PERMISSION_DENIED, unreadable_region=region.name, detail=str(found)[:300])
        elif isinstance(found, TransientError):
            log.warning("region_unreachable", unreachable_region=region.name, detail=str(found)[:200])
        else:
            records.append(found)
            continue
        unread.append(region.name)
    if unread:
        why = f"'previous' is not resolved while {', '.join(unread)} cannot be read ({PREVIOUS_NEEDS_EVERY_REGION})"
        if denied:
            raise PermissionMissing(f"{why}: {denied[0]}")  # named as what it is, so the operator grants it
        raise TransientError(why)
    image = resolve_previous(records, app.repository)
    if image is None:
        raise InvalidMessage("no_previous_release", f"no region of {app.name} has an earlier good release")
    return ImageRef.parse(image)


def _target_image(message: ControlMessage, app: App) -> ImageRef | None:
    if message.target.strip() == "previous":
        return None
    try:
        return ImageRef.parse_for(message.target, app.repository)
    except ValueError:
        raise InvalidMessage(
            "invalid_target",
            f"target must be 'previous', sha256:<64 hex> or <repository>@sha256:<64 hex>, got {message.target!r}",
        ) from None
