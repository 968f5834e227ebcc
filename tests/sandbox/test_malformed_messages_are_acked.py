"""A message no delivery can ever handle is rejected with its reason and acknowledged, by
every function that receives it: it is not redelivered for five attempts and then
dead-lettered as if the world might heal."""

from __future__ import annotations

import time

import pytest

from sandbox.driver import wait_until

pytestmark = pytest.mark.sandbox

# {"a": [[[[...]]]]}, 100 000 deep: valid JSON that Python's decoder cannot nest into.
DEEPLY_NESTED = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def test_a_deeply_nested_message_is_rejected_once_by_every_function_it_reaches(sandbox, shop):
    path, config = shop
    receivers = {
        config.topics.images: [f"{config.name}-on-image-pushed"],
        config.topics.control: [f"{config.name}-on-control"],
        config.topics.drift: [f"{config.name}-check-drift", f"{config.name}-reconcile-traffic"],
    }
    published = {topic: sandbox.publish(config, topic, DEEPLY_NESTED) for topic in receivers}

    def outcomes(function: str, event_id: str) -> list[dict]:
        return [
            e
            for e in sandbox.log_events(path, function)
            if e.get("event_id") == event_id and e.get("event") in ("event_rejected", "unexpected_error")
        ]

    def handled(function: str, event_id: str) -> list[str]:
        return [
            e["outcome"]
            for e in sandbox.log_events(path, function)
            if e.get("event_id") == event_id and e.get("event") == "event_handled"
        ]

    for topic, functions in receivers.items():
        for function in functions:
            [rejected] = wait_until(lambda f=function, t=topic: outcomes(f, published[t]), 30, f"{function}'s answer")
            assert (rejected["event"], rejected.get("reason")) == ("event_rejected", "too_deeply_nested")
            assert rejected["severity"] == "WARNING"
    # Absence can only be shown by waiting: a redelivery would come back within about a
    # second (the sandbox's minimum backoff), so 3 s would show it.
    time.sleep(3)
    for topic, functions in receivers.items():
        for function in functions:
            assert len(outcomes(function, published[topic])) == 1, f"{function} saw event {published[topic]} again"
            assert handled(function, published[topic]) == ["acked"]
