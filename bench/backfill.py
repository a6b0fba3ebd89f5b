"""Backfill (issue 11 §5): list and enqueue N seeded runs, stage by stage, beside the anchor of one process per run.

The ARM emulator runs in its own process (`python -m bench.backfill --serve N PAGE`), seeded with N runs none
of which is archived, so `IsArchiveEnabled eq false` lists all N in pages of PAGE. Stages, each timed on its own:

- **list**: `ArmClient.list_runs` following every nextLink, JSON decoded. The process CPU time of this side
  is the client's share; the rest of the wall time is waiting for the emulator (its filter and JSON encoding).
- **build**: the sweep's `archive_message` per run (shape-2 body, policy id).
- **enqueue**: the app's queue sender (`ServiceBusScheduler.enqueue`: a `ServiceBusMessage` per event, then
  `send_batched` over one SharedSender), one call per page as the sweep loop makes it (the ServiceBusMessage
  construction is also timed alone), into a sender that discards: its `create_message_batch` is a real
  `ServiceBusMessageBatch` (which AMQP-encodes each message as it is added) and `send_messages` AMQP-encodes
  the batch payload as the real sender does before writing frames; no network.
- **enqueue over AMQP** (a reference, one pass): the same, through the real client to the loopback Service Bus
  emulator (`python -m emulators.servicebus`, its own process): the wire and a broker, but a Python one.
- **end to end**: `acr-archiver backfill -r REG --no-progress` in this process (`archiver_cli.main`), all the
  above plus the CLI, with the same discarding Service Bus; profiled separately with cProfile for the
  share of time per package (profiling slows it, so only the shares are reported).

Anchor: `az acr task update-run` once per run is one process per run. What is timed is that process's
start-up as its SDK-based equivalent: `python -c` importing azure.identity and azure.mgmt.containerregistrytasks
and building `ContainerRegistryTasksMgmtClient(DefaultAzureCredential(), …)`: no token, no request. The
real az is slower still (its own start-up loads far more than the SDK), so the anchor is a lower bound.
"""

from __future__ import annotations

import cProfile
import io
import json
import math
import os
import pstats
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import Any

from azure.core.credentials import AccessToken
from azure.servicebus import ServiceBusMessageBatch
from azure.servicebus._pyamqp._encode import encode_payload

from bench.servers import ROOT, arm_process

__all__ = ["ANCHOR_STATEMENT", "MARKERS", "DiscardingQueue", "measure", "render_section", "serve"]

SUBSCRIPTION = "4385cf00-2d3a-425a-832f-f4285b1c9dce"
GROUP = "myResourceGroup"
REGISTRY = "backfillRegistry"
QUEUE = "acr-archive-events"
ANCHOR_STATEMENT = (
    "from azure.identity import DefaultAzureCredential; "
    "from azure.mgmt.containerregistrytasks import ContainerRegistryTasksMgmtClient; "
    f"ContainerRegistryTasksMgmtClient(DefaultAzureCredential(), '{SUBSCRIPTION}')"
)
"""One `az acr task update-run`'s start-up, SDK-based: imports and the client, no token, no request."""
MARKERS = ("<!-- bench:backfill:begin -->", "<!-- bench:backfill:end -->")
"""Where docs/performance.md holds this section (bench.report.update_doc replaces what is between them)."""


# -- the emulator process ----------------------------------------------------------------------------


def serve(count: int, page_size: int) -> int:
    """`--serve N PAGE`: an ARM emulator with N unarchived runs; prints its URL, serves until SIGTERM."""
    from emulators import ArmEmulator

    emulator = ArmEmulator(page_size=page_size)
    emulator.seed_registry(SUBSCRIPTION, GROUP, REGISTRY, count, seed=11, archived_share=0.0)
    return emulator.serve_until_signalled()


def _seeded_arm(count: int, page_size: int) -> AbstractContextManager[str]:
    return arm_process(module=("bench.backfill", "--serve", str(count), str(page_size)))


# -- the discarding queue ----------------------------------------------------------------------------


