"""`acr-archiver policies`: check ARCHIVE_POLICIES, show each policy's effective `$filter`, run one sweep here.

The settings are read as the app reads them (the environment, or `--settings local.settings.json`), so a
malformed ARCHIVE_POLICIES is refused before anything runs, with the app's own message naming the policy
and the field. `sweep NAME` runs the app's sweep (`Archiver.sweep`: the same filter, pages, ids, batches
and ArchivePolicySwept summary as the timer and the route) with the operator's credential; it reports
itself as `source: "http"`, the on-demand kind the contract names.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from archiver_cli.context import CliError, Context
from archiver_cli.output import print_json, print_table
from shared.discovery import policy_filter
from shared.outcome import Outcome
from shared.policies import ArchivePolicy
from shared.service import Archiver
from shared.settings import unmet_requirements

__all__ = ["LIST_HEADERS", "SWEEP_HEADERS", "add_parser", "effective_filter", "run"]

LIST_HEADERS = ("NAME", "REGISTRY", "SETS", "$FILTER")
SCHEDULE_SETTING = "ARCHIVE_POLICY_SCHEDULE"
"""The timer's schedule (named here, not imported from shared.functions: that would load azure.functions)."""
SWEEP_HEADERS = ("POLICY", "OUTCOME", "MATCHED", "ENQUEUED", "PAGES", "ERROR")


def add_parser(commands: Any) -> None:
    """Register the command."""
    parser = commands.add_parser(
        "policies",
        help="check ARCHIVE_POLICIES, show their $filter, sweep one now",
        description="list: validate ARCHIVE_POLICIES (from the environment or --settings) and show each policy's "
        "effective $filter as a sweep would send it now. sweep NAME: run that policy's sweep here, with the "
        "app's own code: enqueue its runs on the archive queue (or, with OUTCOME_FILE, archive them here) and "
        "publish its ArchivePolicySwept summary.",
    )
    parser.add_argument("action", nargs="?", choices=("list", "sweep"), default="list")
    parser.add_argument("name", nargs="?", help="sweep: the policy's name")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """List the policies, or sweep one; a failed sweep exits 1 after printing its summary."""
    if args.action == "list":
        if args.name:
            raise CliError("list takes no policy name (did you mean: policies sweep NAME?)", 2)
        return _list(args, ctx)
    if not args.name:
        raise CliError("sweep: which policy? give its name: policies sweep NAME", 2)
    policy = ctx.settings.archive_policy(args.name)
    if policy is None:
        known = ", ".join(p.name for p in ctx.settings.archive_policies) or "none: ARCHIVE_POLICIES is unset"
        raise CliError(f"no policy named {args.name!r} in ARCHIVE_POLICIES (policies: {known})", 2)
    with _archiver(ctx) as archiver:
        (summary,) = archiver.sweep([policy], "http")
    _print_summary(args, ctx, summary)
    return 0 if summary.body["outcome"] == "succeeded" else 1


def effective_filter(policy: ArchivePolicy, lookback_days: float, now: datetime | None = None) -> str:
    """The `$filter` a sweep of the policy would send at `now` (contract §8)."""
    return policy_filter(policy, (now or datetime.now(timezone.utc)) - timedelta(days=lookback_days))


def _list(args: argparse.Namespace, ctx: Context) -> int:
    settings = ctx.settings
    if not settings.archive_policies:
        ctx.stderr.write("no archive policies: ARCHIVE_POLICIES is unset\n")
        return 0
    now = datetime.now(timezone.utc)
    shown = [
        {
            "name": policy.name,
            "registry": f"{policy.subscription_id}/{policy.resource_group_name}/{policy.registry_name}",
            "isArchiveEnabled": policy.is_archive_enabled,
            "filter": effective_filter(policy, settings.archive_policy_lookback_days, now),
        }
        for policy in settings.archive_policies
    ]
    if args.output == "json":
        print_json(shown, ctx.stdout)
    else:
        rows = [[p["name"], p["registry"], f"isArchiveEnabled {str(p['isArchiveEnabled']).lower()}", p["filter"]] for p in shown]
        print_table(LIST_HEADERS, rows, ctx.stdout, max_width=1200)
    ctx.stderr.write(f"{len(shown)} valid archive polic{'y' if len(shown) == 1 else 'ies'}; "
                     f"lookback {settings.archive_policy_lookback_days:g} day(s)\n")
    for requirement in unmet_requirements(settings):
        if SCHEDULE_SETTING in requirement.names:  # the app's own rule; the timer is not registered without it
            ctx.stderr.write(f"warning: {SCHEDULE_SETTING} is {requirement.why}: without it the app never sweeps on a timer\n")
    return 0


@contextmanager
def _archiver(ctx: Context) -> Iterator[Archiver]:
    """The app's service with the operator's ARM credential, the app's publisher, and the archive queue's sender."""
    with ExitStack() as stack:
        arm = stack.enter_context(ctx.arm_client())
        publisher = ctx.publisher()
        stack.callback(publisher.close)
        scheduler = None
        if not ctx.settings.outcome_file:
            scheduler = ctx.queue_sender(ctx.queue_name(None))
            stack.callback(scheduler.close)
        yield Archiver(ctx.settings, arm, publisher, scheduler)


def _print_summary(args: argparse.Namespace, ctx: Context, summary: Outcome) -> None:
    body = summary.body
    if args.output == "json":
        print_json(body, ctx.stdout)
    else:
        error = body.get("error") or {}
        row = [body["policy"], body["outcome"], body["matched"], body["enqueued"], body["pages"], error.get("code")]
        print_table(SWEEP_HEADERS, [row], ctx.stdout)
    ctx.stderr.write(f"$filter: {body['filter']}\n")
