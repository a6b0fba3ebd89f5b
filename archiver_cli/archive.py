"""`acr-archiver archive`: one Runs - Update with the operator's credential, like `az acr task update-run`."""

from __future__ import annotations

import argparse
from typing import Any

from archiver_cli import runs
from archiver_cli.context import Context
from archiver_cli.output import print_json, print_table
from shared.events import check_allowed, parse_event

__all__ = ["add_parser", "run", "run_row"]

RUN_HEADERS = (*runs.RUN_HEADERS, "ARCHIVED")


def add_parser(commands: Any) -> None:
    """Register the command."""
    parser = commands.add_parser(
        "archive",
        help="archive (or un-archive) one run now",
        description="PATCH the run's isArchiveEnabled with DefaultAzureCredential, as "
        "`az acr task update-run --no-archive false` does, and print the final Run.",
    )
    parser.add_argument("run_resource_id", nargs="?", help="the run's ARM id (instead of --registry/--run-id)")
    parser.add_argument("-r", "--registry", help="registry name (default DEFAULT_REGISTRY_NAME)")
    parser.add_argument("--run-id", help="run id, e.g. ca1")
    parser.add_argument("-g", "--resource-group", help="resource group (default DEFAULT_RESOURCE_GROUP)")
    parser.add_argument("--subscription", help="subscription id (default DEFAULT_SUBSCRIPTION_ID)")
    parser.add_argument(
        "--no-archive", nargs="?", const="true", default="false", choices=("true", "false"),
        help="true to un-archive; default false, i.e. archive (as az's flag)",
    )
    parser.add_argument("-o", "--output", choices=("json", "table"), default="json")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Validate the run's coordinates like an event, send the PATCH, print the Run."""
    event: dict[str, Any] = {"isArchiveEnabled": args.no_archive == "false"}
    if args.run_resource_id:
        event["runResourceId"] = args.run_resource_id
    else:
        given = {
            "subscriptionId": args.subscription, "resourceGroupName": args.resource_group,
            "registryName": args.registry, "runId": args.run_id,
        }
        event.update({name: value for name, value in given.items() if value is not None})
    request = parse_event(event, ctx.settings)
    check_allowed(request, ctx.settings)  # as `send` and the app: ALLOWED_REGISTRIES binds the operator too
    with ctx.arm_client() as arm:
        result = arm.update_run(request)
    if args.output == "table":
        print_table(RUN_HEADERS, [run_row(result.run)], ctx.stdout)
    else:
        print_json(result.run, ctx.stdout)
    return 0


def run_row(run: dict[str, Any]) -> list[Any]:
    """A Run as one row of RUN_HEADERS: `runs list`'s columns and the archive flag."""
    properties = run.get("properties")
    return [*runs.run_row(run), properties.get("isArchiveEnabled") if isinstance(properties, dict) else None]
