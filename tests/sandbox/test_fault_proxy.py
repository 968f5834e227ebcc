"""The fault proxy sits on the functions' real path to every API server: GKE hands out its
address with the cluster's own CA, so geodeploy's KubeClient (kubernetes client, Google
access token) talks through it, while kubectl goes direct. Each fault does what it says
there: refusals carry a Kubernetes Status, a cut write happens but its answer is lost,
drops and black holes time out, held requests wait for a release, resets fail at once,
stalled watches send nothing; the audit log shows what was sent; and a function killed
mid-request is redelivered to a fresh worker."""

from __future__ import annotations

import json
import secrets
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from sandbox.driver import digest_for, wait_until
from shared.adapters.kube import KubeClient, KubeConflict, KubeRejected
from shared.errors import ClusterUnreachable

pytestmark = pytest.mark.sandbox

REGION = "us-west1"
SHORT = (1.0, 1.0)  # (connect, read) seconds; the adapter's own read timeout is 30 s


def _kube(sandbox, config, region: str = REGION) -> KubeClient:
    """A KubeClient made the way the functions make theirs (GKE endpoint + CA, Google token)."""
    return sandbox.connector(config).connect(config.region(region).cluster)


def _configmap(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": data}


def _unique(label: str) -> str:
    return f"fp-{label}-{secrets.token_hex(3)}"


def _ours(faults, cluster: str, since: int) -> list[dict]:
    """This test's requests in the audit log: the functions keep talking to the clusters
    in the background, but only in their apps' namespaces and never to /version."""
    return [
        e
        for e in faults.audit(cluster, since=since)
        if e["path"] is None
        or e["path"] == "/version"
        or e["path"].startswith("/api/v1/namespaces/default/")
        or e["path"].startswith("/apis/apps/v1/namespaces/default/")
    ]


def _exists(sandbox, config, kind: str, name: str) -> bool:
    return bool(sandbox.kubectl(config, REGION, "-n", "default", "get", kind, name, "--ignore-not-found", "-o", "name"))


def test_the_functions_reach_the_api_servers_through_the_proxy(sandbox, shop, faults):
    _, config = shop
    cluster = sandbox.cluster_name(config, REGION)
    registered = sandbox.sandbox.google.state()["clusters"][config.region(REGION).cluster.resource_name(config.project)]
    direct = sandbox.sandbox.cluster_for(config, REGION)
    assert registered["endpoint"] == faults.endpoint(cluster) != direct.endpoint
    kube = _kube(sandbox, config)
    mark = faults.audit_mark()

    assert kube.server_version() == "v1.36.1"
    [entry] = _ours(faults, cluster, mark)
    assert (entry["method"], entry["path"], entry["status"], entry["fault"]) == ("GET", "/version", 200, None)

    # What the proxy costs per call: the same read through it and straight to the API server.
    direct_kube = KubeClient(
        f"https://{direct.endpoint}",
        ca_pem=direct.ca_pem,
        token=lambda: sandbox.sandbox.access_token,
        field_manager="geodeploy",
        cluster=cluster,
    )

    def median_ms(client: KubeClient) -> float:
        samples = []
        for _ in range(40):
            started = time.perf_counter()
            client.get("v1", "ConfigMap", "kube-root-ca.crt", "default")
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples)

    median_ms(kube), median_ms(direct_kube)  # warm both connection pools
    through, straight_ms = median_ms(kube), median_ms(direct_kube)
    print(f"GET through the proxy {through:.1f} ms, direct {straight_ms:.1f} ms (medians)")
    assert through - straight_ms < 15


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (403, KubeRejected),
        (409, KubeConflict),
        (422, KubeRejected),
        (500, ClusterUnreachable),
        (503, ClusterUnreachable),
    ],
)
def test_refuse_answers_with_a_kubernetes_status(sandbox, shop, faults, status, error):
    _, config = shop
    name = _unique("refuse")
    kube = _kube(sandbox, config)
    rule = sandbox.add_fault(config, REGION, "refuse", method="GET", path=f"/configmaps/{name}$", status=status)
    mark = faults.audit_mark()

    with pytest.raises(error) as refused:
        kube.get("v1", "ConfigMap", name, "default")

    assert "injected by the fault proxy" in str(refused.value)
    [entry] = _ours(faults, sandbox.cluster_name(config, REGION), mark)
    assert (entry["status"], entry["fault"], entry["rule"]) == (status, "refuse", rule)
    assert kube.get("v1", "ConfigMap", name, "default") is None  # times=1: the next call is forwarded