class DiscardingQueue:
    """Stands in for ServiceBusClient on the archive queue: real batches, AMQP-encoded, then dropped."""

    def __init__(self) -> None:
        self.messages = 0
        self.batches = 0
        self.encoded_bytes = 0

    def client(self) -> DiscardingQueue:
        """A client (this object: it only hands out senders)."""
        return self

    def get_queue_sender(self, queue_name: str, **_: Any) -> DiscardingQueue:
        return self

    def create_message_batch(self, max_size_in_bytes: int | None = None) -> ServiceBusMessageBatch:
        """A real batch of a Standard namespace's 256 KB: add_message AMQP-encodes each message to size it."""
        return ServiceBusMessageBatch(max_size_in_bytes=max_size_in_bytes or 256 * 1024)

    def send_messages(self, batch: Any, **_: Any) -> None:
        """Encode the batch payload as the sender does before writing its frames; send nothing."""
        if not isinstance(batch, ServiceBusMessageBatch):
            raise TypeError(f"the backfill sends batches, not {type(batch)!r}")
        self.encoded_bytes += len(encode_payload(bytearray(), batch._message))
        self.messages += len(batch)
        self.batches += 1

    def close(self) -> None:
        """Nothing is held."""

    def __enter__(self) -> DiscardingQueue:
        return self

    def __exit__(self, *_: Any) -> None:
        pass


class _FixedTokens:
    """A token provider for the bench (the emulator is started without a token check)."""

    def token(self) -> str:
        return "bench-token"

    def refresh(self, rejected: str) -> str:
        return "bench-token"


class _FixedCredential:
    """A TokenCredential for the CLI's run: one long-lived token."""

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        return AccessToken("bench-token", int(time.time()) + 3600)


# -- the stages --------------------------------------------------------------------------------------


def _settings(arm_url: str) -> dict[str, str]:
    return {"ARM_ENDPOINT": arm_url, "ARCHIVE_QUEUE_NAME": QUEUE, "DEFAULT_SUBSCRIPTION_ID": SUBSCRIPTION,
            "DEFAULT_RESOURCE_GROUP": GROUP}


