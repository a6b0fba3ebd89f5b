"""The Functions host stand-in's queue and timer triggers, in process, against the local Service Bus emulator.

Each test builds a small FunctionApp of its own (or the real one) and drives it through `FunctionsHost`:
the real azure-servicebus receiver in peek-lock, azure-functions' own converters, host.json's options.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import azure.functions.servicebus
import azure.functions.timer
import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from emulators.host import BindingError, FunctionsHost, HostOptions
from emulators.host.hostjson import parse_timespan
from emulators.servicebus import ServiceBusEmulator

QUEUE, SHORT_LOCK = "work", "short-lock"
WAIT = 30.0  # seconds a test waits for an observable state before it fails (never a pass condition)

CONFIG: dict[str, Any] = {
    "UserConfig": {
        "Namespaces": [
            {
                "Name": "sbemulatorns",
                "Queues": [
                    {"Name": QUEUE, "Properties": {"LockDuration": "PT30S", "MaxDeliveryCount": 5}},
                    {"Name": SHORT_LOCK, "Properties": {"LockDuration": "PT4S", "MaxDeliveryCount": 5}},
                ],
                "Topics": [],
            }
        ]
    }
}


@pytest.fixture
def broker() -> Iterator[ServiceBusEmulator]:
    """A Service Bus emulator on a free loopback port with a normal and a short-lock queue."""
    with ServiceBusEmulator(CONFIG) as emulator:
        yield emulator


def settings_for(broker: ServiceBusEmulator, queue: str = QUEUE) -> dict[str, str]:
    """App settings as the host would have them: the queue name and the connection string."""
    return {"WORK_QUEUE": queue, "ServiceBusConnection": broker.connection_string}


def queue_app(handler: Callable[[func.ServiceBusMessage], None]) -> func.FunctionApp:
    """A one-function app: `handler` on %WORK_QUEUE% through ServiceBusConnection."""
    app = func.FunctionApp()

    @app.function_name("on_work")
    @app.service_bus_queue_trigger(arg_name="msg", queue_name="%WORK_QUEUE%", connection="ServiceBusConnection")
    def on_work(msg: func.ServiceBusMessage) -> None:
        handler(msg)

    return app


def send(broker: ServiceBusEmulator, queue: str, *messages: ServiceBusMessage) -> None:
    """Send with the real client."""
    with ServiceBusClient.from_connection_string(broker.connection_string) as client, client.get_queue_sender(queue) as sender:
        sender.send_messages(list(messages))


class Recorder:
    """What the function saw, with a condition to wait on."""

    def __init__(self) -> None:
        self.seen: list[func.ServiceBusMessage] = []
        self.changed = threading.Condition()

    def add(self, msg: func.ServiceBusMessage) -> None:
        with self.changed:
            self.seen.append(msg)
            self.changed.notify_all()

    def wait_for(self, count: int) -> list[func.ServiceBusMessage]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.seen) >= count, WAIT), f"saw {len(self.seen)} of {count}"
            return list(self.seen)


def test_queue_input_is_built_by_azure_functions_own_converter(broker: ServiceBusEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The function gets azure-functions' ServiceBusMessage, made by its converter, with the message's properties."""
    converter = azure.functions.servicebus.ServiceBusMessageInConverter
    decode, decoded = converter.decode.__func__, []  # type: ignore[attr-defined]

    def spy(cls: type, data: Any, *, trigger_metadata: Any) -> Any:
        decoded.append(trigger_metadata)
        return decode(cls, data, trigger_metadata=trigger_metadata)

    monkeypatch.setattr(converter, "decode", classmethod(spy))
    recorder = Recorder()
    properties = {"source": "test", "count": 7, "flag": True, "ratio": 0.5}
    with FunctionsHost(queue_app(recorder.add), settings_for(broker), port=0):
        send(broker, QUEUE, ServiceBusMessage(b'{"a": 1}', message_id="m-1", correlation_id="c-1", subject="Greeting",
                                              content_type="application/json", application_properties=properties))
        (msg,) = recorder.wait_for(1)

    assert type(msg) is azure.functions.servicebus.ServiceBusMessage and len(decoded) == 1
    assert msg.get_body() == b'{"a": 1}'
    assert (msg.message_id, msg.correlation_id, msg.content_type, msg.subject, msg.label) == ("m-1", "c-1", "application/json",
                                                                                              "Greeting", "Greeting")
    assert msg.application_properties == properties == msg.user_properties
    assert msg.delivery_count == 1 and msg.sequence_number >= 1
    assert isinstance(msg.enqueued_time_utc, datetime) and msg.enqueued_time_utc.tzinfo is not None
    assert msg.lock_token and len(msg.lock_token) == 36
    assert {"MessageId", "DeliveryCount", "SequenceNumber", "LockToken", "UserProperties"} <= set(msg.metadata)


