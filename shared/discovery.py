"""Run discovery (contract §8): the `$filter` of a policy sweep or a push, the sweep loop, its summary.

ACR emits no event when a run finishes, so the app finds runs by listing them (Runs - List). A sweep
lists a policy's runs page by page and hands each page on (to the archive queue, or to inline
processing under OUTCOME_FILE) before asking for the next, so a listing that fails part-way keeps what
it found. The `IsArchiveEnabled eq {not flag}` clause is what makes stopping safe: whatever a sweep
did not reach (bounded by SWEEP_MAX_PAGES and a deadline) is found again by the next one, and a run
already handled is not listed again.

The app never parses OData: it only builds these filters, and ARM validates them and answers.
This module knows nothing of ARM's client or Service Bus; the service passes the pages in and the
delivery step out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from shared import jsontext
from shared.errors import ArchiverError
from shared.events import RUN_ID
from shared.messaging import POLICY_PROPERTY, QueueMessage, policy_message_id, sweep_id
from shared.outcome import Outcome, error_body, utc_stamp
from shared.policies import ArchivePolicy

__all__ = [
    "HTTP_SWEEP_SECONDS",
    "SUMMARY_SUBJECT",
    "SWEEP_MAX_PAGES",
    "TIMER_SECONDS",
    "SweepReport",
    "SweepSource",
    "archive_message",
    "fair_deadline",
    "image_filter",
    "new_report",
    "odata_string",
    "odata_time",
    "policy_filter",
    "run_sweep",
    "sweep_summary",
]

log = logging.getLogger(__name__)

SUMMARY_SUBJECT = "ArchivePolicySwept"
SWEEP_MAX_PAGES = 500
"""Pages one sweep reads at most (below shared.arm.MAX_PAGES, where a listing counts as ARM misbehaving)."""
TIMER_SECONDS = 300.0
"""What one timer invocation spends on all its policies: half of host.json's functionTimeout (10 min),
so the page in flight when it runs out (at most ARM_TIMEOUT_SECONDS plus the retry budget) still fits."""
HTTP_SWEEP_SECONDS = 150.0
"""What a sweep over HTTP spends: well inside the 230 s an Azure front end waits for an HTTP answer."""

SweepSource = Literal["timer", "http"]
Deliver = Callable[[Sequence[QueueMessage]], int]
"""Hands a page's archive events on (enqueue, or process inline); returns how many were taken."""


def odata_string(text: str) -> str:
    """An OData string literal: quoted, a quote inside doubled (OData ABNF `SQUOTE-in-string`)."""
    return "'" + text.replace("'", "''") + "'"


