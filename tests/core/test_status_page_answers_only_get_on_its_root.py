"""The status page's entry point, served by functions-framework as Cloud Run serves it:
an HTTP function that answers GET on its root and refuses anything else before it reads
a single region."""

from __future__ import annotations

from pathlib import Path

import functions_framework

REPO = Path(__file__).resolve().parents[2]


def _client():
    app = functions_framework.create_app(target="status_page", source=str(REPO / "main.py"), signature_type="http")
    return app.test_client()


def test_other_methods_are_refused_with_the_allowed_ones_named():
    answer = _client().post("/", data=b"{}")
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "GET, HEAD"


def test_other_paths_are_not_found():
    assert _client().get("/admin").status_code == 404
    assert _client().get("/favicon.ico").status_code == 404
