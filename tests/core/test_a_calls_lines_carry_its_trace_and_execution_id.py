"""Every line a function call writes carries what Cloud Logging groups the call's entries
by: the execution id (label `execution_id`) and the request's trace
(`projects/<project>/traces/<id>`), span and sampling flag. The call is a real
functions-framework request (its test client) to main.py's on_control, with a control
message it rejects (no cluster or Pub/Sub is needed for that); the lines are what the
process prints. Lines from threads the call starts carry them too; the redaction still
applies."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import functions_framework
import pytest

from shared import logs
from shared.config import load_config
from shared.flows.regions import each_region
from shared.logs import CallContext, JsonFormatter, call_context, call_context_of, get_logger, register_secret
from shared.settings import load_instance_config, load_settings

REPO = Path(__file__).resolve().parents[2]
CONFIG_PATH = REPO / "config" / "example.yaml"
PROJECT = load_config(CONFIG_PATH).project
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACE = "logging.googleapis.com/trace"
SPAN = "logging.googleapis.com/spanId"
SAMPLED = "logging.googleapis.com/trace_sampled"
LABELS = "logging.googleapis.com/labels"


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("GEODEPLOY_CONFIG", str(CONFIG_PATH))
    monkeypatch.delenv("GEODEPLOY_REGION", raising=False)
    monkeypatch.delenv("LOG_EXECUTION_ID", raising=False)
    # configure_logging runs in the call, as in a fresh instance; put the logger back after.
    geodeploy = logging.getLogger("geodeploy")
    monkeypatch.setattr(logs, "_configured", False)
    monkeypatch.setattr(geodeploy, "handlers", list(geodeploy.handlers))
    monkeypatch.setattr(geodeploy, "propagate", geodeploy.propagate)
    load_settings.cache_clear()
    load_instance_config.cache_clear()
    app = functions_framework.create_app("on_control", str(REPO / "main.py"), "cloudevent")
    yield app.test_client()
    load_settings.cache_clear()
    load_instance_config.cache_clear()


def push(client: Any, headers: dict[str, str], message_id: str = "7001") -> None:
    """A Pub/Sub push of a control message that names no app of the config."""
    body = json.dumps({"version": 1, "action": "rollback", "app": "no-such-app", "target": "previous"}).encode()
    envelope = {
        "message": {
            "data": base64.b64encode(body).decode(),
            "messageId": message_id,
            "publishTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        },
        "subscription": f"projects/{PROJECT}/subscriptions/geodeploy-on-control--geodeploy-control",
    }
    answer = client.post(f"/projects/{PROJECT}/topics/geodeploy-control", json=envelope, headers=headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)


def call_lines(capfd: pytest.CaptureFixture[str], message_id: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("event_id") == message_id]
    assert [line["event"] for line in mine] == ["event_rejected", "event_handled"]
    return mine


def test_a_calls_lines_carry_its_w3c_trace_and_execution_id(client: Any, capfd: pytest.CaptureFixture[str]) -> None:
    push(client, {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01", "Function-Execution-Id": "exec-abc123"})
    for line in call_lines(capfd, "7001"):
        assert line[TRACE] == f"projects/{PROJECT}/traces/{TRACE_ID}"
        assert (line[SPAN], line[SAMPLED]) == (SPAN_ID, True)
        assert line[LABELS] == {"execution_id": "exec-abc123"}


def test_cloud_runs_trace_header_names_the_trace_and_its_decimal_span(
    client: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    push(client, {"X-Cloud-Trace-Context": f"{TRACE_ID}/123;o=0"})
    for line in call_lines(capfd, "7001"):
        assert line[TRACE] == f"projects/{PROJECT}/traces/{TRACE_ID}"
        assert (line[SPAN], line[SAMPLED]) == (f"{123:016x}", False)


def test_without_a_trace_each_call_still_has_one_execution_id_of_its_own(
    client: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    push(client, {}, message_id="7001")
    first = call_lines(capfd, "7001")
    push(client, {}, message_id="7002")
    second = call_lines(capfd, "7002")
    # functions-framework gives every request an execution id when it came without one.
    ids = {line[LABELS]["execution_id"] for line in first}
    assert len(ids) == 1 and ids != {line[LABELS]["execution_id"] for line in second}
    assert not [line for line in first + second if TRACE in line]


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[Lines]:
    monkeypatch.setattr(logs, "_secrets", set())
    handler = Lines()
    logger = logging.getLogger("geodeploy.test.calls")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    monkeypatch.setattr(logger, "propagate", False)
    yield handler
    logger.removeHandler(handler)


def test_lines_from_the_threads_a_call_starts_carry_it_and_secrets_stay_redacted(lines: Lines) -> None:
    config = load_config(CONFIG_PATH)
    log = get_logger("test.calls")
    register_secret("cf-token-Zq8v1xY3wK")
    context = call_context_of(
        {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01", "Function-Execution-Id": "exec-1"},
        event_source=f"//pubsub.googleapis.com/projects/{PROJECT}/topics/t",
    )
    with call_context(context):
        each_region(config.regions, lambda region: log.info("region_read", read_region=region.name))
        log.warning("token_used", note="Bearer cf-token-Zq8v1xY3wK")
    log.info("after_the_call")

    *during, after = lines.lines
    assert len(during) == len(config.regions) + 1
    for line in during:
        assert (line[TRACE], line[LABELS]) == (f"projects/{PROJECT}/traces/{TRACE_ID}", {"execution_id": "exec-1"})
    assert during[-1]["note"] == "Bearer [redacted]"
    assert TRACE not in after and LABELS not in after


def test_a_field_cannot_overwrite_the_calls_trace(lines: Lines) -> None:
    with call_context(CallContext(execution_id="exec-1", trace=f"projects/{PROJECT}/traces/{TRACE_ID}")):
        get_logger("test.calls").info("spoofed", **{TRACE: "projects/x/traces/0", LABELS: {"execution_id": "x"}})
    (line,) = lines.lines
    assert (line[TRACE], line[LABELS]) == (f"projects/{PROJECT}/traces/{TRACE_ID}", {"execution_id": "exec-1"})


@pytest.mark.parametrize(
    "header",
    [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # an all-zero trace id is invalid
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "not a trace",
        "",
    ],
)
def test_an_invalid_trace_header_names_no_trace(header: str) -> None:
    context = call_context_of({"traceparent": header}, event_source=f"//pubsub.googleapis.com/projects/{PROJECT}/t")
    assert context.trace is None


def test_the_cloudevents_own_traceparent_is_used_when_the_request_has_none() -> None:
    source = f"//pubsub.googleapis.com/projects/{PROJECT}/topics/t"
    context = call_context_of({}, event_source=source, event_traceparent=f"00-{TRACE_ID}-{SPAN_ID}-00")
    assert context == CallContext(None, f"projects/{PROJECT}/traces/{TRACE_ID}", SPAN_ID, False)