def _timed(action: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall s, this process's CPU s, result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = action()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def _stages(arm_url: str, *, amqp: bool = False) -> dict[str, Any]:
    """One pass of list, build and enqueue, each timed; `amqp` also enqueues over AMQP to the Service Bus emulator."""
    from shared.arm import ArmClient, new_session
    from shared.discovery import archive_message
    from shared.policies import ArchivePolicy
    from shared.reschedule import ServiceBusScheduler, queue_message
    from shared.settings import Settings

    settings = Settings.from_env(_settings(arm_url))
    policy = ArchivePolicy("backfill", SUBSCRIPTION, GROUP, REGISTRY, filter="IsArchiveEnabled eq false")
    session = new_session(pool_size=1)
    try:
        arm = ArmClient(session, _FixedTokens(), settings)
        list_wall, list_cpu, pages = _timed(lambda: list(arm.list_runs(policy.registry_id, policy.filter)))
    finally:
        session.close()
    runs = sum(len(page) for page in pages)
    correlation = f"sweep:backfill:{datetime.now(timezone.utc).isoformat()}"
    build_wall, _, events = _timed(lambda: [[archive_message(policy, run, correlation) for run in page] for page in pages])
    message_wall, _, _ = _timed(lambda: [queue_message(event) for page in events for event in page])  # a part of enqueue
    queue = DiscardingQueue()
    sender = ServiceBusScheduler(queue.client, QUEUE)
    enqueue_wall, _, _ = _timed(lambda: [sender.enqueue(page) for page in events])
    amqp_wall = _amqp_enqueue(events) if amqp else None
    if queue.messages != runs:
        raise RuntimeError(f"enqueued {queue.messages} of {runs} runs")
    return {
        "runs": runs, "pages": len(pages),
        "list_s": list_wall, "list_client_cpu_s": list_cpu,
        "build_events_s": build_wall, "build_messages_s": message_wall,
        "enqueue_s": enqueue_wall, "batches": queue.batches, "encoded_bytes": queue.encoded_bytes,
        "enqueue_amqp_s": amqp_wall,
    }


def _amqp_enqueue(events: list[list[Any]]) -> float:
    """The same enqueue through the real client over AMQP to `python -m emulators.servicebus` in its own process."""
    from azure.servicebus import ServiceBusClient

    from shared.reschedule import ServiceBusScheduler

    command = [sys.executable, "-m", "emulators.servicebus", "--port", "0"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert process.stdout is not None
        connection = process.stdout.readline().strip()
        if not connection.startswith("Endpoint=sb://"):
            raise RuntimeError("the Service Bus emulator did not start")
        sender = ServiceBusScheduler(lambda: ServiceBusClient.from_connection_string(connection), QUEUE)
        try:
            sender.enqueue(events[0][:1])  # connect, authorize and attach first (its repeat below is a dropped duplicate)
            wall, _, _ = _timed(lambda: [sender.enqueue(page) for page in events])
        finally:
            sender.close()
        return wall
    finally:
        process.terminate()
        process.wait(timeout=30)


def _end_to_end(arm_url: str, profile: cProfile.Profile | None = None) -> tuple[float, int]:
    """`acr-archiver backfill` in this process; (wall s, messages enqueued)."""
    from archiver_cli import main

    queue = DiscardingQueue()
    out, err = io.StringIO(), io.StringIO()
    argv = ["--no-progress", "backfill", "-r", REGISTRY]
    started = time.perf_counter()
    if profile is not None:
        profile.enable()
    status = main(argv, env=_settings(arm_url), open_servicebus=queue.client, credential_factory=lambda _: _FixedCredential(),
                  stdout=out, stderr=err)
    if profile is not None:
        profile.disable()
    wall = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"acr-archiver backfill failed: {err.getvalue()[-2000:]}")
    return wall, queue.messages


_FAMILIES = (
    ("waiting for ARM (socket reads and writes)", ("recv_into", "sendall", "_socket.")),
    ("azure.servicebus (batches, AMQP encoding)", ("azure/servicebus/",)),
    ("requests, urllib3, http.client", ("requests/", "urllib3/", "http/", "email/")),
    ("json", ("json/", "jsontext")),
    ("the app (shared/)", ("/shared/",)),
    ("the CLI (archiver_cli/)", ("/archiver_cli/",)),
    ("builtins, typing, enum (called by the above)", ("~", "typing.py", "enum.py")),
)
"""Package families by where a function lives (or, for the socket, its name); first match wins."""


def _shares(profile: cProfile.Profile) -> dict[str, float]:
    """Share of the profiled time (own time of each function) by package family."""
    stats = pstats.Stats(profile)
    totals: dict[str, float] = defaultdict(float)
    for (filename, _, function), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{filename} {function}"
        family = next((name for name, marks in _FAMILIES if any(mark in where for mark in marks)), "other")
        totals[family] += own
    whole = sum(totals.values()) or 1.0
    return {name: round(value / whole, 3) for name, value in sorted(totals.items(), key=lambda item: -item[1])}


def _process_seconds(statement: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - started


def measure(runs: int = 10_000, page_size: int = 100, repeats: int = 3, anchor_runs: int = 5) -> dict[str, Any]:
    """Every stage `repeats` times (medians), the end-to-end command, its profile, and the anchor's process start-ups."""
    with _seeded_arm(runs, page_size) as url:
        _stages(url)  # warm-up: imports, the emulator's first answers
        passes = [_stages(url) for _ in range(repeats)]
        amqp_s = _stages(url, amqp=True)["enqueue_amqp_s"]  # once: a reference, its broker is not Azure's
        end_to_end = [_end_to_end(url) for _ in range(repeats)]
        profile = cProfile.Profile()
        _end_to_end(url, profile)
    median = {key: statistics.median(p[key] for p in passes) for key in passes[0] if key != "enqueue_amqp_s"}
    listed = int(median["runs"])
    e2e_s = statistics.median(wall for wall, _ in end_to_end)
    if any(count != listed for _, count in end_to_end):
        raise RuntimeError(f"the CLI enqueued {[count for _, count in end_to_end]}, not {listed}")
    anchor = statistics.median(_process_seconds(ANCHOR_STATEMENT) for _ in range(anchor_runs))
    interpreter = statistics.median(_process_seconds("pass") for _ in range(anchor_runs))
    stages = {
        "list": median["list_s"], "build_events": median["build_events_s"], "build_messages": median["build_messages_s"],
        "enqueue": median["enqueue_s"], "enqueue_amqp": amqp_s,
    }
    return {
        "runs": listed, "pages": int(median["pages"]), "page_size": page_size, "repeats": repeats,
        "stage_s": {name: round(seconds, 4) for name, seconds in stages.items()},
        "stage_runs_per_s": {name: round(listed / seconds, 1) for name, seconds in stages.items() if seconds > 0},
        "list_client_cpu_share": round(median["list_client_cpu_s"] / median["list_s"], 3),
        "batches": int(median["batches"]), "encoded_kb": round(median["encoded_bytes"] / 1024, 1),
        "end_to_end_s": round(e2e_s, 3), "end_to_end_runs_per_s": round(listed / e2e_s, 1),
        "profile_shares": _shares(profile),
        "anchor": {
            "statement": ANCHOR_STATEMENT, "process_s": round(anchor, 3), "interpreter_s": round(interpreter, 3),
            "runs_per_s": round(1 / anchor, 2), "projected_s": round(listed * anchor, 1),
            "speedup": round(listed * anchor / e2e_s, 1), "process_runs": anchor_runs,
        },
    }


def render_section(result: dict[str, Any]) -> str:
    """The Markdown of the backfill section (between its markers in docs/performance.md)."""
    runs, stage_s, rate = result["runs"], result["stage_s"], result["stage_runs_per_s"]
    anchor = result["anchor"]
    labels = {
        "list": f"list: Runs - List, {result['pages']} pages of {result['page_size']}, JSON decoded",
        "build_events": "build: the sweep's archive event per run (`archive_message`: body, policy id)",
        "enqueue": f"enqueue: `ServiceBusScheduler.enqueue` per page: ServiceBusMessage, batch, AMQP encoding "
        f"({result['batches']} batches, {result['encoded_kb']:.0f} KB)",
        "build_messages": "of which: a ServiceBusMessage per event (timed alone)",
        "enqueue_amqp": "reference: the same enqueue over AMQP to the Service Bus emulator (its own process; a Python "
        "broker, not Azure's; one pass)",
    }
    lines = [
        f"{runs:,} seeded runs, none archived, listed with `IsArchiveEnabled eq false`; median of {result['repeats']} passes; "
        "the ARM emulator in its own process, the queue a sender that AMQP-encodes and discards.",
        "",
        "| stage | seconds | runs/s |",
        "|---|---:|---:|",
    ]
    for name, label in labels.items():
        lines.append(f"| {label} | {stage_s[name]:.3f} | {rate.get(name, math.inf):,.0f} |")
    lines += [
        f"| **`acr-archiver backfill` end to end** (in process) | **{result['end_to_end_s']:.2f}** "
        f"| **{result['end_to_end_runs_per_s']:,.0f}** |",
        "",
        f"Listing: {result['list_client_cpu_share']:.0%} of its wall time is this process's CPU (requests, JSON decoding); "
        "the rest is waiting for the emulator to filter and encode each page.",
        "",
        "| where the end-to-end time goes (cProfile, own time) | share |",
        "|---|---:|",
    ]
    lines += [f"| {family} | {share:.1%} |" for family, share in result["profile_shares"].items()]
    lines += [
        "",
        "| anchor: one `az acr task update-run` per run | value |",
        "|---|---:|",
        f"| one process start-up, SDK-based (`python -c`: import azure.identity and azure.mgmt.containerregistrytasks, "
        f"build the client; no token, no request), median of {anchor['process_runs']} | {anchor['process_s']:.2f} s |",
        f"| of which the bare interpreter (`python -c pass`) | {anchor['interpreter_s']:.2f} s |",
        f"| runs/s at one process per run (a lower bound on az's cost: no token, no PATCH) | {anchor['runs_per_s']:.2f} |",
        f"| {runs:,} runs that way | {anchor['projected_s']:,.0f} s |",
        f"| backfill's end to end, as a multiple of that | {anchor['speedup']:,.0f}× faster |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.backfill [N]`: measure and print the section; `--serve N PAGE` is the emulator process."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--serve"]:
        return serve(int(args[1]), int(args[2]))
    result = measure(int(args[0]) if args else 10_000)
    print(json.dumps(result, indent=2))
    print(render_section(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