def test_a_refusal_is_the_status_body_an_api_server_sends(sandbox, shop, faults):
    import urllib3

    _, config = shop
    cluster = sandbox.cluster_name(config, REGION)
    sandbox.add_fault(config, REGION, "refuse", path="^/version$", status=429, message="slow down")
    http = urllib3.PoolManager(ca_cert_data=sandbox.sandbox.cluster_for(config, REGION).ca_pem)

    answer = http.request("GET", f"https://{faults.endpoint(cluster)}/version", retries=False)

    assert answer.status == 429
    assert answer.headers["Content-Type"] == "application/json"
    assert json.loads(answer.data) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "slow down",
        "reason": "TooManyRequests",
        "code": 429,
    }


def test_cut_applies_the_write_but_the_answer_is_lost(sandbox, shop, faults):
    _, config = shop
    name = _unique("cut")
    kube = _kube(sandbox, config)
    sandbox.add_fault(config, REGION, "cut", method="POST", path="/configmaps$", body=name)
    mark = faults.audit_mark()

    with pytest.raises(ClusterUnreachable):
        kube.create(_configmap(name, written="yes"))

    assert _exists(sandbox, config, "configmap", name)  # kubectl goes direct: the write happened
    [entry] = _ours(faults, sandbox.cluster_name(config, REGION), mark)
    assert (entry["fault"], entry["status"], entry["upstream_status"]) == ("cut", None, 201)
    sandbox.kubectl(config, REGION, "-n", "default", "delete", "configmap", name)


def test_a_dropped_call_times_out(sandbox, shop, faults):
    _, config = shop
    kube = _kube(sandbox, config)
    sandbox.add_fault(config, REGION, "drop", path="^/version$", times=None)
    mark = faults.audit_mark()
    started = time.monotonic()

    with pytest.raises(ClusterUnreachable, match="timed out"):
        kube._call("GET", "/version", timeout=SHORT)

    assert time.monotonic() - started < 10
    entries = _ours(faults, sandbox.cluster_name(config, REGION), mark)
    # urllib3 retried the idempotent GET (3 retries by default); each attempt was dropped.
    # One attempt: the HTTP layer does not retry behind the caller's back.
    assert len(entries) == 1 and {e["fault"] for e in entries} == {"drop"}
    assert {e["status"] for e in entries} == {None}
    faults.clear()
    assert kube.server_version() == "v1.36.1"


def test_cluster_modes_blackhole_and_refuse_connections(sandbox, shop, faults):
    _, config = shop
    cluster = sandbox.cluster_name(config, REGION)
    kube = _kube(sandbox, config)
    kube.server_version()  # a pooled connection exists: the modes apply to it too

    sandbox.set_cluster_mode(config, REGION, "blackhole")
    mark = faults.audit_mark()
    started = time.monotonic()
    with pytest.raises(ClusterUnreachable, match="timed out"):
        kube._call("GET", "/version", timeout=SHORT)
    assert time.monotonic() - started < 10
    assert {e["fault"] for e in _ours(faults, cluster, mark)} == {"blackhole"}

    sandbox.set_cluster_mode(config, REGION, "refuse_connections")
    started = time.monotonic()
    with pytest.raises(ClusterUnreachable, match="refused"):
        kube.server_version()
    assert time.monotonic() - started < 5

    sandbox.set_cluster_mode(config, REGION, "normal")
    assert kube.server_version() == "v1.36.1"
    assert faults.clusters()[cluster]["mode"] == "normal"


