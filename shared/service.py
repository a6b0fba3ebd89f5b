"""The application service: event → validation → ARM → outcome → publish, for every source (contract §4, §5).

Each entry point makes one call here: the queue trigger `handle_queue_message` (its return or raise is
the settlement), the HTTP routes `archive` (their response is built from the results). Publishing and
logging an outcome happen here only, in `_publish_result`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from shared.arm import ArmClient
from shared.errors import ArchiverError, ArmUnavailable, EventRejected, InvalidEvent, PublishFailed
from shared.events import ArchiveRequest, check_allowed, decode_json, parse_event
from shared.messaging import MAX_RESCHEDULES, ORIGINAL_MESSAGE_ID, RESCHEDULE_COUNT, QueueMessage
from shared.outcome import Inbound, Outcome, build_outcome
from shared.publisher import Publisher
from shared.settings import Settings

__all__ = [
    "BATCH_CONCURRENCY",
    "MAX_RESCHEDULES",
    "ORIGINAL_MESSAGE_ID",
    "RESCHEDULE_COUNT",
    "Archiver",
    "QueueMessage",
    "Result",
    "Scheduler",
    "Submission",
    "batch_seconds",
    "log_outcome",
]

log = logging.getLogger(__name__)

BATCH_CONCURRENCY = 8
"""Events of one submission in flight at once; each call has its own threads, so no caller waits for another's."""


class Scheduler(Protocol):
    """Puts a copy of a queue message back on the queue for later (shared.reschedule)."""

    def schedule(self, message: QueueMessage, delay_seconds: float) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Result:
    """The processed event: its outcome, and the error behind it when it did not succeed."""

    outcome: Outcome
    error: ArchiverError | None = None

    @classmethod
    def failure(cls, inbound: Inbound, error: ArchiverError, request: ArchiveRequest | None = None) -> Result:
        """The result of an event that was rejected or failed."""
        return cls(build_outcome(inbound, request, error=error), error)


@dataclass(frozen=True, slots=True)
class Submission:
    """One event handed to `Archiver.archive`: decoded JSON, or the error that refused it before parsing."""

    inbound: Inbound
    event: Any = None
    refused: ArchiverError | None = None


class Archiver:
    """Processes archive events with one ARM client and one publisher."""

    def __init__(self, settings: Settings, arm: ArmClient, publisher: Publisher, scheduler: Scheduler | None = None) -> None:
        self.settings = settings
        self.arm = arm
        self.publisher = publisher
        self.scheduler = scheduler

    def process(self, event: Any, inbound: Inbound) -> Result:
        """Parse an already decoded event and apply it; never raises for a bad event or an ARM error."""
        request: ArchiveRequest | None = None
        try:
            request = parse_event(event, self.settings)
            check_allowed(request, self.settings)
            result = self.arm.update_run(request)
        except ArchiverError as error:
            return Result.failure(inbound, error, request)
        return Result(build_outcome(inbound, request, result=result))

    def archive(self, submissions: Sequence[Submission]) -> list[Result]:
        """Process every submission, then publish and log every outcome, in order (raises PublishFailed).

        Several events run BATCH_CONCURRENCY at a time on threads of this call alone. An event not
        started within batch_seconds is not sent to ARM: it fails as ArmUnavailable (retryable), so the
        call ends within about twice one event's time however slow ARM is.
        """
        limit = batch_seconds(self.settings)
        deadline = time.monotonic() + limit

        def process(submission: Submission) -> Result:
            if submission.refused is not None:
                return Result.failure(submission.inbound, submission.refused)
            if time.monotonic() >= deadline:
                late = ArmUnavailable(f"not attempted: the batch used its {limit:g} s; send the event again")
                return Result.failure(submission.inbound, late)
            return self.process(submission.event, submission.inbound)

        if len(submissions) == 1:
            results = [process(submissions[0])]
        else:
            with ThreadPoolExecutor(min(BATCH_CONCURRENCY, len(submissions)), thread_name_prefix="archive-batch") as pool:
                results = list(pool.map(process, submissions))
        for result in results:
            self._publish_result(result, None)
        return results

    def _process_raw(self, raw: bytes, inbound: Inbound) -> Result:
        """Decode a body holding one event, then process it."""
        try:
            event = decode_json(raw)
        except InvalidEvent as error:
            return Result.failure(inbound, error)
        return self.process(event, inbound)

    def _publish_result(self, result: Result, reference: str | None) -> None:
        """Publish the result's outcome, then log it: the one publish-and-log step of every source."""
        self.publisher.publish(result.outcome)
        log_outcome(result, reference)

    def handle_queue_message(self, message: QueueMessage) -> Result:
        """Process a queue message and settle it as contract §5 says.

        Returns normally when the message may be completed (an outcome was published); raises to
        leave it to Service Bus: redelivery, or the dead-letter queue after the last delivery.
        """
        delivery = message.delivery_count or 1
        lineage = message.lineage
        original_id = lineage.original_message_id
        inbound = Inbound(
            source="servicebus",
            correlation_id=message.correlation_id or original_id,
            message_id=original_id,
            delivery_count=message.delivery_count,
            raw=message.body.decode("utf-8", "replace"),
        )
        result = self._process_raw(message.body, inbound)
        error = result.error
        last_delivery = delivery >= self.settings.max_delivery_count
        if error is not None and error.reschedule_after is not None and self._rescheduled(message, lineage.reschedule_count, error, last_delivery):
            return result
        if error is not None and error.retryable and not last_delivery:
            log.warning(
                "message %s: %s after %d attempts; leaving it for redelivery (delivery %d of %d)",
                message.message_id, error.code, error.attempts, delivery, self.settings.max_delivery_count,
            )
            raise error
        self._publish_result(result, message.message_id)
        if error is not None and error.retryable:
            log.error("message %s: %s on its last delivery; it goes to the dead-letter queue", message.message_id, error.code)
            raise error
        return result

    def _rescheduled(self, message: QueueMessage, count: int, error: ArchiverError, last_delivery: bool) -> bool:
        """Schedule a copy at now + Retry-After so the original can complete; False to fail normally."""
        if self.scheduler is None or count >= MAX_RESCHEDULES:
            return False
        try:
            self.scheduler.schedule(message, error.reschedule_after or 0.0)
        except PublishFailed as failure:
            if not last_delivery:
                log.warning("message %s: %s; leaving it for redelivery", message.message_id, failure.message)
                raise
            log.error("message %s: %s on its last delivery", message.message_id, failure.message)
            return False
        log.warning(
            "message %s: ARM asked to wait %.0f s (%s); re-scheduled a copy (%d of %d), completing the original",
            message.message_id, error.reschedule_after, error.code, count + 1, MAX_RESCHEDULES,
        )
        return True


def batch_seconds(settings: Settings) -> float:
    """How long a submission may start events: what one event may spend on ARM (timeout plus retry budget)."""
    return settings.arm_timeout_seconds + settings.arm_retry_max_seconds


def log_outcome(result: Result, reference: str | None) -> None:
    """One log line per outcome: ids, run and result; never a token or the raw event."""
    level = logging.INFO if result.error is None or isinstance(result.error, EventRejected) else logging.WARNING
    if not log.isEnabledFor(level):
        return
    body = result.outcome.body
    request = body["request"] or {}
    log.log(
        level,
        "%s %s: registry=%s run=%s isArchiveEnabled=%s attempts=%d%s",
        reference or body["correlationId"], body["outcome"], request.get("registryName"), request.get("runId"),
        request.get("isArchiveEnabled"), body["attempts"], f" error={result.error.code}" if result.error else "",
    )
