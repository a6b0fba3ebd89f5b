"""The application service: event → validation → ARM → outcome → publish, for every source (contract §4, §5, §8).

Each entry point makes one call here: the queue trigger `handle_queue_message` (its return or raise is
the settlement), the HTTP routes `archive` (their response is built from the results), the policy timer
and the sweep route `sweep`. Publishing and logging an outcome or a sweep summary happen here only, in
`_publish_result`.

An ImagePushed event (shape 4) yields one result per run that produced the image. On the queue its
results settle together: when any run failed transiently and deliveries are left, the trigger raises
before publishing anything, so the redelivery lists and PATCHes every run again (the PATCH is
idempotent, and the outcome ids derive from the inbound id and the run id, so nothing is duplicated
on the topic); on the last delivery every outcome is published, then it raises (dead-letter).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol

from shared.arm import ArmClient
from shared.discovery import (
    HTTP_SWEEP_SECONDS,
    SUMMARY_SUBJECT,
    TIMER_SECONDS,
    SweepSource,
    fair_deadline,
    image_filter,
    new_report,
    run_sweep,
    sweep_summary,
)
from shared.errors import ArchiverError, ArmError, ArmUnavailable, EventRejected, InvalidEvent, NoMatchingRun, PublishFailed
from shared.events import ArchiveRequest, ImagePush, check_allowed, decode_json, parse_event, request_for_run
from shared.messaging import MAX_RESCHEDULES, MESSAGE_ID_LIMIT, ORIGINAL_MESSAGE_ID, RESCHEDULE_COUNT, QueueMessage, image_run_id_base
from shared.outcome import Inbound, Outcome, build_outcome
from shared.policies import ArchivePolicy
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
    """The archive queue's sender (shared.reschedule): copies for later, and a sweep's new events."""

    def schedule(self, message: QueueMessage, delay_seconds: float) -> None: ...

    def enqueue(self, messages: Sequence[QueueMessage]) -> int: ...

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

    def process(self, event: Any, inbound: Inbound) -> list[Result]:
        """Parse an already decoded event and apply it; never raises for a bad event or an ARM error.

        One result, or for an ImagePushed event one per run that produced the image.
        """
        request: ArchiveRequest | None = None
        try:
            parsed = parse_event(event, self.settings)
            request = parsed if isinstance(parsed, ArchiveRequest) else None
            check_allowed(parsed, self.settings)
            if isinstance(parsed, ImagePush):
                return self._archive_pushed(parsed, inbound)
            result = self.arm.update_run(parsed)
        except ArchiverError as error:
            return [Result.failure(inbound, error, request)]
        return [Result(build_outcome(inbound, request, result=result))]

    def _archive_pushed(self, push: ImagePush, inbound: Inbound) -> list[Result]:
        """List the runs whose output images hold the pushed image, then archive each (contract §2 shape 4)."""
        base = inbound.id_base if inbound.id_base is not None else inbound.message_id
        results: list[Result] = []
        seen: set[str] = set()  # ARM may list a run twice (a listing that shifts while paging): one PATCH, one outcome
        try:
            for page in self._pages(push.registry_id, image_filter(push.repository, push.digest)):
                for run in page:
                    result = self._archive_listed(push, run, inbound, base, seen)
                    if result is not None:
                        results.append(result)
        except ArchiverError as error:
            return [*results, Result.failure(inbound, error)]  # the listing failed: what it found is kept
        if not results:
            missing = NoMatchingRun(f"no run of registry '{push.registry_name}' lists {push.image} in its output images")
            return [Result.failure(inbound, missing)]
        return results

    def _archive_listed(self, push: ImagePush, run: Any, inbound: Inbound, base: str | None, seen: set[str]) -> Result | None:
        """One listed run archived, or None when the listing named it already (run ids are case-insensitive, as ARM names are)."""
        request: ArchiveRequest | None = None
        try:
            request = request_for_run(push, run)
            if request.run_id.lower() in seen:
                return None
            seen.add(request.run_id.lower())
            one = replace(inbound, id_base=image_run_id_base(base, request.run_id))
            return Result(build_outcome(one, request, result=self.arm.update_run(request)))
        except ArchiverError as error:
            if request is not None:
                return Result.failure(replace(inbound, id_base=image_run_id_base(base, request.run_id)), error, request)
            # A run the app refused (ARM listed it under another registry, or without an id): its name is
            # ARM's text, so its outcome id is kept apart from any real run's (duplicate detection keeps both).
            name = str(run.get("name") if isinstance(run, dict) else "")[:128]
            return Result.failure(replace(inbound, id_base=image_run_id_base(base, "refused:" + name)), error, request)

    def archive(self, submissions: Sequence[Submission]) -> list[Result]:
        """Process every submission, then publish and log every outcome, in order (raises PublishFailed).

        Several events run BATCH_CONCURRENCY at a time on threads of this call alone. An event not
        started within batch_seconds is not sent to ARM: it fails as ArmUnavailable (retryable), so the
        call ends within about twice one event's time however slow ARM is.
        """
        limit = batch_seconds(self.settings)
        deadline = time.monotonic() + limit

        def process(submission: Submission) -> list[Result]:
            if submission.refused is not None:
                return [Result.failure(submission.inbound, submission.refused)]
            if time.monotonic() >= deadline:
                late = ArmUnavailable(f"not attempted: the batch used its {limit:g} s; send the event again")
                return [Result.failure(submission.inbound, late)]
            return self.process(submission.event, submission.inbound)

        if len(submissions) == 1:
            results = process(submissions[0])
        else:
            with ThreadPoolExecutor(min(BATCH_CONCURRENCY, len(submissions)), thread_name_prefix="archive-batch") as pool:
                results = [result for group in pool.map(process, submissions) for result in group]
        for result in results:
            self._publish_result(result, None)
        return results

    def sweep(self, policies: Sequence[ArchivePolicy], source: SweepSource) -> list[Outcome]:
        """Sweep each policy in turn (contract §8) and publish each summary; PublishFailed, after all ran, if one could not go.

        The policies share the source's time bound fairly, and a policy whose sweep or summary fails
        never stops those after it.
        """
        end = time.monotonic() + (TIMER_SECONDS if source == "timer" else HTTP_SWEEP_SECONDS)
        summaries: list[Outcome] = []
        unpublished: PublishFailed | None = None
        for position, policy in enumerate(policies):
            report = new_report(policy, source, self.settings.archive_policy_lookback_days)
            pages = self._pages(policy.registry_id, report.filter)
            run_sweep(report, pages, self._deliver, deadline=fair_deadline(time.monotonic(), end, len(policies) - position))
            summary = sweep_summary(report)
            try:
                self._publish_result(Result(summary, report.error), report.sweep_id)
            except PublishFailed as error:
                log.error("policy %s: the sweep summary could not be published: %s", policy.name, error.message)
                unpublished = unpublished or error
            summaries.append(summary)
        if unpublished is not None:
            raise unpublished
        return summaries

    def _pages(self, registry_id: str, filter: str) -> Iterator[list[dict[str, Any]]]:
        """Runs - List page by page; a registry path the ARM client refuses is a final PolicyFailed, never an escaping ValueError.

        Events and settings validate registries by the same rules as the list client, so this is a guard,
        not a path taken: no URL is built from a path the client has not checked (contract §7).
        """
        try:
            yield from self.arm.list_runs(registry_id, filter)
        except ValueError:
            message = "the ARM client refused this registry's path"
            raise ArmError(message, code="PolicyFailed", status=None) from None

    def _deliver(self, messages: Sequence[QueueMessage]) -> int:
        """A sweep page's events: onto the archive queue, or under OUTCOME_FILE processed here, `source: "policy"`."""
        if not self.settings.outcome_file:
            if self.scheduler is None:
                raise PublishFailed("no archive queue to enqueue to: set ServiceBusConnection and ARCHIVE_QUEUE_NAME")
            self.scheduler.enqueue(messages)
            return len(messages)
        submissions = [
            Submission(
                Inbound("policy", correlation_id=m.correlation_id or m.message_id, message_id=m.message_id, raw=m.body.decode()),
                decode_json(m.body),
            )
            for m in messages
        ]
        return len(self.archive(submissions))

    def _process_raw(self, raw: bytes, inbound: Inbound) -> list[Result]:
        """Decode a body holding one event, then process it."""
        try:
            event = decode_json(raw)
        except InvalidEvent as error:
            return [Result.failure(inbound, error)]
        return self.process(event, inbound)

    def _publish_result(self, result: Result, reference: str | None) -> None:
        """Publish the result's outcome, then log it: the one publish-and-log step of every source."""
        self.publisher.publish(result.outcome)
        log_outcome(result, reference)

    def handle_queue_message(self, message: QueueMessage) -> list[Result]:
        """Process a queue message and settle it as contract §5 says.

        Returns normally when the message may be completed (its outcomes were published); raises to
        leave it to Service Bus: redelivery, or the dead-letter queue after the last delivery. The
        results of an ImagePushed event settle together (module docstring).
        """
        delivery = message.delivery_count or 1
        lineage = message.lineage
        original_id = lineage.original_message_id
        inbound = Inbound(
            source="servicebus",
            # Service Bus carries at most 128 characters (the outcome's correlation id and the summary's too)
            correlation_id=(message.correlation_id or original_id)[:MESSAGE_ID_LIMIT],
            message_id=original_id,
            delivery_count=message.delivery_count,
            raw=message.body.decode("utf-8", "replace"),
        )
        results = self._process_raw(message.body, inbound)
        errors = [result.error for result in results if result.error is not None]
        throttled = next((error for error in errors if error.reschedule_after is not None), None)
        transient = next((error for error in errors if error.retryable), None)
        last_delivery = delivery >= self.settings.max_delivery_count
        if throttled is not None and self._rescheduled(message, lineage.reschedule_count, throttled, last_delivery):
            return results
        if transient is not None and not last_delivery:
            log.warning(
                "message %s: %s after %d attempts; leaving it for redelivery (delivery %d of %d)",
                message.message_id, transient.code, transient.attempts, delivery, self.settings.max_delivery_count,
            )
            raise transient
        for result in results:
            self._publish_result(result, message.message_id)
        if transient is not None:
            log.error("message %s: %s on its last delivery; it goes to the dead-letter queue", message.message_id, transient.code)
            raise transient
        return results

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
    """One log line per outcome or sweep summary: ids, run or policy, and result; never a token or the raw event."""
    level = logging.INFO if result.error is None or isinstance(result.error, EventRejected) else logging.WARNING
    if not log.isEnabledFor(level):
        return
    body = result.outcome.body
    if result.outcome.subject == SUMMARY_SUBJECT:
        log.log(
            level, "%s %s %s: policy=%s registry=%s matched=%d enqueued=%d pages=%d%s",
            reference, SUMMARY_SUBJECT, body["outcome"], body["policy"], body["registry"]["registryName"],
            body["matched"], body["enqueued"], body["pages"], f" error={result.error.code}" if result.error else "",
        )
        return
    request = body["request"] or {}
    log.log(
        level,
        "%s %s: registry=%s run=%s isArchiveEnabled=%s attempts=%d%s",
        reference or body["correlationId"], body["outcome"], request.get("registryName"), request.get("runId"),
        request.get("isArchiveEnabled"), body["attempts"], f" error={result.error.code}" if result.error else "",
    )
