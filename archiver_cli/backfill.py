"""`acr-archiver backfill`: list a registry's runs not yet in the wanted state, then enqueue one archive event each.

The events are a policy sweep's (shared.discovery `archive_message`): shape 2, message id
`policy:{name}:{runId}:{flag}`, application property `policy`, built and sent by the app's own sweep loop
(`run_sweep`) and queue sender (shared.reschedule's ServiceBusScheduler: one SharedSender, batches). So a
backfill repeated, or a backfill and a sweep of the policy it names with `--policy`, give the same ids and
the queue's duplicate detection drops the repeats. `IsArchiveEnabled eq {not flag}` is added to the filter:
a run already in the wanted state is never listed, and a backfill cut short is finished by running it again.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from archiver_cli import runs
from archiver_cli.context import CliError, Context
from archiver_cli.output import Progress, print_json, print_table
from shared.discovery import SweepReport, run_sweep
from shared.errors import ArchiverError
from shared.messaging import QueueMessage
from shared.policies import NAME, ArchivePolicy, registry_allowed

__all__ = ["DEFAULT_NAME", "Backfill", "add_parser", "backfill", "run"]

DEFAULT_NAME = "backfill"
"""The name in the message ids (`policy:backfill:{runId}:{flag}`) unless --policy gives one."""
DRY_RUN_HEADERS = ("MESSAGE ID", "RUN")


@dataclass
class Backfill:
    """What one backfill listed and enqueued, and the error that ended it, if any."""

    report: SweepReport
    messages: list[QueueMessage] = field(default_factory=list)
    """The events of a --dry-run (none are kept when sending)."""
    listing_error: ArchiverError | None = None

    @property
    def error(self) -> ArchiverError | None:
        """The listing's error, else the enqueueing's."""
        return self.listing_error or self.report.error


def add_parser(commands: Any) -> None:
    """Register the command."""
    parser = commands.add_parser(
        "backfill",
        help="enqueue an archive event for every listed run not yet archived",
        description="List the registry's runs (az list-runs' filters, plus IsArchiveEnabled eq false, or true "
        "with --no-archive), then enqueue one archive event per run on the archive queue, with a policy "
        "sweep's deterministic message ids. --dry-run lists and shows the events; nothing is sent.",
    )
    runs.add_filter_arguments(parser)
    parser.add_argument(
        "--no-archive", nargs="?", const="true", default="false", choices=("true", "false"),
        help="true to un-archive the runs (lists the archived ones); default false, i.e. archive (as az's flag)",
    )
    parser.add_argument("--policy", default=DEFAULT_NAME, metavar="NAME",
                        help=f"the name in the message ids policy:NAME:runId:flag (default {DEFAULT_NAME}); "
                        "a policy's name makes this backfill and that policy's sweeps drop each other's repeats")
    parser.add_argument("--queue", help="queue name (default ARCHIVE_QUEUE_NAME)")
    parser.add_argument("--dry-run", action="store_true", help="list and show the events; send nothing")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table", help="how --dry-run shows the events")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Check, list, enqueue (or show), and end with one summary line; exit 1 when the listing or a send failed."""
    if not NAME.fullmatch(args.policy):
        raise CliError("--policy: must be 1-64 letters, digits, - _", 2)
    flag = args.no_archive == "false"
    wanted = f"IsArchiveEnabled eq {'false' if flag else 'true'}"
    query = runs.query_of(args, ctx, runs.list_filter(args.task, args.status, args.image, args.odata, wanted))
    allowed = ctx.settings.allowed_registries
    if not registry_allowed(allowed, query.subscription_id, query.resource_group_name, query.registry_name):
        raise CliError(f"--registry: registry '{query.registry_name}' is not in ALLOWED_REGISTRIES", 2)
    policy = ArchivePolicy(args.policy, query.subscription_id, query.resource_group_name, query.registry_name,
                           filter=query.filter, is_archive_enabled=flag)
    queue = None if args.dry_run else ctx.queue_name(args.queue)
    done = backfill(ctx, policy, query, queue)
    if done.error is not None and not done.report.matched:
        raise done.error  # nothing listed: the error alone says it (ARM's code, or how to sign in)
    if args.dry_run:
        _print_events(args, ctx, done.messages)
    ctx.stderr.write(_summary(done, queue) + "\n")
    if done.error is not None:
        raise done.error
    return 0


def backfill(ctx: Context, policy: ArchivePolicy, query: runs.RunQuery, queue: str | None) -> Backfill:
    """List every page (a count and rate), then hand the runs to the sweep loop (a bar); with no queue, keep the events."""
    report = SweepReport(policy, "http", datetime.now(timezone.utc), query.filter or "")  # an on-demand sweep, as the route's
    done = Backfill(report)
    pages: list[list[dict[str, Any]]] = []
    with ctx.arm_client() as arm, Progress(None, f"listing {query.registry_name}", ctx.stderr, ctx.progress) as listed:
        try:
            for page in arm.list_runs(query.registry_path, query.filter):
                pages.append(page)
                listed.advance(len(page))
        except ArchiverError as error:  # keep what was listed: it is enqueued, and the next backfill lists the rest
            done.listing_error = error
    total = sum(len(page) for page in pages)
    if queue is None:
        run_sweep(report, pages, _keep(done.messages), deadline=math.inf, max_pages=len(pages) + 1)
        return done
    sender = ctx.queue_sender(queue)
    try:
        with Progress(total, f"enqueueing to {queue}", ctx.stderr, ctx.progress) as bar:
            run_sweep(report, pages, _enqueue(sender, bar), deadline=math.inf, max_pages=len(pages) + 1)
    finally:
        sender.close()
    return done


Deliver = Callable[[Sequence[QueueMessage]], int]


def _keep(kept: list[QueueMessage]) -> Deliver:
    """--dry-run: keep a page's events to show them."""

    def deliver(messages: Sequence[QueueMessage]) -> int:
        kept.extend(messages)
        return len(messages)

    return deliver


def _enqueue(sender: Any, bar: Progress) -> Deliver:
    """Send a page's events through the app's queue sender, then move the bar."""

    def deliver(messages: Sequence[QueueMessage]) -> int:
        sender.enqueue(messages)  # raises PublishFailed: the sweep loop ends there, counting what went before
        bar.advance(len(messages))
        return len(messages)

    return deliver


def _print_events(args: argparse.Namespace, ctx: Context, messages: list[QueueMessage]) -> None:
    """The events a --dry-run would send: JSON lines of id and event, or a table of id and run."""
    events = [(m.message_id, json.loads(m.body)) for m in messages]
    if args.output == "json":
        for message_id, event in events:
            print_json({"messageId": message_id, "event": event}, ctx.stdout, indent=None)
    else:
        rows = [(message_id, event["runResourceId"].rsplit("/", 1)[-1]) for message_id, event in events]
        print_table(DRY_RUN_HEADERS, rows, ctx.stdout, max_width=128)


def _summary(done: Backfill, queue: str | None) -> str:
    report = done.report
    skipped = report.matched - report.enqueued if queue is not None else report.matched - len(done.messages)
    listed = f"listed {report.matched} run(s) of {report.policy.registry_name} in {report.pages} page(s)"
    if queue is None:
        text = f"{listed}; would enqueue {len(done.messages)} archive event(s) (--dry-run: nothing sent)"
    else:
        text = f"{listed}; enqueued {report.enqueued} archive event(s) to {queue}"
    if skipped:
        text += f"; {skipped} not sent"
    if done.error is not None:
        text += f"; stopped: {done.error.code}"
    return text
