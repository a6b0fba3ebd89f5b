"""`acr-archiver send`: validate archive-change events as the app will, then enqueue them on the archive queue."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import MessageSizeExceededError, ServiceBusError

from archiver_cli.context import CliError, Context, describe
from archiver_cli.output import Progress, print_json, print_table
from shared.errors import EventRejected
from shared.events import check_allowed, parse_event
from shared.messaging import envelope_message_id

__all__ = ["SourcedEvent", "add_parser", "read_events", "run", "to_message"]

BATCH = 50
"""Events per send: one round trip each, well under a Standard namespace's 256 KB batch limit for typical events."""

_DECODER = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class SourcedEvent:
    """A decoded event and where it came from, for error messages."""

    event: Any
    where: str


def add_parser(commands: Any) -> None:
    """Register the command."""
    parser = commands.add_parser(
        "send",
        help="enqueue archive-change events on the archive queue",
        description="Validate events exactly as the app does (refusing the first bad one, naming the field "
        "and where it is), then send them to the archive queue.",
    )
    parser.add_argument("events", nargs="*", metavar="EVENT", help="an event as JSON text")
    parser.add_argument("-f", "--file", help="a JSON file (one event or an array) or JSON lines; - reads stdin")
    parser.add_argument("--queue", help="queue name (default ARCHIVE_QUEUE_NAME)")
    parser.add_argument("--dry-run", action="store_true", help="validate only; send nothing")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table", help="how to list the sent messages")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Read, validate, then send in batches; nothing is sent when any event is invalid."""
    events = [SourcedEvent(_decode_argument(text, n), f"argument {n}") for n, text in enumerate(args.events, 1)]
    if args.file:
        events.extend(read_events(args.file))
    if not events:
        raise CliError("nothing to send: give events as arguments or with --file", 2)
    for item in events:
        try:
            check_allowed(parse_event(item.event, ctx.settings), ctx.settings)
        except EventRejected as error:
            raise CliError(f"{item.where}: {error.message}", 2) from None
    messages = [to_message(item.event) for item in events]
    if args.dry_run:
        ctx.stderr.write(f"{len(events)} valid event(s); nothing sent (--dry-run)\n")
        return 0
    queue = ctx.queue_name(args.queue)
    sent = _send_all(ctx, queue, messages)
    rows = [[message.message_id, item.where] for message, item in zip(messages, events, strict=True)]
    if args.output == "json":
        for message_id, where in rows:
            print_json({"messageId": message_id, "source": where, "queue": queue}, ctx.stdout, indent=None)
    else:
        print_table(("MESSAGE ID", "SOURCE"), rows, ctx.stdout, max_width=128)
    ctx.stderr.write(f"sent {sent} event(s) to {queue}\n")
    return 0


def to_message(event: Any) -> ServiceBusMessage:
    """The queue message of an event: its JSON, and a CloudEvents/Event Grid id as the message id."""
    return ServiceBusMessage(
        json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode(),
        message_id=envelope_message_id(event) or str(uuid.uuid4()),
        content_type="application/json",
    )


def read_events(path: str) -> list[SourcedEvent]:
    """Events of a file: one JSON object, a JSON array of them, or JSON lines; each with its line number."""
    name = "stdin" if path == "-" else path
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8-sig") as source:
                text = source.read()
    except OSError as error:
        raise CliError(f"{name}: {error.strerror}", 2) from None
    except UnicodeDecodeError:
        raise CliError(f"{name}: not UTF-8 text", 2) from None
    return list(_values(text, name))


def _values(text: str, name: str) -> Iterator[SourcedEvent]:
    """Every top-level JSON value in order; a lone array stands for its elements."""
    position = _skip_space(text, 0)
    if position < len(text) and text[position] == "[":
        yield from _array_elements(text, name, position)
        return
    while position < len(text):
        value, end = _decode(text, name, position)
        yield SourcedEvent(value, f"{name} line {_line(text, position)}")
        position = _skip_space(text, end)


def _array_elements(text: str, name: str, position: int) -> Iterator[SourcedEvent]:
    position = _skip_space(text, position + 1)
    if position < len(text) and text[position] == "]":
        position += 1
    else:
        while True:
            value, end = _decode(text, name, position)
            yield SourcedEvent(value, f"{name} line {_line(text, position)}")
            position = _skip_space(text, end)
            if position < len(text) and text[position] == ",":
                position = _skip_space(text, position + 1)
                continue
            if position < len(text) and text[position] == "]":
                position += 1
                break
            raise CliError(f"{name} line {_line(text, position)}: not valid JSON (expected ',' or ']')", 2)
    if _skip_space(text, position) < len(text):
        raise CliError(f"{name} line {_line(text, _skip_space(text, position))}: unexpected text after the array", 2)


def _decode(text: str, name: str, position: int) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, position)
    except json.JSONDecodeError as error:
        start = _line(text, position)
        where = f"column {error.colno}" if error.lineno == start else f"line {error.lineno} column {error.colno}"
        raise CliError(f"{name} line {start}: not valid JSON ({error.msg} at {where})", 2) from None


def _decode_argument(text: str, number: int) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise CliError(f"argument {number}: not valid JSON ({error.msg} at column {error.colno})", 2) from None


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _line(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def _send_all(ctx: Context, queue: str, messages: Sequence[ServiceBusMessage]) -> int:
    sent = 0
    with ctx.queue_client() as client, client.get_queue_sender(queue_name=queue) as sender:
        with Progress(len(messages), f"sending to {queue}", ctx.stderr, ctx.progress) as bar:
            for start in range(0, len(messages), BATCH):
                chunk = list(messages[start : start + BATCH])
                try:
                    _send_chunk(sender, chunk)
                except ServiceBusError as error:
                    raise CliError(f"sent {sent} of {len(messages)} event(s) to {queue}, then: {describe(error)}") from None
                sent += len(chunk)
                bar.advance(len(chunk))
    return sent


def _send_chunk(sender: Any, chunk: list[ServiceBusMessage]) -> None:
    try:
        sender.send_messages(chunk)
    except MessageSizeExceededError:
        if len(chunk) == 1:
            raise
        for message in chunk:  # the batch was refused whole, so nothing of it was sent
            sender.send_messages(message)
