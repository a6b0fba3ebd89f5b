"""Specification of pacing in the ARM client and the app: against the throttling ARM emulator on loopback."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.functions.servicebus import ServiceBusMessage

from emulators import ArmEmulator, Fault
from emulators.throttle import BucketSpec, ThrottleConfig
from shared.arm import ArmClient, new_session
from shared.errors import ArmError, ArmUnavailable, WritePaced
from shared.events import ArchiveRequest
from shared.publisher import ServiceBusPublisher
from shared.reschedule import ServiceBusScheduler
from shared.settings import Settings
from tests import support
from tests.fakes import RecordingServiceBus
from tests.transport import FixedTokens
from tests.support import GROUP, REGISTRY, SEED_RUN, SUB, FakeTime

QUEUE, TOPIC = "acr-archive-events", "acr-archive-outcomes"


def _request(run_id: str = SEED_RUN) -> ArchiveRequest:
    return ArchiveRequest(SUB, GROUP, REGISTRY, run_id, True)


def _client(arm_url: str, fake_time: FakeTime | None = None, **env: str) -> ArmClient:
    settings = Settings.from_env({"ARM_ENDPOINT": arm_url, **env})
    timing = {"sleep": fake_time.sleep, "clock": fake_time.clock} if fake_time else {}
    return ArmClient(new_session(), FixedTokens("pacing-test-token"), settings, **timing)


def test_a_pacing_wait_past_the_retry_budget_takes_the_long_throttle_path(fake_time: FakeTime) -> None:
    """The write is not sent: it ends as TooManyRequests with reschedule_after the wait pacing would have imposed."""
    config = ThrottleConfig(enabled=True, writes=BucketSpec(20, 1))
    with ArmEmulator(throttle=config, clock=fake_time.clock, auto_create=True) as arm:
        client = _client(arm.url, fake_time, ARM_RETRY_MAX_SECONDS="0")
        client.update_run(_request())  # 19 left: below the reserve, paced at 10 × 2 ** 1.8 a second
        with pytest.raises(ArmError) as ended:
            client.update_run(_request())
        assert arm.stats()["patches"] == 1
    error = ended.value
    assert (error.code, error.retryable, error.status, error.attempts) == ("TooManyRequests", True, None, 0)
    assert error.reschedule_after == pytest.approx(1 / (10 * 2 ** 1.8))
    assert fake_time.sleeps == []
    # over HTTP it is the 429 ARM would have given (nothing was sent, so no ARM status in the outcome)
    assert isinstance(error, WritePaced) and error.http_status == 429 and error.retry_after == error.reschedule_after


def test_pacing_waits_are_taken_from_the_retry_budget(fake_time: FakeTime) -> None:
    """A write that waited its turn has that much less left: a Retry-After that would have fit now reschedules."""
    config = ThrottleConfig(enabled=True, writes=BucketSpec(20, 1))
    with ArmEmulator(throttle=config, clock=fake_time.clock) as arm:
        client = _client(arm.url, fake_time, ARM_RETRY_MAX_SECONDS="1", ARM_WRITE_RESERVE="100000")
        client.update_run(_request())  # 19 left of a reserve of 100000: gain 1/4, a turn every 0.4 s
        arm.script(SEED_RUN, Fault.status(429, retry_after="1"))
        with pytest.raises(ArmError) as ended:  # waits 0.4 s for its turn, then 1 s is more than the 0.6 s left
            client.update_run(_request())
    assert sum(fake_time.sleeps) == pytest.approx(1 / (10 * 2 ** ((19 - 50_000) / 25_000)))
    assert ended.value.reschedule_after == 1.0


def test_a_write_without_an_answer_frees_its_turn() -> None:
    """A write that found no server is no longer in flight: it does not hold the pace down."""
    client = _client(support.closed_port_url(), ARM_MAX_ATTEMPTS="1")
    with pytest.raises(ArmUnavailable):
        client.update_run(_request())
    assert client.pacer.view(SUB).in_flight == 0


def _drain(arm: ArmEmulator, reserve: str, threads: int = 8, writes: int = 80) -> dict[str, int]:
    """`writes` updates from `threads` threads of one client; the emulator's counts of answers."""
    arm.reset()
    arm.set_throttling(True, writes=(20, 40), reads=(1000, 1000))
    client = _client(arm.url, ARM_WRITE_RESERVE=reserve, ARM_MAX_ATTEMPTS="20", ARM_RETRY_MAX_SECONDS="60")
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda n: client.update_run(_request(f"paced-{n % 16}")), range(writes)))
    assert len(results) == writes
    stats = arm.stats()
    return {"patches": stats["patches"], "throttled": stats["throttled"]}


def test_pacing_keeps_many_threads_off_the_empty_bucket() -> None:
    """Eight threads on a bucket of 20 refilled 40 a second: unpaced they meet 429s by the dozen, paced (almost) none."""
    with ArmEmulator(auto_create=True) as arm:
        unpaced = _drain(arm, reserve="0")
        paced = _drain(arm, reserve="20")
    assert unpaced["patches"] == paced["patches"] == 80
    assert unpaced["throttled"] >= 20  # the setup does throttle
    assert paced["throttled"] * 10 <= unpaced["throttled"]
    assert paced["throttled"] <= 2


@pytest.fixture
def bus(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> RecordingServiceBus:
    """The app wired to a recording Service Bus (topic and queue), pacing every write and no retry budget."""
    monkeypatch.delenv("OUTCOME_FILE")
    for name, value in {"OUTCOME_TOPIC_NAME": TOPIC, "ServiceBusConnection__fullyQualifiedNamespace": "sb.servicebus.windows.net",
                        "ARM_WRITE_RESERVE": "100000", "ARM_RETRY_MAX_SECONDS": "0"}.items():
        monkeypatch.setenv(name, value)
    return RecordingServiceBus()


def _message(message_id: str) -> ServiceBusMessage:
    event = {"subscriptionId": SUB, "resourceGroupName": GROUP, "registryName": REGISTRY, "runId": SEED_RUN,
             "isArchiveEnabled": True}
    return ServiceBusMessage(body=json.dumps(event).encode(), message_id=message_id, correlation_id=None,
                             content_type="application/json", delivery_count=1, application_properties={}, user_properties={})


def test_a_queue_message_pacing_would_hold_past_its_budget_is_rescheduled(arm: ArmEmulator, bus: RecordingServiceBus) -> None:
    """The queue function completes it: a copy goes onto the queue for later, no outcome yet, no PATCH sent."""
    arm.set_throttling(True, writes=(3, 0.001))
    functions = support.functions(
        publisher_factory=lambda s: ServiceBusPublisher(bus.client, s.outcome_topic_name or ""),
        scheduler_factory=lambda s: ServiceBusScheduler(bus.client, s.archive_queue_name or ""),
    )
    functions["archive_queue"](_message("first"))  # 2 left of a reserve of 100000: a turn every 0.4 s
    assert functions["archive_queue"](_message("second")) is None
    (scheduled,) = [sent for sent in bus.sent if sent.entity == QUEUE]
    assert scheduled.message.message_id == "second:rescheduled:1"
    assert len(bus.messages(TOPIC)) == 1 and arm.stats()["patches"] == 1