def test_a_held_request_waits_for_its_release(sandbox, shop, faults):
    _, config = shop
    name = _unique("hold")
    kube = _kube(sandbox, config)
    sandbox.add_fault(config, REGION, "hold", method="GET", path=f"/configmaps/{name}$")
    sandbox.add_fault(config, REGION, "hold", method="POST", body=name)

    with ThreadPoolExecutor(2) as pool:
        read = pool.submit(kube.get, "v1", "ConfigMap", name, "default")
        held = sandbox.wait_for_held(config, REGION, "GET", f"/configmaps/{name}$", timeout=10)
        time.sleep(0.3)
        assert not read.done()
        assert held["cluster"] == sandbox.cluster_name(config, REGION) and held["since"] <= time.time()
        sandbox.release(held["id"])
        assert read.result(timeout=10) is None  # forwarded: the ConfigMap does not exist

        # Released with drop, the connection closes unanswered and nothing is written.
        create = pool.submit(kube.create, _configmap(name))
        held = sandbox.wait_for_held(config, REGION, "POST", "/configmaps$", timeout=10)
        sandbox.release(held["id"], drop=True)
        with pytest.raises(ClusterUnreachable):
            create.result(timeout=10)
    assert not _exists(sandbox, config, "configmap", name)
    assert sandbox.held_requests(config, REGION) == []


def test_reset_fails_the_call_at_once(sandbox, shop, faults):
    _, config = shop
    name = _unique("reset")
    kube = _kube(sandbox, config)
    cluster = sandbox.cluster_name(config, REGION)
    sandbox.add_fault(config, REGION, "reset", method="POST", body=name)
    mark = faults.audit_mark()

    # Python's TLS layer (OpenSSL 3) reports the RST as the end of the stream.
    with pytest.raises(ClusterUnreachable, match=r"reset|RemoteDisconnected"):
        kube.create(_configmap(name))
    assert not _exists(sandbox, config, "configmap", name)

    # A GET too: the HTTP layer never retries on its own (the event's redelivery does).
    sandbox.add_fault(config, REGION, "reset", method="GET", path=f"/configmaps/{name}$")
    with pytest.raises(ClusterUnreachable, match=r"reset|RemoteDisconnected"):
        kube.get("v1", "ConfigMap", name, "default")
    assert kube.get("v1", "ConfigMap", name, "default") is None
    entries = _ours(faults, cluster, mark)
    assert [(e["method"], e["fault"], e["status"]) for e in entries] == [
        ("POST", "reset", None),
        ("GET", "reset", None),
        ("GET", None, 404),
    ]


def test_a_stalled_watch_sends_no_events_until_cleared(sandbox, shop, faults):
    _, config = shop
    name = _unique("watch")
    kube = _kube(sandbox, config)
    cluster = sandbox.cluster_name(config, REGION)
    kube.create(_configmap(name, version="1"))
    rule = sandbox.add_fault(config, REGION, "stall_watch", path="/configmaps$", query=name)
    mark = faults.audit_mark()
    seen: list[str] = []

    def watch() -> dict | None:
        return kube.watch_object(
            "v1",
            "ConfigMap",
            name,
            "default",
            until=lambda cm: (cm or {}).get("data", {}).get("version") == "2",
            deadline=time.monotonic() + 20,
            on_change=lambda cm: seen.append((cm or {}).get("data", {}).get("version")),
        )

    with ThreadPoolExecutor(1) as pool:
        watching = pool.submit(watch)
        wait_until(
            lambda: any("watch=true" in e["query"] for e in _ours(faults, cluster, mark)), 10, "the watch to start"
        )
        sandbox.kubectl(config, REGION, "-n", "default", "patch", "configmap", name, "-p", '{"data":{"version":"2"}}')
        time.sleep(1.0)
        assert not watching.done() and seen == ["1"]  # the event is stuck in the proxy
        faults.remove_rule(rule)
        finished = watching.result(timeout=5)
    assert finished is not None and finished["data"]["version"] == "2" and seen == ["1", "2"]
    [watch_entry] = [e for e in _ours(faults, cluster, mark) if "watch=true" in e["query"]]
    assert (watch_entry["fault"], watch_entry["status"]) == ("stall_watch", 200)
    sandbox.kubectl(config, REGION, "-n", "default", "delete", "configmap", name)


