"""Concurrency and reuse, in a process of their own: `python -m bench.load` prints one JSON object.

The queue function runs on a thread pool, as the Python worker runs sync functions, against an ARM
emulator that waits `latency` seconds before every answer. Its own process keeps the peak RSS that of
the app (no SDK, no matplotlib) and its first invocation truly cold.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.clients import AppClient, app_settings
from bench.logs import host_logging
from bench.servers import endpoints

__all__ = ["drive", "run_load"]


def drive(pool: ThreadPoolExecutor, app: AppClient, events: int, first: int = 0) -> float:
    """Deliver `events` messages through the pool; returns the seconds until the last one finished."""
    started = time.perf_counter()
    futures = [pool.submit(app, n) for n in range(first, first + events)]
    for future in futures:
        future.result()  # an event that failed ends the benchmark: its numbers would mean nothing
    return time.perf_counter() - started


def run_load(*, levels: Sequence[int], latency: float, per_worker: int, reuse_events: int, reuse_workers: int) -> dict[str, Any]:
    """Reuse counters from a cold Runtime, then throughput at each concurrency level."""
    host_logging()
    with endpoints(latency) as ep:
        app = AppClient(app_settings(ep.arm_url, ep.identity.environ()))
        ep.arm.reset()
        fetches_before = ep.identity.calls
        with ThreadPoolExecutor(reuse_workers, thread_name_prefix="bench-reuse") as pool:
            started = time.perf_counter()
            pool.submit(app, 0).result()
            first_event_ms = (time.perf_counter() - started) * 1000
            drive(pool, app, reuse_events - 1, first=1)
        reuse = {
            "events": reuse_events,
            "workers": reuse_workers,
            "token_fetches": ep.identity.calls - fetches_before,
            "arm_connections": ep.arm.stats()["connections"],
            "sb_senders": app.senders_created,
            "first_event_ms": first_event_ms,
        }
        concurrency = []
        for workers in levels:
            with ThreadPoolExecutor(workers, thread_name_prefix=f"bench-{workers}") as pool:
                drive(pool, app, 2 * workers)  # every thread started, every connection open
                events = workers * per_worker
                seconds = drive(pool, app, events)
            concurrency.append({"workers": workers, "events": events, "seconds": seconds,
                                "events_per_s": events / seconds, "ideal_events_per_s": workers / latency})
        published = app.bus.subjects
        app.close()
    return {
        "latency_s": latency,
        "reuse": reuse,
        "concurrency": concurrency,
        "outcomes": dict(published),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run, print the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,4,16,32")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--per-worker", type=int, default=50, help="events per worker at each level")
    parser.add_argument("--reuse-events", type=int, default=2000)
    parser.add_argument("--reuse-workers", type=int, default=16)
    args = parser.parse_args(argv)
    levels = [int(level) for level in args.levels.split(",")]
    result = run_load(levels=levels, latency=args.latency, per_worker=args.per_worker,
                      reuse_events=args.reuse_events, reuse_workers=args.reuse_workers)
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
