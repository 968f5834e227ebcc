"""The status page in a real headless Chromium (Debian's), opened as an operator opens it:
through `python -m sandbox proxy` (gcloud run services proxy's stand-in), which adds the
operator's token for the sandbox's Cloud Run ingress. What a user sees is read from the
DOM Chromium built; screenshots are taken during a deploy, after an automatic rollback
and with a drained region (written to a temp dir; with GEODEPLOY_UPDATE_SCREENSHOTS=1
also over the copies in docs/status-page/)."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest

from sandbox.driver import digest_for, wait_until
from sandbox.kwok_stages import broken_digest
from sandbox.processes import ManagedProcess
from shared.display import short_image
from shared.topology import functions_of, service_account_email

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "status-page"
WINDOW = (1280, 900)
# As the machine notes run it: as root it needs --no-sandbox; without the background
# flags it keeps trying to reach Google's hosts, which this closed network refuses.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    done = subprocess.run(
        [str(REPO / "scripts" / "install-chromium.sh")], capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"no Chromium: {done.stderr.strip()}")
    return done.stdout.strip()


@pytest.fixture(scope="module")
def page(sandbox, catalog) -> Iterator[str]:
    """The waves config's status page on a local port, with the operator's token added."""
    _, config = catalog
    name = f"{config.name}-status-page"
    state_dir = sandbox.sandbox.state_dir
    proxy = ManagedProcess(
        "status-page-proxy",
        [sys.executable, "-m", "sandbox", "--state-dir", str(state_dir), "proxy", "--service", name, "--port", "0"],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"},
        log_path=state_dir / "logs" / "status-page-proxy.log",
    ).start()
    try:
        yield proxy.wait_for_line(r"listening on (http://\S+)", timeout=30).group(1) + "/"
    finally:
        proxy.stop()


def _service_url(sandbox, config) -> str:
    state = json.loads((sandbox.sandbox.state_dir / "sandbox.json").read_text())
    [services] = [s for path, s in state["services"].items() if Path(path).stem == "sandbox-waves"]
    return services[f"{config.name}-status-page"]


def _status(url: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_only_the_configured_viewers_get_through_cloud_runs_check(sandbox, catalog, page):
    _, config = catalog
    url = _service_url(sandbox, config)
    assert url.startswith("http://127.0.0.1:")
    assert _status(url, None) == 403  # no token: as Cloud Run answers
    assert _status(url, "ya29.not-a-token") == 401
    # A geodeploy function's own identity is not a viewer.
    deployer = service_account_email(config, f"deploy-{config.regions[0].name}")
    assert _status(url, sandbox.sandbox.identities[deployer].access_token) == 403
    assert _status(page, None) == 200  # the operator, through the proxy
    [spec] = [f for f in functions_of(config) if f.http]
    assert spec.viewers == ("user:sandbox-operator@geodeploy.local",)


def test_the_status_page_may_only_read_and_the_drift_check_may_write_only_its_mark(sandbox, catalog):
    _, config = catalog
    app, region = config.apps[0], config.regions[0]

    def can(identity: str, verb: str, resource: str) -> bool:
        user = f"--as={service_account_email(config, identity)}"
        args = ("auth", "can-i", verb, resource, "-n", app.namespace, user)
        return sandbox.kubectl(config, region.name, *args, check=False).strip() == "yes"

    mark = f"configmaps/{config.name}-drift-{app.name}"
    assert can("status_page", "get", f"deployments.apps/{app.name}")
    assert can("status_page", "get", f"configmaps/geodeploy-releases-{app.name}") and can("status_page", "get", mark)
    assert not can("status_page", "patch", mark) and not can("status_page", "patch", f"deployments.apps/{app.name}")
    assert not can("status_page", "get", "configmaps/other") and not can("status_page", "list", "configmaps")
    assert can("drift", "patch", mark) and not can("drift", "patch", "configmaps/other")


# --- what Chromium shows ---------------------------------------------------------------------


def _dom(chromium: str, url: str) -> str:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        done = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    return done.stdout


def _row(dom: str, region: str) -> str:
    """The text of a region's row, as a reader sees it."""
    found = re.search(rf'<tr id="region-{region}"[^>]*>(.*?)</tr>', dom, re.S)
    assert found, f"no row for {region} in the page"
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())


