"""`acr-archiver dead-letters`: list the archive queue's dead letters, and re-submit them.

A dead letter is completed only after its copy was accepted by the queue: a failed send abandons it
(it stays in the dead-letter queue) and stops the run.
"""

from __future__ import annotations

import argparse
from typing import Any

from azure.servicebus import ServiceBusSubQueue
from azure.servicebus.exceptions import ServiceBusError

from archiver_cli.context import CliError, Context, describe, positive_int
from archiver_cli.messages import describe_dead_letter, resubmission
from archiver_cli.output import Progress, print_json, print_table
from shared.messaging import envelope_of, is_image_pushed

__all__ = ["add_parser", "peek_all", "run"]

PAGE = 100
"""Messages per peek request."""
RECEIVE_BATCH = 20
"""Dead letters locked at once while re-submitting: few enough to finish well within the lock duration."""
LIST_HEADERS = ("SEQ", "ENQUEUED", "DELIVERIES", "REASON", "DESCRIPTION", "MESSAGE ID", "EVENT")
RESUBMIT_HEADERS = ("SEQ", "MESSAGE ID", "RESUBMITTED AS", "REASON")


def add_parser(commands: Any) -> None:
    """Register the command."""
    parser = commands.add_parser(
        "dead-letters",
        help="list or re-submit the archive queue's dead letters",
        description="list: browse the dead-letter queue (nothing is removed). resubmit: send each dead letter's "
        "event to the queue again, then remove the dead letter; --dry-run shows what would be sent.",
    )
    parser.add_argument("action", nargs="?", choices=("list", "resubmit"), default="list")
    parser.add_argument("--queue", help="queue name (default ARCHIVE_QUEUE_NAME)")
    parser.add_argument("--max", type=positive_int, default=100, help="at most this many dead letters (default 100)")
    parser.add_argument("--dry-run", action="store_true", help="resubmit: show what would be sent; change nothing")
    parser.add_argument("--wait", type=float, default=5.0, help="seconds to wait for dead letters to arrive (default 5)")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """List, preview or re-submit."""
    queue = ctx.queue_name(args.queue)
    with ctx.queue_client() as client, client.get_queue_receiver(
        queue_name=queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=args.wait
    ) as receiver:
        if args.action == "list":
            _print_list(args, ctx, peek_all(receiver, args.max))
            return 0
        if args.dry_run:
            rows = [_resubmit_row(dead, resubmission(dead).message_id) for dead in peek_all(receiver, args.max)]
            _print_resubmitted(args, ctx, rows)
            ctx.stderr.write(f"would re-submit {len(rows)} dead letter(s) to {queue} (--dry-run: nothing sent or removed)\n")
            return 0
        total = len(peek_all(receiver, args.max))
        with client.get_queue_sender(queue_name=queue) as sender:
            return _resubmit(args, ctx, queue, receiver, sender, total)


def peek_all(receiver: Any, limit: int) -> list[Any]:
    """Browse up to `limit` messages from the start, without locking them."""
    found: list[Any] = []
    next_sequence = 0  # 0: from the beginning
    while len(found) < limit:
        page = receiver.peek_messages(max_message_count=min(PAGE, limit - len(found)), sequence_number=next_sequence)
        if not page:
            break
        found.extend(page)
        next_sequence = page[-1].sequence_number + 1
    return found[:limit]


def _resubmit(args: argparse.Namespace, ctx: Context, queue: str, receiver: Any, sender: Any, total: int) -> int:
    rows: list[list[Any]] = []
    failure: str | None = None
    with Progress(total, f"re-submitting to {queue}", ctx.stderr, ctx.progress) as bar:
        while failure is None and len(rows) < args.max:
            batch = receiver.receive_messages(max_message_count=min(RECEIVE_BATCH, args.max - len(rows)), max_wait_time=args.wait)
            if not batch:
                break
            for index, dead in enumerate(batch):
                copy = resubmission(dead)
                try:
                    sender.send_messages(copy)
                except ServiceBusError as error:
                    _release(receiver, batch[index:])
                    failure = f"dead letter #{dead.sequence_number} was not re-submitted and stays in the dead-letter queue: {describe(error)}"
                    break
                try:
                    receiver.complete_message(dead)  # only now: the copy is safely on the queue
                except ServiceBusError as error:
                    _release(receiver, batch[index + 1 :])
                    failure = (
                        f"dead letter #{dead.sequence_number} was re-submitted as {copy.message_id} but could not be removed "
                        f"({describe(error)}); re-submitting it again within the queue's duplicate-detection window "
                        "sends the same message id, which the queue drops"
                    )
                    break
                rows.append(_resubmit_row(dead, copy.message_id))
                bar.advance()
    _print_resubmitted(args, ctx, rows)
    ctx.stderr.write(f"re-submitted {len(rows)} dead letter(s) to {queue}\n")
    if failure is not None:
        raise CliError(failure)
    return 0


def _release(receiver: Any, messages: list[Any]) -> None:
    """Abandon locked messages we will not handle now; a failure only means the lock expires later."""
    for message in messages:
        try:
            receiver.abandon_message(message)
        except ServiceBusError:
            pass


def _print_list(args: argparse.Namespace, ctx: Context, dead_letters: list[Any]) -> None:
    described = [describe_dead_letter(dead) for dead in dead_letters]
    if args.output == "json":
        for item in described:
            print_json(item, ctx.stdout, indent=None)
        return
    rows = [
        [
            item["sequenceNumber"], item["enqueuedTime"], item["deliveryCount"], item["deadLetterReason"],
            item["deadLetterErrorDescription"], item["messageId"], _event_summary(item["body"]),
        ]
        for item in described
    ]
    print_table(LIST_HEADERS, rows, ctx.stdout, max_width=48)
    ctx.stderr.write(f"{len(rows)} dead letter(s)\n")


def _print_resubmitted(args: argparse.Namespace, ctx: Context, rows: list[list[Any]]) -> None:
    if args.output == "json":
        for row in rows:
            print_json(dict(zip(("sequenceNumber", "messageId", "resubmittedAs", "deadLetterReason"), row, strict=True)), ctx.stdout, indent=None)
    else:
        print_table(RESUBMIT_HEADERS, rows, ctx.stdout, max_width=128)


def _resubmit_row(dead: Any, new_id: str | None) -> list[Any]:
    return [dead.sequence_number, dead.message_id, new_id, dead.dead_letter_reason]


def _event_summary(body: Any) -> str:
    """registry/run and flag of an event, or an ImagePushed event's image (envelopes as shared.messaging reads them)."""
    data = body.get("data") if envelope_of(body) is not None else body
    if is_image_pushed(body):
        target = data.get("target") if isinstance(data, dict) else None
        target = target if isinstance(target, dict) else {}
        return f"ImagePushed {target.get('repository', '?')}@{target.get('digest', '?')}"
    if isinstance(data, dict):
        if data.get("runResourceId"):
            where = "/".join(str(data["runResourceId"]).rstrip("/").split("/")[-3::2])
        else:
            where = f"{data.get('registryName', '?')}/{data.get('runId', '?')}"
        return f"{where} isArchiveEnabled={data.get('isArchiveEnabled')}"
    return str(body)