def test_a_raise_abandons_the_message_and_service_bus_redelivers_it(broker: ServiceBusEmulator) -> None:
    """autoCompleteMessages: a raise abandons; the redelivery has delivery_count 2 and its return completes it."""
    recorder = Recorder()

    def fail_first(msg: func.ServiceBusMessage) -> None:
        recorder.add(msg)
        if msg.delivery_count == 1:
            raise RuntimeError("transient")

    with FunctionsHost(queue_app(fail_first), settings_for(broker), port=0) as host:
        send(broker, QUEUE, ServiceBusMessage(b"{}", message_id="flaky"))
        seen = recorder.wait_for(2)
        settlement = host.listeners["on_work"].settlement
        assert settlement.wait_for(lambda s: s.completed == 1, WAIT)

    assert [(m.message_id, m.delivery_count) for m in seen] == [("flaky", 1), ("flaky", 2)]
    assert (settlement.abandoned, settlement.completed) == (1, 1)
    assert broker.messages(QUEUE) == []


def test_a_return_completes_the_message(broker: ServiceBusEmulator) -> None:
    """A function that returns has its message completed: the queue is empty and it ran once."""
    recorder = Recorder()
    with FunctionsHost(queue_app(recorder.add), settings_for(broker), port=0) as host:
        send(broker, QUEUE, *(ServiceBusMessage(b"{}", message_id=f"ok-{n}") for n in range(5)))
        settlement = host.listeners["on_work"].settlement
        assert settlement.wait_for(lambda s: s.completed == 5, WAIT)

    assert sorted(m.message_id for m in recorder.seen) == [f"ok-{n}" for n in range(5)]
    assert broker.messages(QUEUE) == [] and settlement.abandoned == 0


def test_invocations_run_concurrently_up_to_max_concurrent_calls(broker: ServiceBusEmulator) -> None:
    """With maxConcurrentCalls 2, two invocations run at once and never a third."""
    running, peak, lock = 0, 0, threading.Lock()
    two_running, release = threading.Event(), threading.Event()

    def hold(msg: func.ServiceBusMessage) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            if running == 2:
                two_running.set()
        release.wait(WAIT)
        with lock:
            running -= 1

    options = HostOptions(max_concurrent_calls=2)
    with FunctionsHost(queue_app(hold), settings_for(broker), options=options, port=0) as host:
        send(broker, QUEUE, *(ServiceBusMessage(b"{}", message_id=f"c-{n}") for n in range(6)))
        assert two_running.wait(WAIT)
        locked = sum(m["locked"] for m in broker.messages(QUEUE))
        release.set()
        assert host.listeners["on_work"].settlement.wait_for(lambda s: s.completed == 6, WAIT)

    assert peak == 2 and locked == 2


def test_locks_are_renewed_while_the_function_runs_longer_than_the_lock(broker: ServiceBusEmulator) -> None:
    """A 4 s lock and a 6 s invocation: the lock is renewed, nothing is redelivered, the return completes."""
    recorder = Recorder()
    never = threading.Event()

    def long_call(msg: func.ServiceBusMessage) -> None:
        recorder.add(msg)
        never.wait(6.0)  # stands for a long ARM call: one and a half lock durations

    with FunctionsHost(queue_app(long_call), settings_for(broker, SHORT_LOCK), port=0) as host:
        send(broker, SHORT_LOCK, ServiceBusMessage(b"{}", message_id="slow"))
        settlement = host.listeners["on_work"].settlement
        assert settlement.wait_for(lambda s: s.completed + s.failed_settlements >= 1, WAIT)

    assert [(m.message_id, m.delivery_count) for m in recorder.seen] == [("slow", 1)]
    assert (settlement.completed, settlement.failed_settlements) == (1, 0)
    assert broker.messages(SHORT_LOCK) == []


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"ServiceBusConnection": "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=a;SharedAccessKey=b;"}, "%WORK_QUEUE%"),
        ({"WORK_QUEUE": QUEUE}, "ServiceBusConnection__fullyQualifiedNamespace"),
    ],
    ids=["queue-setting-missing", "connection-missing"],
)
def test_unresolvable_bindings_fail_at_start_naming_the_setting(settings: dict[str, str], named: str) -> None:
    """A %setting% that is not set, or a connection with neither form, stops the host before it serves."""
    with pytest.raises(BindingError, match=named):
        FunctionsHost(queue_app(lambda msg: None), settings, port=0)