def test_the_audit_log_lists_a_deployment_patch_with_its_image(sandbox, shop, faults):
    _, config = shop
    name = _unique("audit")
    image = f"registry.example/audit@{digest_for(name)}"
    kube = _kube(sandbox, config)
    mark = faults.audit_mark()
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "annotations": {"geodeploy.test/probe": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}, {"name": "side", "image": "busybox:1"}]},
            },
        },
    }

    kube.apply(deployment)

    [entry] = _ours(faults, sandbox.cluster_name(config, REGION), mark)
    assert entry["method"] == "PATCH"
    assert entry["path"] == f"/apis/apps/v1/namespaces/default/deployments/{name}"
    assert "fieldManager=geodeploy" in entry["query"] and entry["status"] == 201
    assert entry["images"] == [image, "busybox:1"]
    assert entry["annotations"] == {"geodeploy.test/probe": name}
    assert entry["mono"] <= time.monotonic() and abs(entry["time"] - time.time()) < 60
    sandbox.kubectl(config, REGION, "-n", "default", "delete", "deployment", name)


def test_a_killed_function_is_redelivered_to_a_fresh_worker(sandbox, shop, faults):
    path, config = shop
    cluster = sandbox.cluster_name(config, REGION)
    function = f"{config.name}-deploy-{REGION}"
    digest = digest_for(_unique("kill"))
    image = f"{config.apps[0].repository}@{digest}"
    deployment_patch = r"/apis/apps/v1/namespaces/shop/deployments/shop$"
    # The first apply of this release's Deployment (not a dry run) waits at the proxy.
    # The app runs everywhere first (whatever ran before this test): the held request is
    # then the release's one apply of an existing Deployment, not a create beside it.
    baseline = digest_for(_unique("kill-baseline"))
    sandbox.push_image(config, baseline, tag="v7.9.0")
    sandbox.wait_for_image(config, [r.name for r in config.regions], f"{config.apps[0].repository}@{baseline}")
    sandbox.wait_for_traffic_settled(config)
    faults.add_rule("hold", cluster=cluster, method="PATCH", path=deployment_patch, query="^(?!.*dryRun)", body=digest)
    workers = sandbox.sandbox.functions[path].workers(function)
    mark = faults.audit_mark()

    sandbox.push_image(config, digest, tag="v8.0.0")
    held = sandbox.wait_for_held(config, REGION, "PATCH", deployment_patch, timeout=60)
    fresh = sandbox.kill_function(config, function)

    assert fresh and not set(fresh) & set(workers)
    # The held request's client died with its worker: the proxy never forwarded it...
    wait_until(lambda: not sandbox.held_requests(config, REGION), 10, "the held PATCH to end with its worker")
    # ...and Pub/Sub redelivered the message to a fresh worker, which deployed it.
    sandbox.wait_for_image(config, [REGION], image, timeout=60)
    patches = [e for e in faults.audit(cluster, since=mark) if e["method"] == "PATCH" and e.get("images") == [image]]
    first = next(e for e in patches if e["seq"] == held["seq"])
    assert (first["fault"], first["status"], first.get("client_gone")) == ("hold", None, True)
    assert any(e["seq"] > held["seq"] and e["status"] in (200, 201) and e["fault"] is None for e in patches)
    assert first["annotations"] == next(e for e in patches if e["seq"] > held["seq"])["annotations"]
    # Leave nothing running for the next tests: every region done, traffic reconciled.
    sandbox.wait_for_image(config, [r.name for r in config.regions], image, timeout=60)
    sandbox.wait_for_traffic_settled(config)


def test_the_proxy_reaches_a_restarted_control_plane(sandbox, shop, faults):
    _, config = shop
    region = "asia-east1"
    cluster = sandbox.cluster_name(config, region)
    kube = _kube(sandbox, config, region)
    upstream = faults.clusters()[cluster]["upstream"]
    sandbox.stop_region(config, region)
    try:
        mark = faults.audit_mark()
        with pytest.raises(ClusterUnreachable):
            kube.server_version()
        assert {e["fault"] for e in _ours(faults, cluster, mark)} == {"upstream_unreachable"}
    finally:
        sandbox.start_region(config, region)
    # kwokctl brings the API server back on the same port, so the proxy's upstream holds.
    assert sandbox.sandbox.clusters.describe(cluster).endpoint == upstream
    assert kube.server_version() == "v1.36.1"
