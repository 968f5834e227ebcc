"""Where an app's Kubernetes objects come from: geodeploy's built-in shape, or manifests
the app brings (one multi-document template, or a directory of YAML files) bundled
beside the config.

A brought source is read once, when the config is loaded: each document is parsed,
upgraded to a served API version, placed in the app's namespace and checked, and the App
keeps the documents with their file and position. Rendering then needs no file: it
substitutes the placeholders (`substitute_placeholders`) into copies of them.

Pure: the files are read through a `SourceFiles` collaborator (config.load_config passes
one on the config's directory; tests pass text).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, PrivateAttr, model_validator

from shared.api_upgrades import FieldError, upgrade_document
from shared.kinds import KINDS, kind_of, supported
from shared.yaml_loading import load_manifest_documents

__all__ = [
    "BUILTIN",
    "KUSTOMIZE",
    "KUSTOMIZE_OUTPUT",
    "WORKLOAD_KINDS",
    "ManifestDocument",
    "ManifestSource",
    "Placeholder",
    "SourceFiles",
    "read_rendered",
    "read_source",
    "substitute_placeholders",
]

Object = dict[str, Any]
SourceKind = Literal["builtin", "template", "directory", "kustomize"]
BUILTIN: SourceKind = "builtin"
KUSTOMIZE: SourceKind = "kustomize"
# What `geodeploy kustomize` writes in each overlay directory it builds: the rendered,
# placeholder-bearing manifests a function loads (it never runs kustomize itself).
KUSTOMIZE_OUTPUT = "geodeploy-rendered.yaml"
YAML_SUFFIXES = (".yaml", ".yml")


class Placeholder(StrEnum):
    """What a brought manifest may write in a string value, and what it becomes."""

    IMAGE = "__IMAGE__"  # the pushed image pinned by digest: repository@sha256:…
    ZONE = "__ZONE__"  # the region's cluster location
    IP = "__IP__"  # the region's static IP address
    REGION = "__REGION__"
    NAMESPACE = "__NAMESPACE__"
    APP = "__APP__"


# One pass over the string: a substituted value is never scanned again.
_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in Placeholder))


def substitute_placeholders(value: Any, values: dict[Placeholder, str]) -> Any:
    """A copy of `value` with each placeholder replaced inside string values only: never in
    keys, never in the text before parsing, so a value cannot inject YAML. An unknown
    `__FOO__` is left as written."""
    if isinstance(value, dict):
        return {key: substitute_placeholders(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute_placeholders(item, values) for item in value]
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: values[Placeholder(m[0])], value)
    return value


def _inside_the_bundle(path: str) -> str:
    # The files ship beside the config (the functions' source archive holds the config's
    # directory), so a path may not leave it.
    parts = PurePosixPath(path).parts
    if not path or path.startswith(("/", "\\")) or ".." in parts or "\\" in path or ":" in path:
        raise ValueError(f"{path!r} must be a relative path inside the config's directory (no `..`, not absolute)")
    return path


BundlePath = Annotated[str, AfterValidator(_inside_the_bundle)]


class SourceFiles(Protocol):
    """The files beside the config, by path relative to its directory."""

    def read_text(self, path: str) -> str: ...

    def list_names(self, directory: str) -> list[str]:
        """The names of the regular files directly in `directory`."""
        ...


@dataclass(frozen=True)
class ManifestDocument:
    """One object of a brought source, as loaded: upgraded and in the app's namespace.
    Read-only by agreement: rendering copies it before substituting."""

    file: str  # relative to the config's directory, e.g. deploy/k8s.yaml
    index: int  # 1-based position among the file's documents
    body: Object

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    def describe(self) -> str:
        return _describe(self.file, self.index, self.body)


def _describe(file: str, index: int, body: Any) -> str:
    """`deploy/k8s.yaml, document 3 (Deployment web)`: as much of it as is known."""
    where = f"{file}, document {index}"
    if not isinstance(body, dict):
        return where
    meta = body.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    known = " ".join(str(part) for part in (body.get("kind"), name) if isinstance(part, str) and part)
    return f"{where} ({known})" if known else where


class ManifestSource(BaseModel):
    """`apps[].source`: absent or `builtin`, `{template: path}`, `{directory: path}` or
    `{kustomize: path}` (a path that may hold `__REGION__`: one overlay per region)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    template: BundlePath | None = None
    directory: BundlePath | None = None
    kustomize: BundlePath | None = None
    # Filled by read_source (read_rendered for kustomize) when the config is loaded;
    # never written in the file.
    _documents: tuple[ManifestDocument, ...] = PrivateAttr(default=())
    _by_region: dict[str, tuple[ManifestDocument, ...]] = PrivateAttr(default_factory=dict)
    _notes: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="before")
    @classmethod
    def _builtin_by_name(cls, value: Any) -> Any:
        if value == BUILTIN:
            return {}
        if isinstance(value, str):
            raise ValueError("must be `builtin`, or a mapping with `template:`, `directory:` or `kustomize:`")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> ManifestSource:
        if sum(path is not None for path in (self.template, self.directory, self.kustomize)) > 1:
            raise ValueError("give one of `template:`, `directory:` and `kustomize:`")
        return self

    @property
    def kind(self) -> SourceKind:
        if self.kustomize is not None:
            return KUSTOMIZE
        return "template" if self.template is not None else "directory" if self.directory is not None else BUILTIN

    def kustomization(self, region: str) -> str:
        """The kustomization directory `kustomize build` renders for `region`."""
        assert self.kustomize is not None
        return self.kustomize.replace(Placeholder.REGION, region).rstrip("/")

    def rendered_file(self, region: str) -> str:
        return f"{self.kustomization(region)}/{KUSTOMIZE_OUTPUT}"

    def documents_for(self, region: str) -> tuple[ManifestDocument, ...]:
        """The documents a release in `region` renders (a kustomize source: its overlay's)."""
        return self._by_region.get(region, self._documents)

    @property
    def documents(self) -> tuple[ManifestDocument, ...]:
        """The loaded documents in file and document order; empty for builtin."""
        return self._documents

    @property
    def notes(self) -> tuple[str, ...]:
        """What loading changed (API upgrades, a dropped replica count), for the caller to log."""
        return self._notes