def test_auto_complete_off_is_refused(broker: ServiceBusEmulator) -> None:
    """autoCompleteMessages: false would leave settlement to the function; the stand-in refuses it at start."""
    with pytest.raises(BindingError, match="autoCompleteMessages"):
        FunctionsHost(queue_app(lambda msg: None), settings_for(broker), options=HostOptions(auto_complete_messages=False), port=0)


def test_host_json_options_are_read_as_the_host_reads_them() -> None:
    """The repository's host.json: route prefix api, 16 concurrent calls, auto-complete, 15 minutes of lock renewal."""
    options = HostOptions.load(Path(__file__).resolve().parents[1] / "host.json")

    assert options == HostOptions(route_prefix="api", max_concurrent_calls=16, auto_complete_messages=True,
                                  max_auto_lock_renewal_duration=900.0, prefetch_count=0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:15:00", 900.0), ("1.02:03:04", 93784.0), ("00:00:00.5", 0.5), ("10:00:00", 36000.0)],
    ids=["minutes", "days", "fraction", "hours"],
)
def test_timespans_are_parsed_as_dotnet_writes_them(text: str, seconds: float) -> None:
    """host.json durations are .NET TimeSpans `[d.]hh:mm:ss[.f]`."""
    assert parse_timespan(text) == seconds


def test_the_identity_form_of_the_connection_is_used_when_no_connection_string_is_set(broker: ServiceBusEmulator) -> None:
    """ServiceBusConnection__fullyQualifiedNamespace (with __credential) makes a token-credential client, as the host does."""
    from emulators.host.connections import open_servicebus

    env = {"ServiceBusConnection__fullyQualifiedNamespace": "example.servicebus.windows.net",
           "ServiceBusConnection__credential": "managedidentity"}
    client = open_servicebus(env, "ServiceBusConnection")
    try:
        assert client.fully_qualified_namespace == "example.servicebus.windows.net"
        assert type(client._credential).__name__ == "ManagedIdentityCredential"
    finally:
        client.close()


def timer_app(schedule: str, handler: Callable[[func.TimerRequest], Any]) -> func.FunctionApp:
    """A one-function app: `handler` on a timer with `schedule`."""
    app = func.FunctionApp()

    @app.function_name("tick")
    @app.timer_trigger(arg_name="timer", schedule=schedule)
    def tick(timer: func.TimerRequest) -> None:
        handler(timer)

    return app


def test_fire_timer_passes_azure_functions_timer_request() -> None:
    """fire_timer runs the function now with azure-functions' TimerRequest, the next firing in its status."""
    seen: list[func.TimerRequest] = []
    host = FunctionsHost(timer_app("%TICK_SCHEDULE%", seen.append), {"TICK_SCHEDULE": "0 0 3 * * *"}, port=0, timers=False)
    with host:
        host.fire_timer("tick")
        host.fire_timer("tick")
        with pytest.raises(KeyError):
            host.fire_timer("tock")

    assert [type(t) for t in seen] == [azure.functions.timer.TimerRequest] * 2
    assert seen[0].past_due is False
    assert seen[0].schedule_status["Last"] is None and seen[1].schedule_status["Last"] is not None
    assert seen[0].schedule_status["Next"].endswith("T03:00:00.000000Z")
    assert host.timers["tick"].expression == "0 0 3 * * *"


def test_the_timer_fires_on_its_schedule() -> None:
    """A schedule of every second fires by itself; runs never overlap."""
    fired = threading.Semaphore(0)
    with FunctionsHost(timer_app("* * * * * *", lambda timer: fired.release()), {}, port=0):
        assert fired.acquire(timeout=WAIT) and fired.acquire(timeout=WAIT)


def test_a_bad_schedule_stops_the_host_at_start() -> None:
    """A schedule that is not NCRONTAB fails at start, as the host refuses the function."""
    with pytest.raises(ValueError, match="6 fields"):
        FunctionsHost(timer_app("0 */5 * * *", lambda timer: None), {}, port=0)
