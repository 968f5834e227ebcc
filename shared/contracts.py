"""Message contracts: what travels on geodeploy's Pub/Sub topics.

Every message geodeploy publishes is JSON with a `version` field; every message it
receives is validated here before anything acts on it. Models are frozen; unknown keys
are rejected, so a typo in a hand-published rollback is an error, not a silent no-op.
docs/messages.md documents each contract with examples.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from shared.errors import InvalidMessage

__all__ = [
    "ArtifactRegistryNotification",
    "ControlMessage",
    "DeployRequest",
    "DeployResult",
    "DriftCheckRequest",
    "ImageRef",
    "TrafficHealReason",
    "TrafficHealRequest",
    "decode_pubsub_data",
    "parse_drift_topic_message",
    "parse_message",
]

DIGEST_PATTERN = r"sha256:[0-9a-f]{64}"
_IMAGE_WITH_DIGEST = re.compile(rf"^(?P<repo>[a-z0-9.-]+(?::[0-9]+)?(?:/[a-z0-9._-]+)+)@(?P<digest>{DIGEST_PATTERN})$")
_IMAGE_WITH_TAG = re.compile(
    r"^(?P<repo>[a-z0-9.-]+(?::[0-9]+)?(?:/[a-z0-9._-]+)+):(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$"
)

# Bounds on the strings a message may carry. Each region's release record (a ConfigMap,
# 1 MiB at most) keeps a request's strings, so a few huge ones must not be able to fill
# it; a message past a bound is invalid like any other bad field (logged, acked).
MAX_RELEASE_ID_LENGTH = 64
MAX_NAME_LENGTH = 63  # app and region names are DNS labels
MAX_EVENT_ID_LENGTH = 128  # Pub/Sub message ids are about 20 digits
MAX_TAG_LENGTH = 128  # Docker's own limit on a tag
MAX_REQUESTED_BY_LENGTH = 200
MAX_IMAGE_REFERENCE_LENGTH = 512  # Docker bounds a repository name at 255
MAX_REASON_LENGTH = 200
MAX_RESULT_MESSAGE_LENGTH = 1000
MAX_REGIONS_NAMED = 100  # far more than Google Cloud has
MAX_APPS_NAMED = 100  # a drift check's scope: far more apps than one config holds


@dataclass(frozen=True)
class ImageRef:
    """An image pinned by digest: `repository@sha256:...`."""

    repository: str
    digest: str

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"

    @property
    def short(self) -> str:
        return self.digest.removeprefix("sha256:")[:12]

    @classmethod
    def parse(cls, reference: str) -> ImageRef:
        m = _IMAGE_WITH_DIGEST.match(reference)
        if not m:
            raise ValueError(f"not an image pinned by digest (repository@sha256:<64 hex>): {reference!r}")
        return cls(m["repo"], m["digest"])

    @classmethod
    def parse_for(cls, text: str, repository: str) -> ImageRef:
        """Like parse, but a bare `sha256:<hex>` means an image of `repository`."""
        text = text.strip()
        return cls.parse(f"{repository}@{text}" if text.startswith("sha256:") else text)


def split_tag_reference(reference: str) -> tuple[str, str]:
    """`europe-docker.pkg.dev/p/r/app:v1` → (repository, tag); the tag follows the last
    ':' after the last '/', so a registry port is not mistaken for a tag."""
    m = _IMAGE_WITH_TAG.match(reference)
    if not m:
        raise ValueError(f"not a tagged image reference: {reference!r}")
    return m["repo"], m["tag"]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class _Lenient(BaseModel):
    # Messages Google publishes may grow fields; we read only what we need.
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- Artifact Registry → topic `gcr` ---------------------------------------------------


class ArtifactRegistryNotification(_Lenient):
    """What Artifact Registry publishes on `gcr` (a digest, a tag, or both)."""

    action: str = Field(max_length=MAX_NAME_LENGTH)  # INSERT or DELETE
    digest: str | None = Field(default=None, max_length=MAX_IMAGE_REFERENCE_LENGTH)
    tag: str | None = Field(default=None, max_length=MAX_IMAGE_REFERENCE_LENGTH)

    def pinned_image(self) -> ImageRef | None:
        """The image this notification pins, or None when it carries no digest."""
        if not self.digest:
            return None
        return ImageRef.parse(self.digest)

    def tag_name(self) -> str | None:
        return split_tag_reference(self.tag)[1] if self.tag else None

    def tag_repository(self) -> str | None:
        """The repository the tag reference names (it may differ from the digest's)."""
        return split_tag_reference(self.tag)[0] if self.tag else None


# --- per-region deploy requests and their results ---------------------------------------

TriggerType = Literal["push", "manual", "rollback", "wave"]


class Trigger(_Message):
    """Why a release exists: the event that started it."""

    type: TriggerType
    event_id: str = Field(min_length=1, max_length=MAX_EVENT_ID_LENGTH)
    tag: str | None = Field(default=None, max_length=MAX_TAG_LENGTH)
    requested_by: str | None = Field(default=None, max_length=MAX_REQUESTED_BY_LENGTH)


def in_utc(value: datetime, field: str) -> datetime:
    """A message's time, in UTC; a naive time or one that leaves the calendar once moved
    to UTC (0001-01-01T00:00+01:00) is invalid, not an unexpected error."""
    if value.tzinfo is None:
        raise ValueError(f"{field} needs a time zone (use Z for UTC)")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{field} is out of range once converted to UTC") from None


class DeployRequest(_Message):
    """One region's instruction, on topic `<deploy_prefix>-<region>`."""

    version: Literal[1] = 1
    kind: Literal["deploy", "rollback"] = "deploy"
    release_id: str = Field(pattern=rf"^[a-z0-9-]{{8,{MAX_RELEASE_ID_LENGTH}}}$")
    app: str = Field(max_length=MAX_NAME_LENGTH)
    region: str = Field(max_length=MAX_NAME_LENGTH)
    # deploy: the image to run. rollback: a pinned image, or None for "previous".
    image: str | None = Field(default=None, max_length=MAX_IMAGE_REFERENCE_LENGTH)
    trigger: Trigger
    # When the triggering event was published; releases are ordered by it.
    issued_at: datetime
    wave: int = Field(default=1, ge=1)
    # False for a manual deploy to named regions: its success must not start later waves.
    follow_waves: bool = True

    @field_validator("image")
    @classmethod
    def _pinned(cls, value: str | None) -> str | None:
        if value is not None:
            ImageRef.parse(value)
        return value

    @field_validator("issued_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return in_utc(value, "issued_at")

    @model_validator(mode="after")
    def _deploys_name_an_image(self) -> DeployRequest:
        if self.kind == "deploy" and self.image is None:
            raise ValueError("a deploy request must name the image to run (only a rollback may omit it)")
        return self

    def image_ref(self) -> ImageRef | None:
        return ImageRef.parse(self.image) if self.image else None


DeployStatus = Literal[
    "succeeded", "unchanged", "progressing", "failed", "rolling_back", "rolled_back", "superseded", "rejected"
]


class DeployResult(_Message):
    """What a region reports after handling a DeployRequest, on the results topic."""

    version: Literal[1] = 1
    release_id: str = Field(max_length=MAX_RELEASE_ID_LENGTH)
    app: str = Field(max_length=MAX_NAME_LENGTH)
    region: str = Field(max_length=MAX_NAME_LENGTH)
    kind: Literal["deploy", "rollback"]
    status: DeployStatus
    reason: str = Field(default="", max_length=MAX_REASON_LENGTH)
    message: str = Field(default="", max_length=MAX_RESULT_MESSAGE_LENGTH)
    image: str | None = Field(default=None, max_length=MAX_IMAGE_REFERENCE_LENGTH)
    trigger: Trigger
    issued_at: datetime
    wave: int = 1
    follow_waves: bool = True
    manifest_hash: str | None = Field(default=None, max_length=MAX_IMAGE_REFERENCE_LENGTH)
    # Set when an automatic rollback followed a failed rollout.
    rolled_back_to: str | None = Field(default=None, max_length=MAX_IMAGE_REFERENCE_LENGTH)
    finished_at: datetime

    @field_validator("issued_at", "finished_at")
    @classmethod
    def _aware(cls, value: datetime, info: ValidationInfo) -> datetime:
        # A wave advance orders the next wave's requests by issued_at: a naive one would
        # only fail there, as an unexpected error, instead of here as an invalid message.
        return in_utc(value, str(info.field_name))


# --- control topic: manual rollback or deploy ------------------------------------------


class ControlMessage(_Message):
    """Published by hand or by the CLI on the control topic.

    rollback: `{"version": 1, "action": "rollback", "app": "shop", "target": "previous"}`
    deploy:   `{"version": 1, "action": "deploy", "app": "shop", "target": "<repo>@sha256:..."}`
    promote:  `{"version": 1, "action": "promote", "app": "shop", "target": "<release id>", "wave": 1}`
    """

    version: Literal[1]
    action: Literal["rollback", "deploy", "promote"]
    app: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    regions: list[Annotated[str, Field(max_length=MAX_NAME_LENGTH)]] | None = Field(
        default=None, min_length=1, max_length=MAX_REGIONS_NAMED
    )
    # "previous", a bare "sha256:<hex>" (in the app's repository), or repository@sha256:<hex>;
    # for a promote, the release id waiting at the gate it approves.
    target: str = Field(min_length=1, max_length=MAX_IMAGE_REFERENCE_LENGTH)
    # A promote only: the wave whose gate it opens (with `target`, so a late or repeated
    # promote never opens another gate, nor lets a newer release through).
    wave: int | None = Field(default=None, ge=1)
    requested_by: str | None = Field(default=None, max_length=MAX_REQUESTED_BY_LENGTH)

    @model_validator(mode="after")
    def _fields_fit_the_action(self) -> ControlMessage:
        if self.action == "promote" and self.wave is None:
            raise ValueError("wave: a promote names the wave whose gate it opens")
        if self.action == "promote" and self.regions:
            raise ValueError("regions: a promote names none: it opens a gate for the next wave's regions")
        if self.action != "promote" and self.wave is not None:
            raise ValueError(f"wave: only a promote names one, not a {self.action}")
        return self


# --- drift topic -----------------------------------------------------------------------


class DriftCheckRequest(_Message):
    """Published by Cloud Scheduler (`{"version": 1}`) or the CLI."""

    version: Literal[1] = 1
    apps: list[Annotated[str, Field(max_length=MAX_NAME_LENGTH)]] | None = Field(
        default=None, max_length=MAX_APPS_NAMED
    )
    regions: list[Annotated[str, Field(max_length=MAX_NAME_LENGTH)]] | None = Field(
        default=None, max_length=MAX_REGIONS_NAMED
    )
    heal: bool | None = None  # None: the config's drift.heal decides


class TrafficHealReason(StrEnum):
    """Why check_drift asks reconcile_traffic to heal Cloudflare."""

    CLUSTERS_HEALED = "clusters_healed"  # a region of the steered app was healed: its health may have changed
    CLOUDFLARE_DRIFTED = "cloudflare_drifted"  # the monitor, a pool or the load balancer differs


class TrafficHealRequest(_Message):
    """Published by check_drift on the drift topic, once its heals are done, for
    reconcile_traffic: the one function that writes Cloudflare. Its `kind` tells it from a
    DriftCheckRequest, which has none; check_drift acks it without acting."""

    version: Literal[1] = 1
    kind: Literal["heal_traffic"] = "heal_traffic"
    trigger_event_id: str = Field(min_length=1, max_length=MAX_EVENT_ID_LENGTH)  # the drift check that asked
    reasons: list[TrafficHealReason] = Field(min_length=1, max_length=len(TrafficHealReason))


def parse_drift_topic_message(data: dict[str, Any]) -> DriftCheckRequest | TrafficHealRequest:
    """The drift topic carries both: a message with a `kind` is a heal request."""
    if "kind" in data:
        return parse_message(TrafficHealRequest, data)
    return parse_message(DriftCheckRequest, data)


# --- decoding --------------------------------------------------------------------------


# Why a message is rejected (InvalidMessage.reason).
NOT_A_PUBSUB_EVENT = "not_a_pubsub_event"
NOT_JSON = "not_json"
NOT_JSON_OBJECT = "not_json_object"
TOO_DEEPLY_NESTED = "too_deeply_nested"
INVALID_MESSAGE = "invalid_message"


def decode_pubsub_data(event_data: Any) -> dict[str, Any]:
    """The JSON object inside a CloudEvent's Pub/Sub message (base64 `message.data`)."""
    try:
        encoded = event_data["message"]["data"]
    except (TypeError, KeyError):
        raise InvalidMessage(NOT_A_PUBSUB_EVENT, "no message.data in the event") from None
    try:
        raw = base64.b64decode(encoded or b"", validate=True)
        value = json.loads(raw)
    except RecursionError:
        # e.g. {"a": [[[[...]]]]} 100 000 deep: as bad as any other input, and no retry helps.
        raise InvalidMessage(TOO_DEEPLY_NESTED, "message data nests too deeply to decode") from None
    except (binascii.Error, ValueError, TypeError):
        raise InvalidMessage(NOT_JSON, "message data is not base64-encoded JSON") from None
    if not isinstance(value, dict):
        raise InvalidMessage(NOT_JSON_OBJECT, "message data is JSON but not an object")
    return value


def parse_message[M: BaseModel](model: type[M], data: dict[str, Any]) -> M:
    """Validates `data` against a contract; an InvalidMessage says which field is wrong."""
    try:
        return model.model_validate(data)
    except RecursionError:
        # pydantic-core bounds its own recursion; a Python validator walking the input may not.
        raise InvalidMessage(TOO_DEEPLY_NESTED, f"{model.__name__}: the message nests too deeply") from None
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<message>'}: "
            f"{'unknown field' if err['type'] == 'extra_forbidden' else err['msg']}"
            for err in e.errors()
        )
        raise InvalidMessage(INVALID_MESSAGE, f"{model.__name__}: {problems}") from None


def release_id_for(app: str, image: ImageRef, event_id: str) -> str:
    """A release id that is the same on every redelivery of the same event."""
    key = hashlib.sha256(f"{app}\n{image.reference}\n{event_id}".encode()).hexdigest()[:10]
    return f"{image.short[:8]}-{key}"
