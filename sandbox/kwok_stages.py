"""kwok Stage resources for the sandbox clusters: fake nodes come up Ready, pods become
Running and Ready, deleted pods go away, and pods of the designated broken image start
but never become Ready, so a rollout of it stalls into ProgressDeadlineExceeded. A second
designated image breaks only a worker's pods (labelled `app.kubernetes.io/component:
worker`), as an image whose queue consumer crashes while its web server runs. A third
turns unready about ten seconds after it became Ready: it passes its rollout and fails
while the release soaks.

kwokctl uses its built-in stages only when a config supplies none, so supplying the
broken-image stage means supplying the whole set; these are written for geodeploy's
needs (no init containers, no Jobs).
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = [
    "BROKEN_DIGEST_PREFIX",
    "FAILS_LATER_DIGEST_PREFIX",
    "WORKER_BROKEN_DIGEST_PREFIX",
    "broken_digest",
    "failing_later_digest",
    "stages",
]

# Any image whose digest starts with this never becomes Ready in the sandbox.
BROKEN_DIGEST_PREFIX = "sha256:0badc0de"
# An image whose digest starts with this never becomes Ready in a worker's pods only.
WORKER_BROKEN_DIGEST_PREFIX = "sha256:0bad0bad"
# An image whose pods become Ready, then stop being Ready about ten seconds later: one
# that passes its rollout and fails while it soaks (a leak, a crash under load).
FAILS_LATER_DIGEST_PREFIX = "sha256:0badfa11"
FAILS_LATER_AFTER_MS = 10_000
WORKER_ROLE = "worker"  # the value of app.kubernetes.io/component that marks a worker's pods


def broken_digest(label: str = "broken", *, worker_only: bool = False) -> str:
    """A valid digest, distinct per label, that the sandbox treats as a broken image (in
    every pod, or with `worker_only` in a worker's pods only)."""
    prefix = (WORKER_BROKEN_DIGEST_PREFIX if worker_only else BROKEN_DIGEST_PREFIX).removeprefix("sha256:")
    return "sha256:" + (prefix + hashlib.sha256(label.encode()).hexdigest())[:64]


def failing_later_digest(label: str = "fails-later") -> str:
    """A valid digest, distinct per label, whose pods turn unready after FAILS_LATER_AFTER_MS."""
    prefix = FAILS_LATER_DIGEST_PREFIX.removeprefix("sha256:")
    return "sha256:" + (prefix + hashlib.sha256(label.encode()).hexdigest())[:64]


_FAILS_LATER = (
    f'[.spec.containers.[].image | split("@") | .[1] // "" | startswith("{FAILS_LATER_DIGEST_PREFIX}")] | any'
)

_IS_BROKEN = (
    '(.metadata.labels["app.kubernetes.io/component"] // "") as $role'
    ' | [.spec.containers.[].image | split("@") | .[1] // ""'
    f' | startswith("{BROKEN_DIGEST_PREFIX}")'
    f' or ($role == "{WORKER_ROLE}" and startswith("{WORKER_BROKEN_DIGEST_PREFIX}"))]'
    " | any"
)

_NODE_STATUS = """
{{ $now := Now }}
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type | Quote }}
{{ end }}
addresses:
{{ with NodeIP }}
- address: {{ . | Quote }}
  type: InternalIP
{{ end }}
{{ with NodeName }}
- address: {{ . | Quote }}
  type: Hostname
{{ end }}
allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
capacity: {cpu: "32", memory: 256Gi, pods: "110"}
nodeInfo:
  architecture: amd64
  operatingSystem: linux
  kubeletVersion: {{ printf "kwok-%s" Version | Quote }}
phase: Running
"""


def _pod_status(ready: bool) -> str:
    flag = "true" if ready else "false"
    condition = '"True"' if ready else '"False"'
    return f"""
{{{{ $now := Now }}}}
conditions:
- {{type: Initialized, status: "True", lastTransitionTime: {{{{ $now | Quote }}}}}}
- {{type: PodScheduled, status: "True", lastTransitionTime: {{{{ $now | Quote }}}}}}
- {{type: ContainersReady, status: {condition}, lastTransitionTime: {{{{ $now | Quote }}}}}}
- {{type: Ready, status: {condition}, lastTransitionTime: {{{{ $now | Quote }}}}}}
containerStatuses:
{{{{ range .spec.containers }}}}
- image: {{{{ .image | Quote }}}}
  name: {{{{ .name | Quote }}}}
  ready: {flag}
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{{{ $now | Quote }}}}
{{{{ end }}}}
{{{{ with NodeIPWith .spec.nodeName }}}}
hostIP: {{{{ . | Quote }}}}
{{{{ end }}}}
{{{{ with PodIPWith .spec.nodeName false (or .metadata.uid "") (or .metadata.name "") (or .metadata.namespace "") }}}}
podIP: {{{{ . | Quote }}}}
{{{{ end }}}}
phase: Running
startTime: {{{{ $now | Quote }}}}
"""


def _stage(
    name: str, kind: str, expressions: list[dict[str, Any]], next_: dict[str, Any], delay_ms: int | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "resourceRef": {"apiGroup": "v1", "kind": kind},
        "selector": {"matchExpressions": expressions},
        "next": next_,
    }
    if delay_ms is not None:
        spec["delay"] = {"durationMilliseconds": delay_ms, "jitterDurationMilliseconds": delay_ms + delay_ms // 10}
    return {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage", "metadata": {"name": name}, "spec": spec}


def _not_deleted() -> dict[str, Any]:
    return {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}


def _pending() -> dict[str, Any]:
    return {"key": ".status.phase", "operator": "In", "values": ["Pending"]}


def stages() -> list[dict[str, Any]]:
    not_ready = {
        "key": '.status.conditions.[] | select(.type == "Ready") | .status',
        "operator": "NotIn",
        "values": ["True"],
    }
    ready = {**not_ready, "operator": "In"}
    return [
        _stage("node-initialize", "Node", [not_ready], {"statusTemplate": _NODE_STATUS}),
        # Keeps node conditions fresh (kwok renews the node leases itself); frequent enough
        # that a node the node controller marked unreachable is Ready again within seconds.
        _stage("node-heartbeat", "Node", [ready], {"statusTemplate": _NODE_STATUS}, delay_ms=20_000),
        _stage(
            "pod-ready",
            "Pod",
            [_not_deleted(), _pending(), {"key": _IS_BROKEN, "operator": "NotIn", "values": ["true"]}],
            {"statusTemplate": _pod_status(ready=True)},
        ),
        _stage(
            "pod-broken-never-ready",
            "Pod",
            [_not_deleted(), _pending(), {"key": _IS_BROKEN, "operator": "In", "values": ["true"]}],
            {"statusTemplate": _pod_status(ready=False)},
        ),
        _stage(
            "pod-fails-later",
            "Pod",
            [
                _not_deleted(),
                ready,
                {"key": _FAILS_LATER, "operator": "In", "values": ["true"]},
            ],
            {"statusTemplate": _pod_status(ready=False)},
            delay_ms=FAILS_LATER_AFTER_MS,
        ),
        _stage(
            "pod-delete",
            "Pod",
            [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}],
            {"finalizers": {"empty": True}, "delete": True},
        ),
    ]
