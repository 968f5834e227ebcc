"""A real function call, served by the sandbox's functions-framework process (with
LOG_EXECUTION_ID set, as infra/ sets it), writes every line of the call with its
execution id, and with the trace of the request that carried one, as Cloud Logging
groups them: a push with Cloud Run's trace headers straight to the function's push
endpoint, and a message delivered by the Pub/Sub emulator (no trace, but one execution
id per delivery). No line is printed twice by the framework's own logging."""

from __future__ import annotations

import base64
import json
import urllib.request
from datetime import UTC, datetime

import pytest

from sandbox.driver import wait_until

pytestmark = pytest.mark.sandbox

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SPAN_ID = "b7ad6b7169203331"
LABELS = "logging.googleapis.com/labels"
TRACE = "logging.googleapis.com/trace"
# Names no app of the config: rejected and acked, whatever the sandbox holds.
REJECTED = {"version": 1, "action": "rollback", "app": "no-such-app", "target": "previous"}


def _lines_of(sandbox, path, function: str, event_id: str) -> list[dict]:
    return [e for e in sandbox.log_events(path, function) if e.get("event_id") == event_id]


def _handled(sandbox, path, function: str, event_id: str) -> list[dict]:
    lines = _lines_of(sandbox, path, function, event_id)
    return lines if any(e.get("event") == "event_handled" for e in lines) else []


def test_a_traced_push_writes_every_line_with_its_trace_and_execution_id(sandbox, shop):
    path, config = shop
    function = f"{config.name}-on-control"
    host = sandbox.sandbox.functions[path.resolve()]
    envelope = {
        "message": {
            "data": base64.b64encode(json.dumps(REJECTED).encode()).decode(),
            "messageId": "trace-test-1",
            "publishTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        },
        "subscription": f"projects/{config.project}/subscriptions/{function}--{config.topics.control}",
    }
    request = urllib.request.Request(
        host.push_endpoint(function, config.project, config.topics.control),
        data=json.dumps(envelope).encode(),
        headers={
            "Content-Type": "application/json",
            "traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01",
            "X-Cloud-Trace-Context": f"{TRACE_ID}/{int(SPAN_ID, 16)};o=1",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200

    lines = wait_until(lambda: _handled(sandbox, path, function, "trace-test-1"), 30, "the call's lines")
    assert [e["event"] for e in lines] == ["event_rejected", "event_handled"]
    ids = {e[LABELS]["execution_id"] for e in lines}
    assert len(ids) == 1 and ids != {None}, "one execution id, the one functions-framework gave the request"
    for e in lines:
        assert e[TRACE] == f"projects/{config.project}/traces/{TRACE_ID}"
        assert (e["logging.googleapis.com/spanId"], e["logging.googleapis.com/trace_sampled"]) == (SPAN_ID, True)


def test_each_delivery_of_a_published_message_has_one_execution_id_on_every_line(sandbox, shop):
    path, config = shop
    function = f"{config.name}-on-control"
    first = sandbox.publish(config, config.topics.control, REJECTED)
    second = sandbox.publish(config, config.topics.control, REJECTED)

    calls = [wait_until(lambda e=e: _handled(sandbox, path, function, e), 30, f"event {e}") for e in (first, second)]
    ids = []
    for lines in calls:
        assert [e["event"] for e in lines] == ["event_rejected", "event_handled"]
        (execution_id,) = {e[LABELS]["execution_id"] for e in lines}
        ids.append(execution_id)
        assert not [e for e in lines if TRACE in e], "the emulator's push carries no trace"
    assert ids[0] != ids[1]
    # functions-framework's root handler (LOG_EXECUTION_ID) must not print our warnings again.
    rejected = [e for e in sandbox.log_events(path, function) if e.get("message") == "event_rejected"]
    assert all("event" in e for e in rejected), "a line printed a second time, without its fields"
