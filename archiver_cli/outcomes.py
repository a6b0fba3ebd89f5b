"""`acr-archiver outcomes`: receive outcomes from a topic subscription (or read OUTCOME_FILE) and print them."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from typing import Any, TextIO

from archiver_cli.context import DEFAULT_SUBSCRIPTION, CliError, Context, positive_int
from archiver_cli.messages import body_value, properties
from archiver_cli.output import clean, print_json

__all__ = ["OutcomeTable", "add_parser", "record", "run"]

RECEIVE_BATCH = 50
DEFAULT_MAX = 50
DEFAULT_WAIT = 5.0
_SUBSCRIPTION_ONLY = ("subscription", "topic", "wait", "peek", "follow")
"""Options that mean nothing for --file: refused there rather than silently ignored."""


def add_parser(commands: Any) -> None:
    """Register the command."""
    parser = commands.add_parser(
        "outcomes",
        help="receive outcomes from a topic subscription and print them",
        description="Receive outcome messages from a subscription of the outcome topic and print them; each is "
        "completed (removed) after it was printed, unless --peek. --file reads an OUTCOME_FILE instead "
        "(with --max; the subscription options are refused there).",
    )
    parser.add_argument("--subscription", help=f"subscription name (default {DEFAULT_SUBSCRIPTION})")
    parser.add_argument("--topic", help="topic name (default OUTCOME_TOPIC_NAME)")
    parser.add_argument("--max", type=positive_int, help=f"stop after this many outcomes (default {DEFAULT_MAX}; --file: all)")
    parser.add_argument("--wait", type=float, help=f"seconds to wait for the next outcome (default {DEFAULT_WAIT:g})")
    parser.add_argument("--peek", action="store_true", help="browse: leave the outcomes on the subscription")
    parser.add_argument("--follow", action="store_true", help="keep waiting for outcomes until interrupted (Ctrl-C)")
    parser.add_argument("--file", help="print the outcomes of an OUTCOME_FILE (JSON lines) instead")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table", help="json: one OUTCOME_FILE-style line each")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Print outcomes as they arrive."""
    printer = OutcomeTable(ctx.stdout) if args.output == "table" else None
    show = printer.row if printer is not None else (lambda item: print_json(item, ctx.stdout, indent=None))
    if args.file:
        given = [f"--{name}" for name in _SUBSCRIPTION_ONLY if getattr(args, name) not in (None, False)]
        if given:
            raise CliError(f"{', '.join(given)} reads a topic subscription, not --file; drop it, or drop --file", 2)
        count = 0
        for item in _read_file(args.file, args.max):
            show(item)
            count += 1
        ctx.stderr.write(f"{count} outcome(s) in {args.file}\n")
        return 0
    topic = ctx.topic_name(args.topic)
    subscription = args.subscription or DEFAULT_SUBSCRIPTION
    most = args.max or DEFAULT_MAX
    wait = DEFAULT_WAIT if args.wait is None else args.wait
    count = 0
    with ctx.topic_client() as client, client.get_subscription_receiver(
        topic_name=topic, subscription_name=subscription, max_wait_time=wait
    ) as receiver:
        next_sequence = 0
        while args.follow or count < most:
            wanted = RECEIVE_BATCH if args.follow else min(RECEIVE_BATCH, most - count)
            if args.peek:
                batch = receiver.peek_messages(max_message_count=wanted, sequence_number=next_sequence)
            else:
                batch = receiver.receive_messages(max_message_count=wanted, max_wait_time=wait)
            if not batch:
                if not args.follow:
                    break
                if args.peek:
                    time.sleep(wait)  # peeking does not wait for new messages by itself
                continue
            for message in batch:
                show(record(message))
                if args.peek:
                    next_sequence = message.sequence_number + 1
                else:
                    receiver.complete_message(message)  # after it was shown
                count += 1
    ctx.stderr.write(f"{count} outcome(s) from {topic}/{subscription}\n")
    return 0


def record(message: Any) -> dict[str, Any]:
    """A received outcome in the OUTCOME_FILE line shape."""
    return {
        "message_id": message.message_id,
        "correlation_id": message.correlation_id,
        "subject": message.subject,
        "content_type": message.content_type,
        "application_properties": properties(message),
        "body": body_value(message),
    }


class OutcomeTable:
    """Fixed-width rows, printed as outcomes arrive."""

    COLUMNS = (("COMPLETED", 24), ("OUTCOME", 9), ("SOURCE", 10), ("REGISTRY/RUN", 44), ("ARCHIVE", 7), ("HTTP", 4), ("ERROR", 50), ("CORRELATION ID", 36))

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._started = False

    def row(self, item: dict[str, Any]) -> None:
        """Print one outcome record (the header first)."""
        if not self._started:
            self._line([name for name, _ in self.COLUMNS])
            self._line(["-" * width for _, width in self.COLUMNS])
            self._started = True
        body = _object(item.get("body"))
        request = _object(body.get("request"))
        error = _object(body.get("error"))
        properties_ = _object(item.get("application_properties"))
        self._line([
            body.get("completedAt"),
            body.get("outcome") or properties_.get("outcome"),
            body.get("source"),
            f"{request.get('registryName', '-')}/{request.get('runId', '-')}",
            request.get("isArchiveEnabled", "-"),
            properties_.get("httpStatus", "-"),
            f"{error.get('code')}: {error.get('message')}" if error else "",
            body.get("correlationId") or item.get("correlation_id"),
        ])

    def _line(self, values: list[Any]) -> None:
        cells = [clean(value, width).ljust(width) for value, (_, width) in zip(values, self.COLUMNS, strict=True)]
        self._stream.write("  ".join(cells).rstrip() + "\n")
        self._stream.flush()


_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def _object(value: Any) -> dict[str, Any]:
    """A JSON object of an outcome, or empty when the line holds something else there."""
    return value if isinstance(value, dict) else {}


def _read_file(path: str, most: int | None) -> Iterator[dict[str, Any]]:
    """The records of an OUTCOME_FILE, up to `most`; a line that is not a UTF-8 JSON object is refused by number."""
    try:
        with open(path, "rb") as source:
            data = source.read()
    except OSError as error:
        raise CliError(f"{path}: {error.strerror}", 2) from None
    count = 0
    for number, raw in enumerate(data.split(b"\n"), 1):  # JSON Lines end in "\n" only, never U+2028
        if most is not None and count >= most:
            return
        if not raw.strip():
            continue
        where = f"{path} line {number}: not an OUTCOME_FILE line"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CliError(f"{where} (not UTF-8)", 2) from None
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            raise CliError(f"{where} (not JSON)", 2) from None
        if not isinstance(record, dict):
            raise CliError(f"{where} (a JSON {_JSON_KINDS.get(type(record), 'value')}, not an object)", 2)
        count += 1
        yield record
