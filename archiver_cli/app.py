"""The command line: global options, one sub-command per task, and one-line errors instead of tracebacks."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.servicebus.exceptions import ServiceBusError

from shared.auth import TokenCredential
from archiver_cli import archive, backfill, dead_letters, outcomes, policies, runs, send
from archiver_cli.context import (
    SIGN_IN, CliError, Context, default_credential, describe, identity_environment, operator_values, settings_of,
)
from shared.errors import ArchiverError, ArmError, ConfigurationError, EventRejected, TokenUnavailable
from shared.settings import Settings

__all__ = ["PROG", "build_parser", "main"]

PROG = "acr-archiver"


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Operate the ACR Run Archiver: archive a run now, enqueue events, replay dead letters, watch outcomes. "
        "Settings are the app's own (ServiceBusConnection…, ARCHIVE_QUEUE_NAME, OUTCOME_TOPIC_NAME, ARM_ENDPOINT, "
        "DEFAULT_*), read from the environment and, with --settings, a local.settings.json. "
        "Credentials: the managed-identity endpoint when IDENTITY_ENDPOINT and IDENTITY_HEADER are set "
        "(local.settings.emulator.json: the identity emulator), else DefaultAzureCredential (az login).",
    )
    parser.add_argument("--settings", metavar="FILE", help="read the Values of a local.settings.json (they win over the environment)")
    parser.add_argument("--namespace", metavar="FQDN", help="Service Bus namespace, e.g. sb-x.servicebus.windows.net (instead of the settings')")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show progress bars")
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress bars")
    parser.add_argument("--debug", action="store_true", help="on failure, print the whole traceback, not one line")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (archive, runs, backfill, policies, send, dead_letters, outcomes):
        module.add_parser(commands)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    open_servicebus: Callable[[], Any] | None = None,
    credential_factory: Callable[[Settings], TokenCredential] = default_credential,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one command; returns the exit status (0 done, 1 failed, 2 bad usage or input, 130 interrupted)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) and usage errors (2), already printed by argparse
        return int(exit_.code or 0)
    ctx: Context | None = None
    try:
        values = operator_values(os.environ if env is None else env, args.settings, args.namespace)
        ctx = Context(settings_of(values), out, err, open_servicebus, credential_factory, args.progress, values)
        with identity_environment(values), _library_logs(err if args.debug else None):
            status = int(args.handler(args, ctx))
            out.flush()  # a closed pipe shows here, not in the interpreter's last flush
            return status
    except BrokenPipeError:  # `acr-archiver … | head -1`: the reader has all it wanted
        _silence(out)
        return 0
    except KeyboardInterrupt:
        err.write("\ninterrupted\n")
        return 130
    except Exception as error:  # every failure becomes one line; --debug adds the traceback
        message, status = _explain(error, ctx.sign_in_hint() if ctx is not None else SIGN_IN)
        if args.debug:
            traceback.print_exc(file=err)
        err.write(f"{PROG}: error: {message}\n")
        return status


@contextmanager
def _library_logs(stream: TextIO | None) -> Iterator[None]:
    """Library log records (azure-identity's multi-line credential reports) reach stderr only with --debug."""
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else logging.NullHandler()
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)  # any handler, even a NullHandler, keeps logging's last-resort printer quiet
    try:
        yield
    finally:
        root.removeHandler(handler)


def _silence(stream: TextIO) -> None:
    """Point a broken stdout at /dev/null, so the interpreter's final flush does not complain either."""
    try:
        fileno = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (tests pass a StringIO)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fileno)
    os.close(devnull)


def _explain(error: Exception, sign_in: str) -> tuple[str, int]:
    """The one-line message and exit status of a failure; `sign_in` says what to do when no token came."""
    if isinstance(error, CliError):
        return error.message, error.status
    if isinstance(error, ConfigurationError):
        return error.message, 2
    if isinstance(error, EventRejected):
        return error.message, 2
    if isinstance(error, TokenUnavailable):
        return f"no Azure token ({error.message}); {sign_in}", 1
    if isinstance(error, ArmError):
        request = f" [x-ms-request-id {error.request_id}]" if error.request_id else ""
        if not error.status:  # no answer, or one we would not follow (UnsafeLink)
            return f"{error.code}: {error.message}{request}", 1
        return f"ARM refused the request: {error.code} (HTTP {error.status}): {error.message}{request}", 1
    if isinstance(error, ArchiverError):
        return f"{error.code}: {error.message}", 1
    if isinstance(error, ClientAuthenticationError):
        return f"no Azure token ({describe(error)}); {sign_in}", 1
    if isinstance(error, ServiceBusError):
        return f"Service Bus: {describe(error)}", 1
    if isinstance(error, AzureError):
        return describe(error), 1
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror or describe(error)}", 1
    return f"unexpected {describe(error)} (run with --debug for details)", 1
