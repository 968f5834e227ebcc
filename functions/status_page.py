"""HTTP (IAM-protected: Cloud Run lets only the config's status_page.viewers invoke it):
the status page, one HTML document of what `geodeploy status` shows, for every app."""

from __future__ import annotations

from typing import Any

import functions_framework

from functions import _wiring

REFRESH_SECONDS = 15
# No script, no frame, nothing from elsewhere: the page is its own HTML and inline style.
_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


@functions_framework.http
def status_page(request: Any) -> tuple[str, int, dict[str, str]]:
    if request.method not in ("GET", "HEAD"):
        return "only GET\n", 405, {"Allow": "GET, HEAD", "Content-Type": "text/plain"}
    if request.path != "/":
        return "not found\n", 404, {"Content-Type": "text/plain"}
    from datetime import UTC, datetime

    from shared.flows.status import read_page_status
    from shared.logs import configure_logging, redact
    from shared.settings import load_instance_config
    from shared.status_page import render_page

    configure_logging()
    status = read_page_status(
        load_instance_config(),
        connect=_wiring.connect,
        cloudflare=_wiring.cloudflare_client,
        now=datetime.now(UTC),
        refresh_seconds=REFRESH_SECONDS,
    )
    # A last line of defence, as the CLI's output has: no path is meant to print the token.
    return redact(render_page(status)), 200, _HEADERS