# The kinds whose rollout a release waits for (apps/v1 only: a CRD may reuse the names).
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
# Where each workload kind keeps its pod spec (the containers __IMAGE__ is checked in).
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    **{kind: ("spec", "template", "spec") for kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")},
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_CONTAINER_LISTS = ("initContainers", "containers")
# Kinds with no namespace. The deployer's grants are per app namespace, so of these a
# release may hold only the app's own Namespace.
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "APIService", "CertificateSigningRequest", "ClusterRole", "ClusterRoleBinding", "CSIDriver", "CSINode",
        "CustomResourceDefinition", "FlowSchema", "IngressClass", "MutatingWebhookConfiguration", "Node",
        "PersistentVolume", "PriorityClass", "PriorityLevelConfiguration", "RuntimeClass", "StorageClass",
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ValidatingWebhookConfiguration",
        "VolumeAttachment",
    }
)  # fmt: skip


def read_source(source: ManifestSource, namespace: str, files: SourceFiles) -> ManifestSource:
    """`source` (a template or directory) with its documents loaded and checked for an
    app in `namespace`; raises ValueError naming the file, the document and the field."""
    location = source.template or f"{str(source.directory).rstrip('/')}/"
    documents, notes = _load(_read_texts(source, files), namespace, location)
    loaded = source.model_copy()
    loaded._documents, loaded._notes = documents, notes
    return loaded


def read_rendered(source: ManifestSource, namespace: str, files: SourceFiles, regions: list[str]) -> ManifestSource:
    """A kustomize `source` with each region's rendered output loaded and checked as a
    template's documents are (`geodeploy kustomize` wrote them where kustomize is)."""
    by_region: dict[str, tuple[ManifestDocument, ...]] = {}
    notes: list[str] = []
    for region in regions:
        path = source.rendered_file(region)
        try:
            text = files.read_text(path)
        except ValueError:
            raise ValueError(
                f"{path}: not rendered: run `geodeploy kustomize` (or `make manifests`) where the kustomize "
                f"binary is, so {source.kustomization(region)}/ is rendered before the config is loaded"
            ) from None
        by_region[region], changes = _load([(path, text)], namespace, path)
        notes += [note for note in changes if note not in notes]
    loaded = source.model_copy()
    loaded._by_region, loaded._notes = by_region, tuple(notes)
    loaded._documents = tuple(d for documents in by_region.values() for d in documents)
    return loaded


def _load(
    texts: list[tuple[str, str]], namespace: str, location: str
) -> tuple[tuple[ManifestDocument, ...], tuple[str, ...]]:
    import yaml

    documents: list[ManifestDocument] = []
    notes: list[str] = []
    for file, text in texts:
        try:
            bodies = load_manifest_documents(text)
        except yaml.YAMLError as e:
            raise ValueError(f"{file}: not valid YAML: {e}") from None
        for index, body in enumerate(bodies, start=1):
            if body is None:  # an empty document (e.g. after a trailing `---`)
                continue
            try:
                prepared, changes = _prepare(body, namespace)
            except FieldError as e:
                raise ValueError(f"{_describe(file, index, body)}: {e}") from None
            document = ManifestDocument(file, index, prepared)
            documents.append(document)
            notes += [f"{document.describe()}: {change}" for change in changes]
    _require_a_workload(documents, location)
    _require_the_image(documents, location)
    _require_unique(documents)
    notes += _drop_replicas_an_autoscaler_owns(documents)
    return tuple(documents), tuple(notes)


