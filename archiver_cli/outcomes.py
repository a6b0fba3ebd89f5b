"""`acr-archiver outcomes`: receive outcomes from a topic subscription (or read OUTCOME_FILE) and print them."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, TextIO

from archiver_cli.context import DEFAULT_SUBSCRIPTION, CliError, Context
from archiver_cli.messages import body_value, properties
from archiver_cli.output import print_json

__all__ = ["OutcomeTable", "add_parser", "record", "run"]

RECEIVE_BATCH = 50


def add_parser(commands: Any) -> None:
    """Register the command."""
    parser = commands.add_parser(
        "outcomes",
        help="receive outcomes from a topic subscription and print them",
        description="Receive outcome messages from a subscription of the outcome topic and print them; each is "
        "completed (removed) after it was printed, unless --peek. --file reads an OUTCOME_FILE instead.",
    )
    parser.add_argument("--subscription", default=DEFAULT_SUBSCRIPTION, help=f"subscription name (default {DEFAULT_SUBSCRIPTION})")
    parser.add_argument("--topic", help="topic name (default OUTCOME_TOPIC_NAME)")
    parser.add_argument("--max", type=int, default=50, help="stop after this many outcomes (default 50)")
    parser.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the next outcome (default 5)")
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
        count = 0
        for item in _read_file(args.file):
            show(item)
            count += 1
        ctx.stderr.write(f"{count} outcome(s) in {args.file}\n")
        return 0
    topic = ctx.topic_name(args.topic)
    count = 0
    with ctx.topic_client() as client, client.get_subscription_receiver(
        topic_name=topic, subscription_name=args.subscription, max_wait_time=args.wait
    ) as receiver:
        next_sequence = 0
        while args.follow or count < args.max:
            wanted = RECEIVE_BATCH if args.follow else min(RECEIVE_BATCH, args.max - count)
            if args.peek:
                batch = receiver.peek_messages(max_message_count=wanted, sequence_number=next_sequence)
            else:
                batch = receiver.receive_messages(max_message_count=wanted, max_wait_time=args.wait)
            if not batch:
                if not args.follow:
                    break
                if args.peek:
                    time.sleep(args.wait)  # peeking does not wait for new messages by itself
                continue
            for message in batch:
                show(record(message))
                if args.peek:
                    next_sequence = message.sequence_number + 1
                else:
                    receiver.complete_message(message)  # after it was shown
                count += 1
    ctx.stderr.write(f"{count} outcome(s) from {topic}/{args.subscription}\n")
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
        body = item.get("body") if isinstance(item.get("body"), dict) else {}
        request = body.get("request") or {}
        error = body.get("error") or {}
        properties_ = item.get("application_properties") or {}
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
        cells = []
        for value, (_, width) in zip(values, self.COLUMNS, strict=True):
            text = " ".join(("" if value is None else str(value)).split())
            cells.append((text if len(text) <= width else text[: width - 1] + "…").ljust(width))
        self._stream.write("  ".join(cells).rstrip() + "\n")
        self._stream.flush()


def _read_file(path: str) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as source:
            lines = source.read().splitlines()
    except OSError as error:
        raise CliError(f"{path}: {error.strerror}", 2) from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            raise CliError(f"{path} line {number}: not an OUTCOME_FILE line (not JSON)", 2) from None
    return records
