"""One event handled by a fresh process of a function, as a new Cloud Run instance would:
imports functions-framework and main.py, then calls the entry point with the CloudEvent
Pub/Sub push delivers. Prints one JSON line: seconds spent importing functions-framework
(`ff`) and main (`main`), handling the event (`event`, with the imports it makes lazily),
and the peak resident memory (`rss_mib`).

    python -m sandbox.fresh_instance '{"entry": ..., "id": ..., "source": ..., "time": ..., "data": <base64>}'

The environment (config, endpoints, the function's own credentials) is the caller's to
set: SandboxDriver.fresh_instance does.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def main() -> int:
    began = time.perf_counter()
    import functions_framework  # noqa: F401  (what every instance loads first)

    after_ff = time.perf_counter()
    from cloudevents.http import CloudEvent

    import main as functions

    after_main = time.perf_counter()
    spec = json.loads(sys.argv[1])
    attributes = {
        "id": spec["id"],
        "source": spec["source"],
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "time": spec["time"],
    }
    event = CloudEvent(attributes, {"message": {"data": spec["data"], "messageId": spec["id"]}})
    getattr(functions, spec["entry"])(event)
    done = time.perf_counter()
    figures = {
        "ff": after_ff - began,
        "main": after_main - after_ff,
        "event": done - after_main,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
