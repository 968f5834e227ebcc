"""Every region at once: the central functions (traffic, drift, waves, the control
function's `previous`) ask each region's cluster in parallel, under one deadline (the
config's `region_deadline_seconds`). A region that never answers (packets dropped, not
refused) then costs one deadline in total, not one per region, and is reported as not
answering, while the others are read.

A region past the deadline is not waited for: its call goes on in a daemon thread until
the client gives up (its socket timeouts, at most one connect and one read timeout per
request: the HTTP layer never retries on its own). So the deadline only guards reads;
work that writes runs after them, without one (see check_drift).
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Sequence

from shared.config import Region

__all__ = ["NO_ANSWER", "each_region"]

NO_ANSWER = "no_answer"  # why a region past its deadline counts as unreachable


class _Call[T]:
    """One region's work on a daemon thread (an abandoned call never holds up the
    process's exit), keeping its result or its exception."""

    def __init__(self, work: Callable[[Region], T], region: Region) -> None:
        self.result: T | None = None
        self.error: BaseException | None = None
        # In the caller's context: the region's log lines carry the call's execution id and trace.
        context = contextvars.copy_context()
        self.thread = threading.Thread(
            target=context.run, args=(self._run, work, region), name=f"region-{region.name}", daemon=True
        )
        self.thread.start()

    def _run(self, work: Callable[[Region], T], region: Region) -> None:
        try:
            self.result = work(region)
        except BaseException as e:  # handed to the caller, who raises it
            self.error = e


def each_region[T](
    regions: Sequence[Region],
    work: Callable[[Region], T],
    *,
    deadline: float | None = None,
    timed_out: Callable[[Region, float], T] | None = None,
) -> list[T]:
    """`work(region)` for each region, in parallel; in the regions' order. A region whose
    work has not returned within `deadline` seconds of the start gets `timed_out(region,
    deadline)` (no deadline: every region is waited for). An exception `work` raises is
    raised here: `work` handles its region's own faults and returns them as results."""
    if deadline is not None and timed_out is None:
        raise ValueError("a deadline needs timed_out: what a region past it stands for")
    calls = [_Call(work, region) for region in regions]
    end = None if deadline is None else time.monotonic() + deadline
    results: list[T] = []
    for call, region in zip(calls, regions, strict=True):
        call.thread.join(None if end is None else max(0.0, end - time.monotonic()))
        if call.thread.is_alive():
            assert deadline is not None and timed_out is not None
            results.append(timed_out(region, deadline))
        elif call.error is not None:
            raise call.error
        else:
            results.append(call.result)  # type: ignore[arg-type]  # set when the work returned
    return results
