"""`acr-archiver runs list`: Runs - List of one registry, filtered and shown as `az acr task list-runs` does.

az's filter mapping (azure-cli `acr/task.py`, `_add_run_filter`): `--name` becomes `TaskName eq '…'`,
`--run-status` `Status eq '…'`, `--image` `contains(OutputImageManifests, '…')`, joined with `and` in that
order. Here the task is `--task`, the status `--status`; `--image` is passed as given (az first resolves a
tag to its digest through the registry's data plane; ARM lists both `repo:tag` and `repo@digest` forms).
Unlike az, a quote inside a value is doubled, as OData string literals require, so a value can never
end its literal and add clauses of its own. `--filter` adds raw OData, parenthesized when combined.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from archiver_cli.context import MAX_COUNT, CliError, Context, positive_int
from archiver_cli.output import print_json, print_table
from shared.discovery import odata_string
from shared.setting_parsers import GUID, REGISTRY, RESOURCE_GROUP

__all__ = [
    "DEFAULT_TOP", "MAX_TOP", "RUN_HEADERS", "RunQuery",
    "add_filter_arguments", "add_parser", "list_filter", "query_of", "run", "run_row",
]

DEFAULT_TOP = 15
"""Runs listed without --top or --all: az acr task list-runs' default."""
MAX_TOP = MAX_COUNT
"""`$top` is an int32 in the Runs - List swagger."""
RUN_HEADERS = ("RUN ID", "TASK", "PLATFORM", "STATUS", "TRIGGER", "STARTED", "DURATION")
"""az acr task list-runs -o table's columns."""


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Which runs of which registry: the registry's coordinates and the `$filter` to send."""

    subscription_id: str
    resource_group_name: str
    registry_name: str
    filter: str | None

    @property
    def registry_path(self) -> str:
        """The registry's ARM resource path, as Runs - List takes it."""
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group_name}"
            f"/providers/Microsoft.ContainerRegistry/registries/{self.registry_name}"
        )


def add_parser(commands: Any) -> None:
    """Register the command."""
    parser = commands.add_parser(
        "runs",
        help="list a registry's runs, as az acr task list-runs does",
        description="Runs - List with az acr task list-runs' filters (--task, --status, --image), raw OData "
        "(--filter), the first --top runs (default 15) or --all of them, page by page.",
    )
    parser.add_argument("action", choices=("list",), help="list: list the runs")
    add_filter_arguments(parser)
    count = parser.add_mutually_exclusive_group()
    count.add_argument("--top", type=positive_int, default=DEFAULT_TOP,
                       help=f"at most this many runs (default {DEFAULT_TOP}, as az)")
    count.add_argument("--all", action="store_true", help="every run: follow nextLink to the last page")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    parser.set_defaults(handler=run)


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """The registry and az's filters, shared by `runs list` and `backfill`."""
    parser.add_argument("-r", "--registry", help="registry name (default DEFAULT_REGISTRY_NAME)")
    parser.add_argument("-g", "--resource-group", help="resource group (default DEFAULT_RESOURCE_GROUP)")
    parser.add_argument("--subscription", help="subscription id (default DEFAULT_SUBSCRIPTION_ID)")
    parser.add_argument("--task", help="only runs of this task: TaskName eq '…' (az's --name)")
    parser.add_argument("--status", help="only runs of this status, e.g. Succeeded: Status eq '…' (az's --run-status)")
    parser.add_argument("--image", help="only runs that pushed repo:tag or repo@digest: contains(OutputImageManifests, '…')")
    parser.add_argument("--filter", dest="odata", metavar="ODATA", help="OData $filter over the run's fields, added with 'and'")


def run(args: argparse.Namespace, ctx: Context) -> int:
    """List, then print a table or a JSON array of the ARM Runs."""
    query = query_of(args, ctx, list_filter(args.task, args.status, args.image, args.odata))
    top = None if args.all else args.top
    runs = list(_runs(ctx, query, top))
    if args.output == "json":
        print_json(runs, ctx.stdout)
    else:
        print_table(RUN_HEADERS, [run_row(item) for item in runs], ctx.stdout)
    return 0


