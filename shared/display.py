"""How an operator reads digests and times, the same in `geodeploy status` and on the
status page. Pure; light to import (the CLI loads it before any command runs)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["NONE", "short_image", "when"]

NONE = "-"


def short_image(image: str | None) -> str:
    """The 12-hex short digest of a pinned image; anything else as it is."""
    if not image:
        return NONE
    from shared.contracts import ImageRef

    try:
        return ImageRef.parse(image).short
    except ValueError:
        return image


def when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment else NONE
