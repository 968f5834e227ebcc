"""How often a Cloud Scheduler cron runs, for the alert on a drift check that stopped
running (infra/monitoring.tf). Pure.

Only the schedules whose day-of-month, month and day-of-week are `*` (they run every
day at the same times) are worked out; their minute and hour fields may be `*`, `*/n`,
`a`, `a-b`, `a-b/n` and comma lists of those. infra/locals.tf computes the same with
Terraform's functions; tests/infra compares the two. Any other schedule needs the
interval stated (config `alerts.drift_check_overdue_minutes`).
"""

from __future__ import annotations

__all__ = ["MINUTES_PER_DAY", "longest_gap_minutes"]

MINUTES_PER_DAY = 24 * 60


def _expand(field: str, size: int) -> list[int]:
    values: set[int] = set()
    for item in field.split(","):
        span, _, step = item.partition("/")
        if span == "*":
            first, last = 0, size - 1
        else:
            low, _, high = span.partition("-")
            first = int(low)
            last = int(high) if high else first
        if not 0 <= first <= last < size or (step and int(step) < 1):
            raise ValueError(f"{item!r} is outside 0-{size - 1}")
        values.update(range(first, last + 1, int(step) if step else 1))
    return sorted(values)


def longest_gap_minutes(schedule: str) -> int | None:
    """The longest time between two runs of a daily-repeating cron, in minutes; None when
    the schedule is not one this works out (see the module's docstring)."""
    fields = schedule.strip().split(" ")
    if len(fields) != 5 or fields[2:] != ["*", "*", "*"]:
        return None
    try:
        minutes, hours = _expand(fields[0], 60), _expand(fields[1], 24)
    except ValueError:
        return None
    times = [h * 60 + m for h in hours for m in minutes]
    return max(later - earlier for earlier, later in zip(times, [*times[1:], times[0] + MINUTES_PER_DAY], strict=True))
