"""Throughput at ARM's write limit: `python -m bench.at_limit` (make bench-limit).

Several processes (simulated Function instances) each run the queue function on a thread pool, as the
Python worker does with maxConcurrentCalls, and drain their share of a backlog against ONE throttling ARM
emulator process (token bucket per subscription + principal; every instance holds a token of the same
identity, so they share one bucket). Service Bus is modelled as the soak does: a raised transient error
is redelivered with delivery_count + 1 until MAX_DELIVERY_COUNT, then dead-lettered; a re-scheduled copy
comes back after its delay. Side by side, in one invocation:

- `app`: the app, pacing on (ARM_WRITE_RESERVE default);
- `app_unpaced`: the app with ARM_WRITE_RESERVE=0 (pacing off: today's behaviour, retries after 429s);
- `sdk`: `ContainerRegistryTasksMgmtClient.runs.update` with azure-core's default retry policy.

Ideal time = (N − bucket) / refill: the bucket's burst is free, the rest comes at the refill rate.
Results go to a file outside git (--output); `--update-docs` writes bench/at_limit.json instead.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import multiprocessing
import os
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LimitConfig", "dump", "main", "plot", "run_variant"]

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("app", "app_unpaced", "sdk")
SUBSCRIPTION = "4385cf00-2d3a-425a-832f-f4285b1c9dce"
GROUP, REGISTRY = "myResourceGroup", "myRegistry"
RESULT_TIMEOUT = 900.0


@dataclass(frozen=True)
class LimitConfig:
    """One benchmark layout: the backlog, the instances and their threads, ARM's scaled write bucket."""

    events: int = 1200
    instances: int = 4
    threads: int = 16
    bucket: int = 100
    refill: float = 50.0
    max_delivery_count: int = 10

    @property
    def ideal_seconds(self) -> float:
        """Burst for free, the rest at the refill rate."""
        return max(self.events - self.bucket, 0) / self.refill


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    event: int = field(compare=False)
    delivery_count: int = field(compare=False, default=1)
    properties: dict[str, Any] = field(compare=False, default_factory=dict)


class _Queue:
    """One instance's share of the queue: deliveries by due time, redelivery and re-scheduling."""

    def __init__(self, events: Sequence[int], started: float) -> None:
        self._seq = itertools.count()
        self._heap = [_Delivery(started, next(self._seq), n) for n in events]
        heapq.heapify(self._heap)
        self._open = len(self._heap)
        self._cond = threading.Condition()

    def take(self) -> _Delivery | None:
        """The next due delivery, waiting for it; None when every event has ended."""
        with self._cond:
            while True:
                if self._open == 0:
                    return None
                if self._heap and self._heap[0].due <= time.monotonic():
                    return heapq.heappop(self._heap)
                timeout = self._heap[0].due - time.monotonic() if self._heap else None
                self._cond.wait(timeout)

    def put(self, delivery: _Delivery, delay: float = 0.0) -> None:
        """Put a delivery back, due after `delay` seconds."""
        with self._cond:
            delivery.due, delivery.seq = time.monotonic() + delay, next(self._seq)
            heapq.heappush(self._heap, delivery)
            self._cond.notify()

    def ended(self) -> None:
        """One event ended (completed or dead-lettered)."""
        with self._cond:
            self._open -= 1
            self._cond.notify_all()


class _Readings:
    """The remaining-writes count of every write answer this instance saw, with its time (for the plot)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.samples: list[tuple[float, int]] = []

    def record(self, headers: Any) -> None:
        value = headers.get("x-ms-ratelimit-remaining-subscription-writes")
        if isinstance(value, str) and value.isdigit():
            self.samples.append((round(time.monotonic() - self.started, 3), int(value)))  # list.append is atomic


class _Publisher:
    """Counts outcomes by kind and drops them."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()

    def publish(self, outcome: Any) -> None:
        self.outcomes[outcome.body["outcome"]] += 1

    def close(self) -> None:
        pass


