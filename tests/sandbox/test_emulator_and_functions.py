"""The Pub/Sub emulator pushes to functions-framework servers as Eventarc would, and the
sandbox processes stop without leaving anything behind.

Everything runs for real: `gcloud beta emulators pubsub` (with its java child), one
functions-framework process per probe function, the google-cloud-pubsub clients.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from sandbox.emulator import (
    PubSubEmulator,
    delete_subscription,
    ensure_pull_subscription,
    ensure_push_subscription,
    ensure_topic,
    publish,
    pull,
)
from sandbox.functions_host import FunctionsHost, FunctionSpec
from sandbox.processes import ManagedProcess, ProcessFailed, pid_alive, port_is_free

pytestmark = pytest.mark.sandbox

PROJECT = "geodeploy-sandbox"
PROBE_SOURCE = Path(__file__).parent / "fixtures" / "probe_functions.py"
PROBES = ("record_event", "fail_first")
MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
DELIVERY_DEADLINE = 20.0  # seconds; deliveries take well under a second, redelivery ~1 s


@dataclass
class Probes:
    host: FunctionsHost
    record_dir: Path

    def record_file(self, name: str) -> Path:
        return self.record_dir / f"{name}.jsonl"

    def records(self, name: str, message_id: str) -> list[dict[str, Any]]:
        try:
            lines = self.record_file(name).read_text().splitlines()
        except FileNotFoundError:
            return []
        return [r for r in map(json.loads, filter(None, lines)) if r["id"] == message_id]

    def wait_for_records(
        self, name: str, message_id: str, done: Callable[[list[dict[str, Any]]], bool]
    ) -> list[dict[str, Any]]:
        """Poll the function's record file until `done(records of message_id)` holds."""
        deadline = time.monotonic() + DELIVERY_DEADLINE
        while True:
            records = self.records(name, message_id)
            if done(records):
                return records
            if time.monotonic() >= deadline:
                tail = self.host.process(name).log_tail()
                pytest.fail(f"{name} got {records} for message {message_id}; its log:\n{tail}")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sandbox")


@pytest.fixture(scope="module")
def emulator(state_dir: Path) -> Iterator[PubSubEmulator]:
    emulator = PubSubEmulator(PROJECT, state_dir=state_dir / "emulator")
    try:
        emulator.start()
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def probes(state_dir: Path) -> Iterator[Probes]:
    probes = Probes(FunctionsHost(PROBE_SOURCE, state_dir=state_dir / "functions"), state_dir)
    specs = [FunctionSpec(name, name, env={"RECORD_FILE": str(probes.record_file(name))}, threads=2) for name in PROBES]
    try:
        probes.host.start(specs)
        yield probes
    finally:
        probes.host.stop()


def subscribe(emulator: PubSubEmulator, probes: Probes, function: str, topic: str) -> str:
    """A topic pushed to `function`; returns the subscription id (delete it when done)."""
    subscription = f"{topic}-to-{function}"
    ensure_topic(emulator.host, PROJECT, topic)
    endpoint = probes.host.push_endpoint(function, PROJECT, topic)
    ensure_push_subscription(emulator.host, PROJECT, subscription, topic, endpoint)
    return subscription


def test_push_delivers_a_message_published_cloud_event(emulator: PubSubEmulator, probes: Probes) -> None:
    subscription = subscribe(emulator, probes, "record_event", "gcr")
    payload = {"action": "INSERT", "digest": "us-west1-docker.pkg.dev/p/repo/app@sha256:" + "ab" * 32}
    try:
        message_id = publish(emulator.host, PROJECT, "gcr", json.dumps(payload).encode(), origin="test")
        [record] = probes.wait_for_records("record_event", message_id, lambda records: len(records) >= 1)
    finally:
        delete_subscription(emulator.host, PROJECT, subscription)

    assert record == {
        "id": message_id,
        "type": MESSAGE_PUBLISHED,
        "source": f"//pubsub.googleapis.com/projects/{PROJECT}/topics/gcr",
        "data": payload,
        "attributes": {"origin": "test"},
    }