def _history(dom: str, region: str) -> str:
    found = re.search(rf'<table id="history-{region}">(.*?)</table>', dom, re.S)
    assert found, f"no history for {region}"
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())


def _wait_for_page(chromium: str, url: str, check, what: str, timeout: float = 90) -> str:
    def shown() -> str | None:
        dom = _dom(chromium, url)
        return dom if check(dom) else None

    return wait_until(shown, timeout, f"the page to show {what}", interval=0.5)


def _screenshot(chromium: str, url: str, directory: Path, name: str) -> Path:
    path = directory / f"{name}.png"
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={path}", url],
            capture_output=True,
            timeout=120,
            check=True,
        )
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == WINDOW  # IHDR: the window's size
    if os.environ.get("GEODEPLOY_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / path.name)
    return path


def test_a_deploy_a_rollback_and_a_drained_region_as_the_page_shows_them(
    sandbox, catalog, chromium, page, faults, tmp_path
):
    _, config = catalog
    repository = config.apps[0].repository
    regions = [r.name for r in config.regions]
    good = f"{repository}@{digest_for('catalog-status-page')}"
    sandbox.push_image(config, good.split("@")[1], tag="v1.4.0")
    sandbox.wait_for_image(config, regions, good, timeout=120)
    for region in regions:  # recorded as succeeded: a check skips a release still rolling out
        sandbox.wait_for_result(
            config, lambda r, region=region: (r.get("image"), r["region"], r["status"]) == (good, region, "succeeded")
        )

    # Every region runs it, tagged; a drift check is recorded where the page reads it.
    sandbox.publish(config, config.topics.drift, {"version": 1})
    dom = _wait_for_page(
        chromium,
        page,
        lambda d: all("in sync" in _row(d, r) and short_image(good) in _row(d, r) for r in regions),
        "every region running v1.4.0 and in sync",
    )
    for region in regions:
        row = _row(dom, region)
        assert "v1.4.0" in row and "complete" in row and "serving" in row, row
    assert "Nothing waits at a gate." in dom

    # During a deploy: a broken image rolls out in wave 1.
    bad = f"{repository}@{broken_digest('catalog-status-page')}"
    sandbox.push_image(config, bad.split("@")[1], tag="v1.5.0")
    dom = _wait_for_page(
        chromium,
        page,
        lambda d: short_image(bad) in _row(d, "europe-west1") and "progressing" in _row(d, "europe-west1"),
        "wave 1 rolling out v1.5.0",
    )
    assert short_image(good) in _row(dom, "us-west1")  # wave 2 waits
    _screenshot(chromium, page, tmp_path, "during-deploy")

    # After the automatic rollback: wave 1 back on v1.4.0, the history says who did what.
    sandbox.wait_for_result(
        config, lambda r: r.get("image") == bad and r["status"] == "rolled_back", what="the automatic rollback"
    )
    dom = _wait_for_page(
        chromium,
        page,
        lambda d: "auto-rollback" in _history(d, "europe-west1") and "complete" in _row(d, "europe-west1"),
        "the rollback in europe-west1's history",
    )
    europe, history = _row(dom, "europe-west1"), _history(dom, "europe-west1")
    assert short_image(good) in europe and "v1.4.0" in europe, europe
    assert "rollback of" in history and "by geodeploy:auto-rollback" in history, history
    assert "failed ProgressDeadlineExceeded" in history and "v1.5.0" in history, history
    assert all(short_image(bad) not in _history(dom, r) for r in regions[1:])  # it never reached wave 2
    _screenshot(chromium, page, tmp_path, "after-rollback")

    # A region whose cluster stops answering is drained from the load balancer.
    sandbox.set_cluster_mode(config, "asia-east1", "refuse_connections")
    try:
        sandbox.reconcile_traffic(config)
        dom = _wait_for_page(
            chromium,
            page,
            lambda d: "drained" in _row(d, "asia-east1") and "unreachable" in _row(d, "asia-east1"),
            "asia-east1 unreachable and drained",
        )
        assert "serving" in _row(dom, "europe-west1") and "serving" in _row(dom, "us-west1")
        _screenshot(chromium, page, tmp_path, "drained-region")
    finally:
        sandbox.set_cluster_mode(config, "asia-east1", "normal")
        sandbox.reconcile_traffic(config)  # its pool back, for whatever runs next
