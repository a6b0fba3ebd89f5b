"""The emulator against the real service's documented behaviour: each test cites the rule it checks.

Driven by the real `azure-servicebus` client (sync and async), as in tests/test_servicebus_emulator.py.
"""

from __future__ import annotations

import datetime as dt

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode, ServiceBusSubQueue

from emulators.servicebus import ConfigError, ServiceBusEmulator
from emulators.servicebus.sqlfilter import parse_sql_filter
from tests.test_servicebus_emulator import CONFIG, QUEUE, SHORT, TOPIC, Driver, Skew, emulator, sb, skew, wait_for  # noqa: F401

_DELETE = ServiceBusReceiveMode.RECEIVE_AND_DELETE


def test_delivery_count_grows_on_abandon_and_on_lock_expiry(sb: Driver, emulator: ServiceBusEmulator) -> None:
    """Delivery count is incremented when a lock expires or the message is abandoned.

    https://learn.microsoft.com/azure/service-bus-messaging/message-transfers-locks-settlement#peeklock
    """
    sb.send(ServiceBusMessage("x", message_id="dc"), entity=SHORT)
    with sb.receiver(SHORT, prefetch_count=0) as receiver:
        (first,) = receiver.receive()
        receiver.abandon_message(first)  # +1 by abandon
    wait_for(lambda: emulator.messages(SHORT) and emulator.messages(SHORT)[0]["delivery_count"] == 1, "the abandon")
    with sb.receiver(SHORT, prefetch_count=0) as receiver:
        (second,) = receiver.receive()
        assert second.delivery_count == 1
    # the second lock is left to expire: that is the MaxDeliveryCount (2) delivery, so it is dead-lettered
    (dead,) = wait_for(lambda: emulator.dead_letters(SHORT), "the lock to expire into the DLQ")
    assert (dead["delivery_count"], dead["dead_letter_reason"]) == (2, "MaxDeliveryCountExceeded")


def test_max_delivery_count_exceeded_reason(sb: Driver) -> None:
    """A message delivered MaxDeliveryCount times without settlement goes to the DLQ with reason MaxDeliveryCountExceeded.

    https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues#maximum-delivery-count
    """
    sb.send(ServiceBusMessage("poison", message_id="mdc"))
    with sb.receiver() as receiver:
        for _ in range(3):  # MaxDeliveryCount 3 in the test config
            (message,) = receiver.receive()
            receiver.abandon_message(message)
    with sb.receiver(sub_queue=ServiceBusSubQueue.DEAD_LETTER, receive_mode=_DELETE) as dlq:
        (dead,) = dlq.receive()
    assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"


def test_dead_letter_queue_is_a_sub_queue_of_a_subscription(sb: Driver, emulator: ServiceBusEmulator) -> None:
    """Each queue and subscription has its own `$deadletterqueue`, addressed as `<topic>/Subscriptions/<sub>/$deadletterqueue`.

    https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues#path-to-the-dead-letter-queue
    """
    sb.send(ServiceBusMessage("o", message_id="sub-dl", application_properties={"outcome": "failed"}), topic=True)
    with sb.receiver(TOPIC, "failed") as receiver:
        (message,) = receiver.receive()
        receiver.dead_letter_message(message, reason="Checked", error_description="by hand")
    with sb.receiver(TOPIC, "failed", sub_queue=ServiceBusSubQueue.DEAD_LETTER, receive_mode=_DELETE) as dlq:
        (dead,) = dlq.receive()
    assert emulator.dead_letters(f"{TOPIC}/Subscriptions/all") == []  # the sibling's copy is untouched
    assert len(emulator.messages(f"{TOPIC}/Subscriptions/all")) == 1
    assert (dead.message_id, dead.dead_letter_reason, dead.dead_letter_error_description) == ("sub-dl", "Checked", "by hand")


def test_duplicate_detection_drops_a_repeated_message_id_in_the_window(sb: Driver, emulator: ServiceBusEmulator) -> None:
    """With duplicate detection on, a message with a MessageId seen within the window is accepted and dropped.

    https://learn.microsoft.com/azure/service-bus-messaging/duplicate-detection#how-it-works
    """
    for _ in range(3):
        sb.send(ServiceBusMessage("same", message_id="once"), topic=True)
    assert len(emulator.messages(f"{TOPIC}/Subscriptions/all")) == 1
    assert emulator.duplicates_dropped(TOPIC) == 2


def test_duplicate_window_expiry_accepts_the_id_again(emulator: ServiceBusEmulator) -> None:
    """A MessageId is remembered only for DuplicateDetectionHistoryTimeWindow; after it the id is new again.

    https://learn.microsoft.com/azure/service-bus-messaging/duplicate-detection#duplicate-detection-window-size
    """
    from proton import Message

    sender = emulator.namespace.sender(QUEUE)  # driven directly, on its own clock values
    encoded = Message(id="w", body="x").encode()
    first, repeat = sender.send(encoded, 1000.0), sender.send(encoded, 1000.0 + 59)
    after = sender.send(encoded, 1000.0 + 61)  # window PT1M in the test config
    assert (first is not None, repeat is None, after is not None) == (True, True, True)


