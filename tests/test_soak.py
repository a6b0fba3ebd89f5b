"""The redelivery soak (scripts/soak.py) at N=300: under faults and bad input, no event is lost.

`make soak` runs the same simulator with 5,000 events; here it runs small enough for every `make test`,
and against deliberately broken settlement, to show that its accounting notices a loss or a duplicate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scripts.soak import SoakConfig, run_soak
from scripts.soak_plan import plan_events
from shared.errors import ArchiverError
from shared.service import Archiver


def test_300_events_under_faults_end_exactly_once_and_none_is_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every event ends once as succeeded, failed, rejected or dead-lettered; each run ends as its last success set it."""
    # given 300 events, 2% invalid and 10% meeting a fault, on 16 workers
    config = SoakConfig(events=300, workers=16, seed=1)
    # when Service Bus delivers and redelivers them until each completes or is dead-lettered
    report = run_soak(config, tmp_path, monkeypatch)
    # then nothing is lost, duplicated, unaccounted for or left in the wrong state
    assert report.ok, report.problems
    assert (report.lost, report.duplicates, report.final_state_mismatches) == (0, 0, 0)
    assert report.succeeded + report.failed + report.rejected + report.dead_lettered == report.events == 300
    assert (report.leaks, report.unexpected_exceptions, report.harness_leftovers) == (0, 0, 0)
    # and the faults did bite: redeliveries, final failures, rejections and dead letters all happened
    assert report.redeliveries > 0 and report.failed > 0 and report.rejected > 0 and report.dead_lettered > 0
    assert report.rejected == sum(1 for event in plan_events(300, config.run_count, 1, fault_rate=0.1, invalid_rate=0.02, max_deliveries=5)
                                  if event.run_id is None)


def _swallowing_transient_failures(original: Any) -> Any:
    """A broken trigger: it completes a message whose failure was transient, without an outcome."""

    def handle(self: Archiver, message: Any) -> Any:
        try:
            return original(self, message)
        except ArchiverError as error:
            if error.retryable and (message.delivery_count or 1) < self.settings.max_delivery_count:
                return None
            raise

    return handle


def _publishing_twice(original: Any) -> Any:
    def publish(self: Archiver, outcome: Any) -> None:
        original(self, outcome)
        original(self, outcome)

    return publish


@pytest.mark.parametrize(
    ("method", "breakage", "figure"),
    [("handle_queue_message", _swallowing_transient_failures, "lost"), ("publish", _publishing_twice, "duplicates")],
    ids=["transient-failure-dropped", "outcome-published-twice"],
)
def test_the_soak_notices_a_broken_settlement(
    method: str, breakage: Any, figure: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The accounting is not vacuous: a trigger that drops or duplicates events fails the soak."""
    monkeypatch.setattr(Archiver, method, breakage(getattr(Archiver, method)))
    report = run_soak(SoakConfig(events=100, workers=16, seed=3, fault_rate=0.25), tmp_path, monkeypatch)
    assert getattr(report, figure) > 0
    assert not report.ok


def test_the_same_seed_plans_the_same_events() -> None:
    """A soak can be replayed: events, bodies and faults depend on the seed alone."""
    first, second = (plan_events(500, 50, 9, fault_rate=0.1, invalid_rate=0.02, max_deliveries=5) for _ in range(2))
    assert [(e.message_id, e.body, e.scenario, e.persistence, e.faulted_deliveries) for e in first] == [
        (e.message_id, e.body, e.scenario, e.persistence, e.faulted_deliveries) for e in second
    ]
    assert {e.scenario.name for e in first if e.scenario} and sum(e.run_id is None for e in first) > 0
