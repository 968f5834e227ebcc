"""Structured logs: one JSON object per line, the right severity, bound context on every
line, and no registered secret ever printed."""

from __future__ import annotations

import json
import logging

import pytest

from shared import logs
from shared.logs import JsonFormatter, get_logger, register_secret

SECRET = "cf-token-Zq8v1xY3wK"


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def entries(self) -> list[dict]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def lines(monkeypatch, request):
    monkeypatch.setattr(logs, "_secrets", set())  # each test registers its own secrets
    handler = Lines()
    logger = logging.getLogger(f"geodeploy.test.{request.node.name}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    monkeypatch.setattr(logger, "propagate", False)
    yield handler
    logger.removeHandler(handler)


def log(request_name: str, **fields):
    return get_logger(f"test.{request_name}", **fields)


@pytest.fixture
def logger(request):
    return log(request.node.name)


# --- secrets --------------------------------------------------------------------------------------------


def test_a_registered_secret_never_appears_in_a_line(lines, logger):
    register_secret(SECRET)
    logger.info("token_read", token=SECRET, note=f"Bearer {SECRET}")
    assert SECRET not in lines.lines[0]
    assert lines.entries()[0]["note"] == "Bearer [redacted]"


def test_a_secret_inside_nested_fields_is_redacted(lines, logger):
    register_secret(SECRET)
    logger.info("request_sent", headers={"Authorization": [f"Bearer {SECRET}"]}, attempts=[{"token": SECRET}])
    assert SECRET not in lines.lines[0]
    assert lines.entries()[0]["headers"] == {"Authorization": ["Bearer [redacted]"]}


def test_a_secret_bound_to_the_logger_is_redacted(lines, logger):
    register_secret(SECRET)
    logger.bind(token=SECRET).warning("bound")
    assert SECRET not in lines.lines[0]


def test_a_secret_in_exception_text_is_redacted(lines, logger):
    register_secret(SECRET)
    try:
        raise RuntimeError(f"401 for token {SECRET}")
    except RuntimeError:
        logger.error("cloudflare_failed", exc_info=True)
    entry = lines.entries()[0]
    assert SECRET not in lines.lines[0]
    assert "RuntimeError: 401 for token [redacted]" in entry["exception"]


def test_a_secret_in_the_event_name_or_message_is_redacted(lines, logger):
    register_secret(SECRET)
    logger.info(f"oops_{SECRET}")
    assert SECRET not in lines.lines[0]


def test_a_secret_in_an_object_logged_by_its_str_is_redacted(lines, logger):
    class Credentials:
        def __str__(self) -> str:
            return f"Credentials({SECRET})"

    register_secret(SECRET)
    logger.info("creds", value=Credentials())
    assert SECRET not in lines.lines[0]


def test_every_registered_secret_is_redacted(lines, logger):
    register_secret(SECRET)
    register_secret("second-secret-value")
    logger.info("two", a=SECRET, b="second-secret-value")
    assert SECRET not in lines.lines[0]
    assert "second-secret-value" not in lines.lines[0]


def test_short_values_are_not_treated_as_secrets(lines, logger):
    register_secret("app")  # would redact ordinary words like "app" everywhere
    logger.info("deployed", app="shop")
    assert lines.entries()[0]["app"] == "shop"
    assert "[redacted]" not in lines.lines[0]


@pytest.mark.parametrize("secret", ['pa"ss-word-1', "pa\\ss-word-1", "pässword-123"])
def test_a_secret_with_characters_json_escapes_is_still_redacted(lines, logger, secret):
    register_secret(secret)
    logger.info("login", password=secret)
    assert secret not in json.loads(lines.lines[0])["password"]


# --- shape and severity ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "severity"),
    [("debug", "DEBUG"), ("info", "INFO"), ("warning", "WARNING"), ("error", "ERROR")],
)
def test_severity_follows_the_level(lines, logger, method, severity):
    getattr(logger, method)("something_happened")
    assert lines.entries()[0]["severity"] == severity


def test_critical_and_unknown_levels(lines, request):
    raw = logging.getLogger(f"geodeploy.test.{request.node.name}")
    raw.critical("down")
    raw.log(25, "custom")
    assert [e["severity"] for e in lines.entries()] == ["CRITICAL", "DEFAULT"]


def test_a_line_is_one_json_object_with_message_time_logger_and_event(lines, logger):
    logger.info("manifests_applied", objects=["Deployment/shop/shop"])
    [line] = lines.lines
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "manifests_applied"
    assert entry["event"] == "manifests_applied"
    assert entry["time"].endswith("Z")
    assert entry["logger"].startswith("geodeploy.")
    assert entry["objects"] == ["Deployment/shop/shop"]


def test_values_json_cannot_encode_are_written_as_text(lines, logger):
    from datetime import UTC, datetime

    logger.info("at", when=datetime(2026, 3, 1, tzinfo=UTC), regions={"eu"})
    entry = lines.entries()[0]
    assert entry["when"] == "2026-03-01 00:00:00+00:00"
    assert entry["regions"] == "{'eu'}"


# --- bound context ---------------------------------------------------------------------------------------


def test_bound_fields_are_carried_on_every_line(lines, request):
    logger = log(request.node.name, function="deploy_region").bind(app="shop", region="europe-west1")
    logger.info("first")
    logger.bind(release="rel-1").warning("second")
    first, second = lines.entries()
    assert (first["function"], first["app"], first["region"]) == ("deploy_region", "shop", "europe-west1")
    assert "release" not in first
    assert (second["app"], second["release"]) == ("shop", "rel-1")


def test_binding_returns_a_new_logger_and_leaves_the_original_alone(lines, logger):
    bound = logger.bind(app="shop")
    logger.info("plain")
    bound.info("bound")
    plain, with_app = lines.entries()
    assert "app" not in plain
    assert with_app["app"] == "shop"


def test_none_values_are_not_bound(lines, logger):
    logger.bind(app="shop", digest=None).info("x")
    assert "digest" not in lines.entries()[0]


def test_a_line_field_overrides_a_bound_field(lines, logger):
    logger.bind(image="old").info("x", image="new")
    assert lines.entries()[0]["image"] == "new"


def test_a_field_cannot_change_the_lines_severity(lines, logger):
    logger.error("cluster_unreachable", severity="DEBUG", message="detail text")
    entry = lines.entries()[0]
    assert (entry["severity"], entry["message"]) == ("ERROR", "cluster_unreachable")