def _require_a_workload(documents: list[ManifestDocument], location: str) -> None:
    # A release is healthy when its workloads have rolled out: with none, nothing would
    # say whether the pushed image runs.
    if not any(d.body["apiVersion"] == "apps/v1" and d.kind in WORKLOAD_KINDS for d in documents):
        raise ValueError(f"{location}: no apps/v1 {', '.join(WORKLOAD_KINDS)}; a release needs one to watch")


def _read_texts(source: ManifestSource, files: SourceFiles) -> list[tuple[str, str]]:
    if source.template is not None:
        return [(source.template, files.read_text(source.template))]
    directory = str(source.directory).rstrip("/")
    names = sorted(n for n in files.list_names(directory) if n.endswith(YAML_SUFFIXES))
    if not names:
        raise ValueError(f"{directory}/: no *.yaml or *.yml file in it")
    paths = [f"{directory}/{name}" for name in names]
    return [(path, files.read_text(path)) for path in paths]


def _prepare(body: Any, namespace: str) -> tuple[Object, list[str]]:
    if not isinstance(body, dict):
        raise FieldError("", "not a mapping (a Kubernetes object)")
    _require_json(body, "")
    for field in ("apiVersion", "kind"):
        if not isinstance(body.get(field), str) or not body[field]:
            raise FieldError(field, "required: a string")
    meta = body.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise FieldError("metadata.name", "required: a string (geodeploy applies every object by its name)")
    labels = meta.get("labels", {})
    if not isinstance(labels, dict):
        raise FieldError("metadata.labels", "must be a mapping")
    for key, value in labels.items():
        if not isinstance(value, str):
            raise FieldError(f"metadata.labels.{key}", "must be a string: quote it")
    # The parsed bodies are read_source's own: loading may write them in place.
    body, notes = upgrade_document(body)
    _place_in_namespace(body, namespace)  # first: a cluster-scoped kind is refused as such
    _require_a_supported_kind(body)
    _check_images(body)
    _check_rollout_rules(body)
    return body, notes


# geodeploy's own ConfigMaps in an app's namespace (the release record) start with this:
# a brought object of that name would be granted to the deployer and overwrite the record.
RESERVED_CONFIGMAP_PREFIX = "geodeploy-releases-"
_MIN_AVAILABLE = re.compile(r"^[0-9]+%$")


def _check_rollout_rules(body: Object) -> None:
    """What geodeploy could not roll out, watch or keep safe, refused at its field."""
    kind, meta, spec = body["kind"], body["metadata"], body.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    if kind == "ConfigMap" and meta["name"].startswith(RESERVED_CONFIGMAP_PREFIX):
        raise FieldError("metadata.name", f"names starting {RESERVED_CONFIGMAP_PREFIX!r} are geodeploy's own records")
    if kind in ("StatefulSet", "DaemonSet"):
        strategy = spec.get("updateStrategy")
        if isinstance(strategy, dict) and strategy.get("type", "RollingUpdate") != "RollingUpdate":
            raise FieldError(
                "spec.updateStrategy.type", "only RollingUpdate: with OnDelete no release would ever roll out"
            )
    if kind == "Job" and any(image == Placeholder.IMAGE for _, image in _container_images(body)):
        raise FieldError(
            "spec.template.spec.containers",
            f"a Job's pod template cannot change once created, so `{Placeholder.IMAGE}` in it would fail every "
            "release after the first; run it from a CronJob or a Deployment",
        )
    if kind == "PodDisruptionBudget" and "minAvailable" in spec:
        value = spec["minAvailable"]
        valid = (isinstance(value, int) and not isinstance(value, bool) and value >= 0) or (
            isinstance(value, str) and _MIN_AVAILABLE.match(value)
        )
        if not valid:
            raise FieldError("spec.minAvailable", f'{value!r}: a count (2) or a whole percentage ("50%")')