def test_scheduled_message_has_a_sequence_number_and_appears_at_its_time(
    sb: Driver, emulator: ServiceBusEmulator, skew: Skew
) -> None:
    """Scheduled messages get their sequence number when scheduled and only materialize in the queue at the defined time.

    https://learn.microsoft.com/azure/service-bus-messaging/message-sequencing#scheduled-messages
    """
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10)
    number = sb.schedule(ServiceBusMessage("later", message_id="sched"), later)
    sb.send(ServiceBusMessage("now", message_id="now"))
    now_seq = emulator.messages(QUEUE)[0]["sequence_number"]
    assert number < now_seq  # numbered at scheduling time, before the later send
    assert [m["message_id"] for m in emulator.messages(QUEUE)] == ["now"]
    skew.seconds = 601  # past the scheduled time, well inside the other message's hour of time to live
    wait_for(lambda: len(emulator.messages(QUEUE)) == 2, "the scheduled time")
    assert [m["message_id"] for m in emulator.messages(QUEUE)] == ["now", "sched"]


def test_sequence_numbers_increase_per_entity(sb: Driver) -> None:
    """The sequence number is a unique 64-bit integer assigned as the message is accepted, increasing.

    https://learn.microsoft.com/azure/service-bus-messaging/message-sequencing
    """
    sb.send([ServiceBusMessage(str(i), message_id=f"seq-{i}") for i in range(3)])
    with sb.receiver(receive_mode=_DELETE) as receiver:
        numbers = [m.sequence_number for m in receiver.receive(3)]
    assert numbers == sorted(set(numbers)) and len(numbers) == 3


def test_peek_does_not_lock_or_count_a_delivery(sb: Driver, emulator: ServiceBusEmulator) -> None:
    """Peek returns messages without locking them and without incrementing the delivery count.

    https://learn.microsoft.com/azure/service-bus-messaging/message-browsing
    """
    sb.send(ServiceBusMessage("p", message_id="peek"))
    with sb.receiver() as receiver:
        receiver.peek_messages(max_message_count=5)
        receiver.peek_messages(max_message_count=5)
    assert [(m["locked"], m["delivery_count"]) for m in emulator.messages(QUEUE)] == [(False, 0)]


@pytest.mark.parametrize(
    ("expression", "props", "system", "expected"),
    [
        ("outcome = 'failed'", {"outcome": "failed"}, {}, True),
        ("outcome = 'failed'", {}, {}, False),
        ("NOT outcome = 'failed'", {}, {}, False),
        ("outcome IS NULL", {}, {}, True),
        ("n > 1", {"n": "2"}, {}, False),
        ("sys.Label = 'a' OR x = 1", {"x": 1}, {}, True),
        ("sys.MessageId = 'm'", {}, {"messageid": "m"}, True),
        ("a = 'it''s'", {"a": "it's"}, {}, True),
    ],
    ids=[
        "equal", "missing-is-unknown", "not-unknown-is-unknown", "is-null",
        "types-do-not-mix", "or-unknown-true", "sys-message-id", "escaped-quote",
    ],
)
def test_sql_filter_three_valued_logic(expression: str, props: dict, system: dict, expected: bool) -> None:
    """A missing property evaluates to unknown, and a rule matches only when its filter is true.

    https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-sql-filter
    """
    assert parse_sql_filter(expression)(props, system) is expected


@pytest.mark.parametrize(
    "change",
    [
        {"RequiresSession": True},
        {"ForwardTo": "elsewhere"},
        {"LockDuration": "5 minutes"},
        {"Partitioned": True},
    ],
    ids=["sessions", "forwarding", "bad-duration", "unknown-property"],
)
def test_unsupported_configuration_fails_at_start(change: dict) -> None:
    """Anything the emulator does not implement is refused when it starts, not ignored.

    https://learn.microsoft.com/azure/service-bus-messaging/overview-emulator#known-limitations
    """
    import copy

    config = copy.deepcopy(CONFIG)
    config["UserConfig"]["Namespaces"][0]["Queues"][0]["Properties"].update(change)
    with pytest.raises(ConfigError):
        ServiceBusEmulator(config)


def test_unsupported_filter_fails_at_start() -> None:
    """LIKE and other grammar outside the supported subset is refused at start.

    https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-sql-filter
    """
    import copy

    config = copy.deepcopy(CONFIG)
    rule = config["UserConfig"]["Namespaces"][0]["Topics"][0]["Subscriptions"][1]["Rules"][0]
    rule["Properties"]["SqlFilter"]["SqlExpression"] = "outcome LIKE 'fail%'"
    with pytest.raises(ConfigError, match="LIKE"):
        ServiceBusEmulator(config)
