"""Cloudflare's verdict on a pool is read from its pool health report: healthy when most
probing data centres say so, unhealthy otherwise, and unknown (never healthy) when the
report says nothing readable."""

from __future__ import annotations

from typing import Any

import pytest

from shared.edge_health import EdgeHealth, assess_edge_health

POOL_ID = "17b5962d775c646f3f9725cbc7a53df4"


def report(*verdicts: Any) -> dict[str, Any]:
    """A pool health `result` as Cloudflare documents it, one data centre per verdict."""
    pops = {
        f"Data centre {i}": {
            "healthy": ok,
            "origins": [
                {"2001:DB8::5": {"failure_reason": "No failures", "healthy": ok, "response_code": 200, "rtt": "12ms"}}
            ],
        }
        for i, ok in enumerate(verdicts)
    }
    return {"pool_id": POOL_ID, "pop_health": pops}


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ((True,), EdgeHealth.HEALTHY),
        ((True, True, True), EdgeHealth.HEALTHY),
        ((True, True, False), EdgeHealth.HEALTHY),  # the majority of data centres decides
        ((True, False, False), EdgeHealth.UNHEALTHY),
        ((True, False), EdgeHealth.UNHEALTHY),  # a tie is not a majority
        ((False,), EdgeHealth.UNHEALTHY),
        ((True, "yes", None), EdgeHealth.HEALTHY),  # entries without a boolean verdict do not count
    ],
)
def test_the_majority_of_probing_data_centres_decides(verdicts: tuple[Any, ...], expected: EdgeHealth) -> None:
    assert assess_edge_health(report(*verdicts)) is expected


@pytest.mark.parametrize(
    "result",
    [
        None,  # Cloudflare gave no report (a pool without a monitor)
        {"pool_id": POOL_ID, "pop_health": {}},  # nobody probes it
        {"pool_id": POOL_ID},
        {"pool_id": POOL_ID, "pop_health": ["healthy"]},
        {"pool_id": POOL_ID, "pop_health": {"Amsterdam, NL": "healthy"}},
        report("true", None),
    ],
)
def test_a_report_without_a_readable_verdict_is_unknown_not_healthy(result: Any) -> None:
    verdict = assess_edge_health(result)
    assert verdict is EdgeHealth.UNKNOWN
    assert not verdict.known


def test_verdicts_have_stable_names() -> None:
    assert [v.value for v in EdgeHealth] == ["healthy", "unhealthy", "unknown"]