def _require_json(value: Any, path: str) -> None:
    """Kubernetes reads the YAML as JSON: keys are strings, numbers are finite."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise FieldError(f"{path}.{key}".lstrip("."), "a key must be a string: quote it")
            _require_json(item, f"{path}.{key}".lstrip("."))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _require_json(item, f"{path}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise FieldError(path, "not a finite number")
    elif not isinstance(value, str | int | float | bool | None):
        raise FieldError(path, f"a YAML {type(value).__name__} has no JSON form: write a string")


def _place_in_namespace(body: Object, namespace: str) -> None:
    meta, kind = body["metadata"], body["kind"]
    if kind == "Namespace":
        if meta["name"] not in (namespace, Placeholder.NAMESPACE):
            raise FieldError("metadata.name", f"{meta['name']!r} is not the app's namespace {namespace!r}")
        meta["name"] = namespace
    elif kind in CLUSTER_SCOPED_KINDS:
        raise FieldError("kind", f"{kind} is cluster-scoped; the deployer may write only in the app's namespace")
    elif meta.get("namespace", Placeholder.NAMESPACE) == Placeholder.NAMESPACE:
        meta["namespace"] = namespace
    elif meta["namespace"] != namespace:
        raise FieldError(
            "metadata.namespace",
            f"{meta['namespace']!r} is not the app's namespace {namespace!r}; "
            "the deployer's grants are per app namespace",
        )


def _require_a_supported_kind(body: Object) -> None:
    """geodeploy reaches each kind by a fixed REST path and grants the deployer RBAC on it
    by name (shared/kinds.py): any other kind could be neither applied nor granted."""
    api_version, kind = body["apiVersion"], body["kind"]
    if kind_of(api_version, kind) is not None:
        return
    served_as = [k.api_version for k in KINDS if k.kind == kind]
    accepted = f"geodeploy can apply {', '.join(supported())}"
    if served_as:
        raise FieldError("apiVersion", f"{kind} is applied as {' or '.join(served_as)}, not {api_version}; {accepted}")
    raise FieldError("kind", f"{api_version} {kind} is not a kind geodeploy can apply; {accepted}")


def _container_images(body: Object) -> list[tuple[str, Any]]:
    """(field path, image) of every container and initContainer in the object's pod spec."""
    path = POD_SPEC_PATHS.get(body["kind"])
    pod: Any = body
    for key in path or ():
        pod = pod.get(key) if isinstance(pod, dict) else None
    if not path or not isinstance(pod, dict):
        return []
    images = []
    for list_name in _CONTAINER_LISTS:
        containers = pod.get(list_name)
        for i, container in enumerate(containers if isinstance(containers, list) else []):
            image = container.get("image") if isinstance(container, dict) else None
            images.append((f"{'.'.join(path)}.{list_name}[{i}].image", image))
    return images


def _check_images(body: Object) -> None:
    for path, image in _container_images(body):
        if isinstance(image, str) and Placeholder.IMAGE in image and image != Placeholder.IMAGE:
            raise FieldError(
                path, f"write {Placeholder.IMAGE} alone: it becomes the whole pinned reference repository@sha256:…"
            )


def _require_the_image(documents: list[ManifestDocument], location: str) -> None:
    # In a workload: a release is healthy when its workloads have rolled out, so one whose
    # image runs only in a CronJob would succeed unchecked.
    workloads = [d for d in documents if d.body["apiVersion"] == "apps/v1" and d.kind in WORKLOAD_KINDS]
    if not any(image == Placeholder.IMAGE for d in workloads for _, image in _container_images(d.body)):
        raise ValueError(
            f"{location}: no container has `image: {Placeholder.IMAGE}` in a {', '.join(WORKLOAD_KINDS)}, so no "
            "pushed image would reach the cluster, watched; write it where the image geodeploy deploys goes"
        )


def _identity(document: ManifestDocument) -> tuple[str, str, str, str]:
    group = document.body["apiVersion"].rpartition("/")[0]
    return group, document.kind, document.body["metadata"].get("namespace", ""), document.name


def _require_unique(documents: list[ManifestDocument]) -> None:
    seen: dict[tuple[str, str, str, str], ManifestDocument] = {}
    for document in documents:
        first = seen.setdefault(_identity(document), document)
        if first is not document:
            raise ValueError(
                f"{document.describe()}: metadata.name: the same object as {first.describe()}; "
                "applying both, the later would replace the earlier"
            )


def _drop_replicas_an_autoscaler_owns(documents: list[ManifestDocument]) -> list[str]:
    """An autoscaler owns its target's replica count: a fixed `spec.replicas` would undo
    every scale-up at each deploy (the built-in Deployment never sets it either)."""
    notes = []
    for autoscaler in (d for d in documents if d.kind == "HorizontalPodAutoscaler"):
        scaling = autoscaler.body.get("spec")
        ref = scaling.get("scaleTargetRef") if isinstance(scaling, dict) else None
        if not isinstance(ref, dict):
            continue
        for target in documents:
            spec = target.body.get("spec")
            scaled = (target.kind, target.name) == (ref.get("kind"), ref.get("name"))
            if scaled and isinstance(spec, dict) and "replicas" in spec:
                del spec["replicas"]
                notes.append(f"{target.describe()}: spec.replicas dropped: {autoscaler.describe()} scales it")
    return notes