def list_filter(task: str | None, status: str | None, image: str | None, odata: str | None, *more: str) -> str | None:
    """The `$filter` of az's options, in az's order, then `--filter` (parenthesized when combined), then `more` clauses."""
    clauses = [f"TaskName eq {odata_string(task)}" if task else None, f"Status eq {odata_string(status)}" if status else None]
    clauses.append(f"contains(OutputImageManifests, {odata_string(image)})" if image else None)
    present = [clause for clause in clauses if clause]
    if odata and odata.strip():
        present.append(f"({odata.strip()})" if present or more else odata.strip())
    present.extend(more)
    return " and ".join(present) or None


def query_of(args: argparse.Namespace, ctx: Context, filter: str | None) -> RunQuery:
    """The registry of -r/-g/--subscription (else DEFAULT_*), each part checked before ARM is called."""
    settings = ctx.settings
    subscription = args.subscription or settings.default_subscription_id
    group = args.resource_group or settings.default_resource_group
    registry = args.registry or settings.default_registry_name
    for value, flag, setting, rule, why in (
        (subscription, "--subscription", "DEFAULT_SUBSCRIPTION_ID", GUID, "must be a GUID"),
        (group, "--resource-group", "DEFAULT_RESOURCE_GROUP", RESOURCE_GROUP, "must be 1-90 letters, digits, _ - . ( )"),
        (registry, "--registry", "DEFAULT_REGISTRY_NAME", REGISTRY, "must be 5-50 letters or digits"),
    ):
        if not value:
            raise CliError(f"{flag}: required (or set {setting})", 2)
        if not rule.fullmatch(value) or not value.isascii() or value.endswith("."):
            raise CliError(f"{flag}: {why}", 2)
    return RunQuery(subscription, group, registry, filter)  # type: ignore[arg-type]  # checked above


def run_row(run: Any) -> list[Any]:
    """A Run as one row of RUN_HEADERS, formatted as az's table formatter does (untrusted values are only shown)."""
    properties = _mapping(_mapping(run).get("properties"))
    return [
        properties.get("runId") or _mapping(run).get("name"),
        properties.get("task"),
        _mapping(properties.get("platform")).get("os"),
        properties.get("status"),
        _trigger(properties),
        _az_time(properties.get("startTime")),
        _duration(properties.get("startTime"), properties.get("finishTime")),
    ]


def _runs(ctx: Context, query: RunQuery, top: int | None) -> Iterator[dict[str, Any]]:
    """Up to `top` runs (all when None), page by page; `$top` asks ARM for no more, and more are not taken."""
    taken = 0
    with ctx.arm_client() as arm:
        for page in arm.list_runs(query.registry_path, query.filter, top):
            for item in page:
                if top is not None and taken >= top:
                    return
                taken += 1
                yield item


def _trigger(properties: dict[str, Any]) -> str:
    """az's TRIGGER: the source trigger's event type, else Image Update, Timer Trigger or Manual."""
    event_type = _mapping(properties.get("sourceTrigger")).get("eventType")
    if isinstance(event_type, str) and event_type.strip():
        return event_type
    if properties.get("imageUpdateTrigger"):
        return "Image Update"
    if properties.get("timerTrigger"):
        return "Timer Trigger"
    return "Manual"


def _az_time(text: Any) -> Any:
    """`%Y-%m-%dT%H:%M:%SZ` in UTC, as az prints STARTED; anything unreadable as it came."""
    moment = _instant(text)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else text


def _duration(start: Any, finish: Any) -> str | None:
    """HH:MM:SS between start and finish (hours past 24 kept), as az prints DURATION."""
    began, ended = _instant(start), _instant(finish)
    if began is None or ended is None:
        return None
    seconds = int((ended - began).total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    return f"{sign}{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _instant(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)  # Python 3.11 reads the trailing Z and 7-digit fractions
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
