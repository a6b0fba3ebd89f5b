"""The redelivery soak (scripts/soak.py) at N=300: under faults and bad input, no event is lost.

`make soak` runs the same simulator with 5,000 events; here it runs small enough for every `make test`,
and against deliberately broken settlement, to show that its accounting notices a loss or a duplicate.
"""

from __future__ import annotations

import dataclasses
import selectors
import socket
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest

from emulators.server import LoopbackServer
from scripts.soak import SoakConfig, SoakIdentity, _Harness, run_soak
from scripts.soak_plan import SCENARIOS, PlannedEvent, plan_events
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
    assert (report.lost, report.duplicates, report.final_state_mismatches, report.wrong_ends) == (0, 0, 0, 0)
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
    """A broken publish step: each outcome goes out twice."""

    def publish(self: Archiver, result: Any, reference: str | None) -> None:
        original(self, result, reference)
        original(self, result, reference)

    return publish


def _reporting_rejections_as_failures(original: Any) -> Any:
    """A broken outcome: every event ends exactly once, but a rejected one says `failed`."""

    def publish(self: Archiver, result: Any, reference: str | None) -> None:
        outcome = result.outcome
        if outcome.outcome == "rejected":
            result = dataclasses.replace(result, outcome=dataclasses.replace(outcome, body={**outcome.body, "outcome": "failed"}))
        original(self, result, reference)

    return publish


@pytest.mark.parametrize(
    ("method", "breakage", "figure"),
    [
        ("handle_queue_message", _swallowing_transient_failures, "lost"),
        ("_publish_result", _publishing_twice, "duplicates"),
        ("_publish_result", _reporting_rejections_as_failures, "wrong_ends"),
    ],
    ids=["transient-failure-dropped", "outcome-published-twice", "wrong-end-state"],
)
def test_the_soak_notices_a_broken_settlement(
    method: str, breakage: Any, figure: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The accounting is not vacuous: a trigger that drops, duplicates or misreports events fails the soak."""
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


_SCENARIO = {scenario.name: scenario for scenario in SCENARIOS}


@pytest.mark.parametrize(
    ("scenario", "persistence", "end"),
    [
        (None, None, "succeeded"),
        ("arm-401-refresh", "in-process", "succeeded"),
        ("503", "deliveries", "succeeded"),
        ("503", "every-delivery", "dead_lettered"),
        ("lro-ends-failed", "final", "failed"),
        ("arm-401-after-refresh", "final", "failed"),
        ("publish-fails", "deliveries", "succeeded"),
    ],
    ids=["no-fault", "absorbed-401", "k-deliveries", "every-delivery", "lro-failed", "401-after-refresh", "publish-outage"],
)
def test_each_scenario_has_the_end_state_the_soak_demands(scenario: str | None, persistence: str | None, end: str) -> None:
    """The soak checks how each event ended, not only that it ended: the plan says which end is right."""
    event = PlannedEvent(0, "m", b"{}", "run-0000", True, _SCENARIO.get(scenario or ""), persistence, 1)  # type: ignore[arg-type]
    assert event.expected_end == end
    assert PlannedEvent(0, "m", b"{", None, True).expected_end == "rejected"


def test_an_emulator_takes_every_simultaneous_first_connection_of_the_soak_workers() -> None:
    """16 workers connecting at once all complete the handshake, even before a single accept().

    socketserver's default listen backlog of 5 dropped the other SYNs; Linux retransmits a SYN after 1 s, past the
    soak's 0.5 s ARM_TIMEOUT_SECONDS, so a first try was lost and an absorbed fault became a redelivery or never reached.
    With a full backlog a dropped SYN never gets through while nothing accepts, so the wait below is only a safety net.
    """
    server = LoopbackServer()  # bound and listening, not serving: nothing accepts
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    selector = selectors.DefaultSelector()
    clients = [socket.socket() for _ in range(16)]
    try:
        for client in clients:
            client.setblocking(False)
            client.connect_ex((host, int(port)))
            selector.register(client, selectors.EVENT_WRITE)
        connected = 0
        deadline = time.monotonic() + 10
        while selector.get_map() and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                connected += key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0  # type: ignore[union-attr]
                selector.unregister(key.fileobj)
        assert connected == 16
    finally:
        for client in clients:
            client.close()
        server.stop()



class _QuietArm:
    """The harness's view of ARM, for a harness-only test: nothing in flight, nothing left over."""

    def quiet(self, run_id: str) -> bool:
        return True

    def leftovers(self, run_id: str) -> int:
        return 0

    def script(self, run_id: str, *faults: Any) -> None:
        """No fault is scripted on ARM in this test."""


def test_identity_failures_never_stack_up_between_workers() -> None:
    """Each delivery scripted to meet an identity 500 finds exactly its own 500 queued, on 16 workers at once.

    Two stacked 500s defeat msal's single retry of a refresh, and msal then caches the 500 for 5 s, failing every
    worker's refresh: the soak's flake. Here no request ever takes a failure, so a harness that let them stack
    would show two or more.
    """
    identity = SoakIdentity()
    seen: list[int] = []
    lock = threading.Lock()

    def queue(message: Any) -> None:
        with identity._lock:
            queued = len(identity._failures)
        with lock:
            seen.append(queued)

    scenario = _SCENARIO["arm-401-refresh-identity-500"]
    events = [PlannedEvent(n, f"m{n}", b"{}", f"run-{n:04d}", True, scenario, "in-process", 1) for n in range(64)]
    publisher = types.SimpleNamespace(outcomes={})
    try:
        config = SoakConfig(events=64, workers=16)
        harness = _Harness(config, events, queue, _QuietArm(), identity, publisher)  # type: ignore[arg-type]
        harness.run()
    finally:
        identity.stop()
    assert seen == [1] * 64


def test_200_events_over_the_wire_are_each_accounted_for_from_the_subscriptions() -> None:
    """`make soak WIRE=1` at N=200: the broker redelivers and dead-letters; the subscriptions hold one outcome per event."""
    from scripts.soak_wire import WireSoakConfig, run_wire_soak

    # given 200 events, 2% invalid and 10% meeting a fault, and the broker refusing 2 outcome publishes
    report = run_wire_soak(WireSoakConfig(events=200, seed=1))
    # then every event has exactly one outcome on the topic, ending as its plan says
    assert report.ok, report.problems
    assert report.succeeded + report.failed + report.rejected + report.dead_lettered == report.events == 200
    # and the faults did bite over the wire: redeliveries, dead letters, refused publishes
    assert report.redelivered > 0 and report.dead_lettered > 0 and report.rejected > 0 and report.publish_rejections == 2