def odata_time(moment: datetime) -> str:
    """An OData DateTimeOffset literal in RFC 3339 UTC, to the second."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def policy_filter(policy: ArchivePolicy, since: datetime) -> str:
    """`({filter}) and IsArchiveEnabled eq {not flag} and CreateTime ge {since}`, the first part only when the policy has one."""
    clauses = [f"IsArchiveEnabled eq {'false' if policy.is_archive_enabled else 'true'}", f"CreateTime ge {odata_time(since)}"]
    if policy.filter:
        clauses.insert(0, f"({policy.filter})")
    return " and ".join(clauses)


def image_filter(repository: str, digest: str) -> str:
    """The runs whose output images hold `repository@digest` (contract §2 shape 4), as `az acr task list-runs --image` asks."""
    return f"contains(OutputImageManifests, {odata_string(f'{repository}@{digest}')})"


def archive_message(policy: ArchivePolicy, run: Any, correlation_id: str) -> QueueMessage | None:
    """The shape-2 archive event of one listed run, with its deterministic id; None for a run not of the policy's registry.

    ARM's answer is input: a run without a string id, or one under another registry, is not sent on.
    """
    identifier = run.get("id") if isinstance(run, dict) else None
    prefix = policy.registry_id.lower() + "/runs/"
    if not isinstance(identifier, str) or not identifier.lower().startswith(prefix) or "/" in identifier[len(prefix) :]:
        return None
    run_id = identifier[len(prefix) :]
    if not RUN_ID.fullmatch(run_id) or run_id in (".", ".."):
        return None
    body = jsontext.encode({"runResourceId": identifier, "isArchiveEnabled": policy.is_archive_enabled})
    return QueueMessage(
        body=body,
        message_id=policy_message_id(policy.name, run_id, policy.is_archive_enabled),
        correlation_id=correlation_id,
        content_type="application/json",
        application_properties={POLICY_PROPERTY: policy.name},
    )


@dataclass
class SweepReport:
    """What one sweep of one policy did: the counts and the error that ended it, if any."""

    policy: ArchivePolicy
    source: SweepSource
    started: datetime
    filter: str
    matched: int = 0
    enqueued: int = 0
    pages: int = 0
    error: ArchiverError | None = None
    stopped_early: bool = False
    """The page or time bound ended it; the next sweep finds the rest."""
    completed: datetime | None = field(default=None)

    @property
    def sweep_id(self) -> str:
        """`sweep:{name}:{start time}`: the summary's message and correlation id, and the events' correlation id."""
        return sweep_id(self.policy.name, utc_stamp(self.started))


def run_sweep(
    report: SweepReport,
    pages: Iterable[list[dict[str, Any]]],
    deliver: Deliver,
    *,
    deadline: float,
    max_pages: int = SWEEP_MAX_PAGES,
    clock: Callable[[], float] = time.monotonic,
) -> SweepReport:
    """List page by page, handing each page's events on before the next request; never raises an ArchiverError.

    Stops after `max_pages` pages or once `clock()` passes `deadline`, whichever comes first.
    """
    iterator = iter(pages)
    try:
        while True:
            if report.pages >= max_pages or clock() >= deadline:
                report.stopped_early = True
                break
            try:
                page = next(iterator)
            except StopIteration:
                break
            report.pages += 1
            report.matched += len(page)
            messages = [m for m in (archive_message(report.policy, run, report.sweep_id) for run in page) if m is not None]
            if len(messages) < len(page):
                skipped = len(page) - len(messages)
                log.warning("policy %s: ARM listed %d run(s) outside the policy's registry; skipped", report.policy.name, skipped)
            if messages:
                report.enqueued += deliver(messages)
    except ArchiverError as error:
        report.error = error
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
    report.completed = datetime.now(timezone.utc)
    if report.stopped_early:
        log.warning(
            "policy %s: sweep stopped at its bound after %d page(s); the next sweep finds the rest",
            report.policy.name,
            report.pages,
        )
    return report


def fair_deadline(now: float, end: float, policies_left: int) -> float:
    """A policy's share of what is left: one slow policy cannot take the time of those after it."""
    return now + max(end - now, 0.0) / max(policies_left, 1)


def sweep_summary(report: SweepReport) -> Outcome:
    """The ArchivePolicySwept message of a sweep (contract §8): ids, application properties, body."""
    policy, error = report.policy, report.error
    outcome = "succeeded" if error is None else "failed"
    properties: dict[str, Any] = {
        "outcome": outcome,
        "source": report.source,
        "policy": policy.name,
        "registryName": policy.registry_name,
        "matched": report.matched,
        "enqueued": report.enqueued,
    }
    if error is not None:
        properties["errorCode"] = error_body(error)["code"]
    body = {
        "outcome": outcome,
        "source": report.source,
        "policy": policy.name,
        "registry": {
            "subscriptionId": policy.subscription_id,
            "resourceGroupName": policy.resource_group_name,
            "registryName": policy.registry_name,
        },
        "filter": report.filter,
        "matched": report.matched,
        "enqueued": report.enqueued,
        "pages": report.pages,
        "error": error_body(error) if error is not None else None,
        "startedAt": utc_stamp(report.started),
        "completedAt": utc_stamp(report.completed),
    }
    identifier = report.sweep_id
    return Outcome(identifier, identifier, SUMMARY_SUBJECT, properties, body)


def new_report(policy: ArchivePolicy, source: SweepSource, lookback_days: float, now: datetime | None = None) -> SweepReport:
    """A sweep starting now: its start time and the `$filter` it will send."""
    started = now or datetime.now(timezone.utc)
    return SweepReport(policy, source, started, policy_filter(policy, started - timedelta(days=lookback_days)))