def test_a_failed_delivery_is_redelivered_until_it_succeeds(emulator: PubSubEmulator, probes: Probes) -> None:
    subscription = subscribe(emulator, probes, "fail_first", "deploy-us-west1")
    try:
        message_id = publish(emulator.host, PROJECT, "deploy-us-west1", b'{"region": "us-west1"}')
        probes.wait_for_records(
            "fail_first", message_id, lambda records: any(r["outcome"] == "returned" for r in records)
        )
        # Absence can only be shown by waiting: after the success nothing may arrive for a while
        # (unacked messages come back about every second, so 3 s would show them).
        time.sleep(3)
        records = probes.records("fail_first", message_id)
    finally:
        delete_subscription(emulator.host, PROJECT, subscription)

    assert [(r["attempt"], r["outcome"]) for r in records] == [(1, "raised"), (2, "returned")]
    assert {r["data"]["region"] for r in records} == {"us-west1"}
    assert "probe failure on first delivery" in probes.host.process("fail_first").output()


def test_an_existing_push_subscription_gets_the_new_endpoint(emulator: PubSubEmulator, probes: Probes) -> None:
    topic = "control"
    ensure_topic(emulator.host, PROJECT, topic)
    for endpoint_topic in ("stale-topic", topic):  # the second call finds the subscription
        endpoint = probes.host.push_endpoint("record_event", PROJECT, endpoint_topic)
        ensure_push_subscription(emulator.host, PROJECT, "control-push", topic, endpoint)
    try:
        message_id = publish(emulator.host, PROJECT, topic, b'{"rollback": "previous"}')
        [record] = probes.wait_for_records("record_event", message_id, lambda records: len(records) >= 1)
    finally:
        delete_subscription(emulator.host, PROJECT, "control-push")

    assert record["source"] == f"//pubsub.googleapis.com/projects/{PROJECT}/topics/{topic}"


def test_pull_returns_and_acks_published_messages(emulator: PubSubEmulator) -> None:
    ensure_topic(emulator.host, PROJECT, "deploy-results")
    ensure_pull_subscription(emulator.host, PROJECT, "deploy-results-pull", "deploy-results")
    try:
        message_id = publish(emulator.host, PROJECT, "deploy-results", b'{"ok": true}', region="eu")
        [message] = pull(emulator.host, PROJECT, "deploy-results-pull", timeout=DELIVERY_DEADLINE)
        # Acked: nothing is redelivered (an unacked message would return after its deadline).
        again = pull(emulator.host, PROJECT, "deploy-results-pull", timeout=1)
    finally:
        delete_subscription(emulator.host, PROJECT, "deploy-results-pull")

    assert (message.message_id, message.data, message.attributes) == (message_id, b'{"ok": true}', {"region": "eu"})
    assert again == []


def test_waiting_on_a_process_that_exits_fails_fast_with_its_output(tmp_path: Path) -> None:
    crash = [sys.executable, "-c", "print('boom: bad flag'); raise SystemExit(3)"]
    process = ManagedProcess("crasher", crash, log_path=tmp_path / "crasher.log").start()
    started = time.monotonic()
    try:
        with pytest.raises(ProcessFailed, match=r"(?s)exited with 3.*boom: bad flag"):
            process.wait_for_line("never printed", timeout=30)
    finally:
        process.stop()
    assert time.monotonic() - started < 5


def _command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_stop_leaves_no_process_and_no_bound_port(tmp_path: Path) -> None:
    emulator = PubSubEmulator(PROJECT, state_dir=tmp_path / "emulator")
    functions = FunctionsHost(PROBE_SOURCE, state_dir=tmp_path / "functions")
    try:
        host = emulator.start()
        urls = functions.start([FunctionSpec(name, name, env={"RECORD_FILE": str(tmp_path / "r")}) for name in PROBES])
        processes = [emulator.process] + [functions.process(name) for name in PROBES]
        pids = [pid for process in processes if process is not None for pid in process.group_pids()]
        ports = [int(host.rsplit(":", 1)[1])] + [urlsplit(url).port or 0 for url in urls.values()]
        # The helpers are there to be cleaned up: gcloud's java child, gunicorn's workers.
        assert any(_command_line(pid).startswith("java ") for pid in pids)
        assert len(pids) >= 2 + 2 * len(PROBES)
        assert not any(port_is_free(port) for port in ports)
    finally:
        functions.stop()
        emulator.stop()

    assert [pid for pid in pids if pid_alive(pid)] == []
    assert [port for port in ports if not port_is_free(port)] == []
    functions.stop()  # idempotent
    emulator.stop()