class _Scheduler:
    """Stands in for the Service Bus scheduler: the copy comes back on this instance's queue after the delay."""

    def __init__(self) -> None:
        self.queue: _Queue | None = None
        self.scheduled = 0
        self._lock = threading.Lock()
        self._current = threading.local()

    def schedule(self, message: Any, delay_seconds: float) -> None:
        from shared.messaging import ORIGINAL_MESSAGE_ID, RESCHEDULE_COUNT

        delivery: _Delivery = self._current.delivery
        lineage = message.lineage
        properties = {RESCHEDULE_COUNT: lineage.reschedule_count + 1, ORIGINAL_MESSAGE_ID: lineage.original_message_id}
        with self._lock:
            self.scheduled += 1
        assert self.queue is not None
        self.queue.put(_Delivery(0, 0, delivery.event, 1, properties), delay_seconds)

    def close(self) -> None:
        pass


def _body(n: int) -> bytes:
    return json.dumps({"subscriptionId": SUBSCRIPTION, "resourceGroupName": GROUP, "registryName": REGISTRY,
                       "runId": f"limit-{n:05d}", "isArchiveEnabled": True}).encode()


def _app_handler(env: dict[str, str], scheduler: _Scheduler, readings: _Readings) -> Callable[[_Delivery], None]:
    """The queue function of an app built as the host builds it, with a dropping publisher and the scheduler."""
    from azure.functions.servicebus import ServiceBusMessage as InboundMessage

    from shared.app import build_app
    from shared.transport import new_session

    def session() -> Any:
        made = new_session()
        def hook(response: Any, **_: Any) -> None:
            if response.request.method == "PATCH":
                readings.record(response.headers)
        made.hooks["response"].append(hook)
        return made

    publisher = _Publisher()
    app = build_app(env, publisher_factory=lambda _: publisher, scheduler_factory=lambda _: scheduler, session_factory=session)
    function = {f.get_function_name(): f.get_user_function() for f in app.get_functions()}["archive_queue"]

    def handle(delivery: _Delivery) -> None:
        scheduler._current.delivery = delivery
        function(InboundMessage(
            body=_body(delivery.event), message_id=f"limit-message-{delivery.event}", correlation_id=None,
            delivery_count=delivery.delivery_count, application_properties=dict(delivery.properties), user_properties={},
        ))
    return handle


def _sdk_handler(arm_url: str, readings: _Readings) -> Callable[[_Delivery], None]:
    """`runs.update` as a user would call it, azure-core's default RetryPolicy honouring Retry-After."""
    from azure.identity import ManagedIdentityCredential
    from azure.mgmt.containerregistrytasks import ContainerRegistryTasksMgmtClient

    client = ContainerRegistryTasksMgmtClient(
        ManagedIdentityCredential(), SUBSCRIPTION, base_url=arm_url, api_version="2019-04-01"
    )

    def handle(delivery: _Delivery) -> None:
        client.runs.update(GROUP, REGISTRY, f"limit-{delivery.event:05d}", {"isArchiveEnabled": True}, enforce_https=False,
                           raw_response_hook=lambda pipeline: readings.record(pipeline.http_response.headers))
    return handle


def _instance(variant: str, env: dict[str, str], events: list[int], config: LimitConfig, start: Any, results: Any) -> None:
    """One simulated instance: `config.threads` workers draining this instance's queue."""
    import logging

    logging.disable(logging.CRITICAL)  # a storm of retry warnings would cost the CPU the measurement needs
    os.environ.update(env)
    scheduler, readings = _Scheduler(), _Readings()
    handle = _sdk_handler(env["ARM_ENDPOINT"], readings) if variant == "sdk" else _app_handler(env, scheduler, readings)
    handle(_Delivery(0, 0, 1_000_000 + os.getpid() % 1000))  # warm: token, connection (outside the measurement)
    counts: Counter[str] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    start.wait()
    started = readings.started = time.monotonic()
    readings.samples.clear()
    queue = _Queue(events, started)
    scheduler.queue = queue

    def work() -> None:
        while (delivery := queue.take()) is not None:
            try:
                handle(delivery)
            except Exception:  # noqa: BLE001 - the host abandons the message whatever was raised
                if delivery.delivery_count < config.max_delivery_count:
                    with lock:
                        counts["redelivered"] += 1
                    delivery.delivery_count += 1
                    queue.put(delivery)
                    continue
                with lock:
                    counts["dead_lettered"] += 1
            with lock:
                latencies.append(time.monotonic() - started)
            queue.ended()

    workers = [threading.Thread(target=work) for _ in range(config.threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put({"counts": dict(counts), "rescheduled": scheduler.scheduled, "latencies": latencies,
                 "seconds": time.monotonic() - started, "remaining": readings.samples})


def run_variant(variant: str, config: LimitConfig, arm: Any, base_env: dict[str, str]) -> dict[str, Any]:
    """Drain the backlog with `config.instances` processes of `variant`; the figures of that run."""
    env = {**base_env, "MAX_DELIVERY_COUNT": str(config.max_delivery_count)}
    if variant == "app_unpaced":
        env["ARM_WRITE_RESERVE"] = "0"
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    shares = [list(range(i, config.events, config.instances)) for i in range(config.instances)]
    processes = [context.Process(target=_instance, args=(variant, env, share, config, start, results)) for share in shares]
    for process in processes:
        process.start()
    time.sleep(0.2)
    while start.is_set() is False and any(p.is_alive() for p in processes) and _warming(arm, config):
        time.sleep(0.1)
    arm.set_throttling(True, writes=(config.bucket, config.refill), reads=(100_000, 100_000))  # full bucket at the start
    before = arm.stats()
    began = time.monotonic()
    start.set()
    reports = [results.get(timeout=RESULT_TIMEOUT) for _ in processes]  # an instance that died ends the run (queue.Empty)
    wall = time.monotonic() - began
    for process in processes:
        process.join()
    after = arm.stats()
    return _figures(variant, config, reports, wall, before, after)


def _warming(arm: Any, config: LimitConfig) -> bool:
    """True until every instance sent its warm-up write."""
    return int(arm.stats().get("patches", 0)) < config.instances


def _figures(variant: str, config: LimitConfig, reports: list[dict[str, Any]], wall: float,
             before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    latencies: list[float] = []
    for report in reports:
        counts.update(report["counts"])
        latencies.extend(report["latencies"])
    seconds = max(report["seconds"] for report in reports)
    throttled = int(after.get("throttled", 0)) - int(before.get("throttled", 0))
    writes = int(after.get("patches", 0)) - int(before.get("patches", 0))  # counted once past the bucket
    latencies.sort()
    series = {
        "outcomes_per_second": [sum(1 for t in latencies if second <= t < second + 1) for second in range(math.ceil(seconds))],
        "remaining": sorted(sample for report in reports for sample in report["remaining"])[::_thin(reports)],
    }
    return {
        "variant": variant,
        "seconds": round(seconds, 2),
        "writes": writes,
        "writes_per_second": round(writes / seconds, 1),
        "refill": config.refill,
        "share_of_ideal": round(config.ideal_seconds / seconds, 3),
        "429s": throttled,
        "429s_per_1000_writes": round(1000 * throttled / max(writes, 1), 1),
        "rescheduled": sum(report["rescheduled"] for report in reports),
        "redelivered": counts["redelivered"],
        "dead_lettered": counts["dead_lettered"],
        "p50_seconds": round(statistics.median(latencies), 2) if latencies else None,
        "p99_seconds": round(latencies[int(0.99 * (len(latencies) - 1))], 2) if latencies else None,
        "wall_seconds": round(wall, 2),
        "series": series,
    }


def _thin(reports: list[dict[str, Any]]) -> int:
    """Every how many remaining-count samples to keep: about 1,000 a variant."""
    return max(1, sum(len(report["remaining"]) for report in reports) // 1000)


def dump(config: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The results as JSON: the figures indented, each variant's series on one line of its own."""
    figures = [{name: value for name, value in row.items() if name != "series"} for row in rows]
    head = json.dumps({"config": config, "results": figures}, indent=2)[: -len("\n}")]
    series = ",\n".join(f"    {json.dumps(row['variant'])}: {json.dumps(row['series'], separators=(',', ':'))}" for row in rows)
    return f'{head},\n  "series": {{\n{series}\n  }}\n}}\n'


def plot(rows: list[dict[str, Any]], config: LimitConfig, path: Path) -> None:
    """Outcomes a second and the remaining-writes header over time, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate, level) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for row in rows:
        series = row["series"]
        rate.plot(range(len(series["outcomes_per_second"])), series["outcomes_per_second"], label=row["variant"])
        times, counts = zip(*series["remaining"]) if series["remaining"] else ((), ())
        level.plot(times, counts, ".", markersize=2, label=row["variant"])
    rate.axhline(config.refill, color="grey", linestyle="--", linewidth=1, label="refill")
    rate.set_ylabel("events ended a second")
    level.axhline(20, color="grey", linestyle=":", linewidth=1, label="ARM_WRITE_RESERVE")
    level.set_ylabel("remaining writes (header)")
    level.set_xlabel("seconds since the backlog was enqueued")
    rate.legend(loc="upper right")
    level.legend(loc="upper right")
    rate.set_title(f"{config.events} events, {config.instances} instances × {config.threads} threads, "
                   f"bucket {config.bucket}, refill {config.refill:g}/s")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the variants side by side, print a table, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.at_limit", description=__doc__.splitlines()[0])
    defaults = LimitConfig()
    parser.add_argument("--events", type=int, default=defaults.events)
    parser.add_argument("--instances", type=int, default=defaults.instances)
    parser.add_argument("--threads", type=int, default=defaults.threads, help="maxConcurrentCalls of each instance")
    parser.add_argument("--bucket", type=int, default=defaults.bucket)
    parser.add_argument("--refill", type=float, default=defaults.refill)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "out" / "at_limit.json", help="the JSON (git-ignored default)")
    parser.add_argument("--update-docs", action="store_true",
                        help="write bench/at_limit.json and docs/at_limit.png (in git) instead")
    parser.add_argument("--plot", type=Path, default=None, help="also draw the plot here")
    args = parser.parse_args(argv)
    config = LimitConfig(args.events, args.instances, args.threads, args.bucket, args.refill)
    sys.path.insert(0, str(ROOT))
    from bench.clients import app_settings
    from bench.servers import endpoints

    rows: list[dict[str, Any]] = []
    with endpoints() as ep:
        base_env = app_settings(ep.arm_url, ep.identity.environ())
        for variant in args.variants.split(","):
            ep.arm.set_throttling(False)
            ep.arm.reset()
            rows.append(run_variant(variant, config, ep.arm, base_env))
            print(_row(rows[-1]), flush=True)
    output = ROOT / "bench" / "at_limit.json" if args.update_docs else args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(dump({**config.__dict__, "ideal_seconds": config.ideal_seconds}, rows))
    drawing = ROOT / "docs" / "at_limit.png" if args.update_docs else args.plot
    if drawing is not None:
        plot(rows, config, drawing)
    print(f"ideal {config.ideal_seconds:.1f} s for {config.events} events (bucket {config.bucket}, refill {config.refill:g}/s); "
          f"written to {output}")
    return 0


def _row(row: dict[str, Any]) -> str:
    return (f"{row['variant']:<12} {row['seconds']:>6.1f} s  {row['writes_per_second']:>6.1f} writes/s  "
            f"ideal {row['share_of_ideal']:>5.1%}  429s/1000 {row['429s_per_1000_writes']:>7.1f}  "
            f"rescheduled {row['rescheduled']:>4}  redelivered {row['redelivered']:>4}  dead {row['dead_lettered']:>3}  "
            f"p50 {row['p50_seconds']} s  p99 {row['p99_seconds']} s")


if __name__ == "__main__":
    raise SystemExit(main())
