"""The local Service Bus emulator, driven by the real `azure-servicebus` client, sync and async.

Every test runs twice (`[sync]`, `[async]`): the same scenario through `azure.servicebus` and
`azure.servicebus.aio`, over AMQP on loopback against `emulators.servicebus`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiveMode, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import (
    MessageLockLostError,
    ServiceBusAuthenticationError,
    ServiceBusError,
)

from emulators.servicebus import SendRejection, ServiceBusEmulator

QUEUE = "work"
SHORT = "short-lock"
TOPIC = "outcomes"
_PEEK_LOCK, _DELETE = ServiceBusReceiveMode.PEEK_LOCK, ServiceBusReceiveMode.RECEIVE_AND_DELETE

def _sql_rule(name: str, expression: str) -> dict[str, Any]:
    """A Config.json rule with a SQL filter."""
    return {"Name": name, "Properties": {"FilterType": "Sql", "SqlFilter": {"SqlExpression": expression}}}


CONFIG: dict[str, Any] = {
    "UserConfig": {
        "Namespaces": [
            {
                "Name": "sbemulatorns",
                "Queues": [
                    {
                        "Name": QUEUE,
                        "Properties": {
                            "LockDuration": "PT30S",
                            "MaxDeliveryCount": 3,
                            "RequiresDuplicateDetection": True,
                            "DuplicateDetectionHistoryTimeWindow": "PT1M",
                            "DeadLetteringOnMessageExpiration": True,
                        },
                    },
                    {"Name": SHORT, "Properties": {"LockDuration": "PT1S", "MaxDeliveryCount": 2}},
                ],
                "Topics": [
                    {
                        "Name": TOPIC,
                        "Properties": {"RequiresDuplicateDetection": True, "DuplicateDetectionHistoryTimeWindow": "PT1M"},
                        "Subscriptions": [
                            {"Name": "all"},
                            {
                                "Name": "failed",
                                "Rules": [_sql_rule("f", "outcome = 'failed'")],
                            },
                            {
                                "Name": "slow-or-labelled",
                                "Rules": [
                                    _sql_rule("slow", "seconds >= 10 AND outcome IN ('succeeded', 'failed')"),
                                    _sql_rule("label", "sys.Label = 'urgent' OR sys.CorrelationId IS NOT NULL"
                                              " AND NOT (outcome <> 'x')"),
                                ],
                            },
                        ],
                    }
                ],
            }
        ]
    }
}


class Driver:
    """One client flavour: calls the same method names on `azure.servicebus` or `azure.servicebus.aio` objects."""

    def __init__(self, client: Any, run: Callable[[Any], Any], flavour: str) -> None:
        self.client, self.run, self.flavour = client, run, flavour

    def send(self, messages: Any, *, topic: bool = False, entity: str | None = None) -> None:
        """Send one message, a list, or a batch built from a list (`("batch", [...])`)."""
        name = entity or (TOPIC if topic else QUEUE)
        sender = self.client.get_topic_sender(name) if topic else self.client.get_queue_sender(name)
        try:
            if isinstance(messages, tuple) and messages[0] == "batch":
                batch = self.run(sender.create_message_batch())
                for message in messages[1]:
                    batch.add_message(message)
                self.run(sender.send_messages(batch))
            else:
                self.run(sender.send_messages(messages))
        finally:
            self.run(sender.close())

    def schedule(self, message: ServiceBusMessage, at: dt.datetime, *, topic: bool = False) -> int:
        """Schedule through `$management`; return the sequence number."""
        sender = self.client.get_topic_sender(TOPIC) if topic else self.client.get_queue_sender(QUEUE)
        try:
            return self.run(sender.schedule_messages(message, at))[0]
        finally:
            self.run(sender.close())

    def cancel(self, sequence_number: int, *, topic: bool = False) -> None:
        """Cancel a scheduled message through `$management`."""
        sender = self.client.get_topic_sender(TOPIC) if topic else self.client.get_queue_sender(QUEUE)
        try:
            self.run(sender.cancel_scheduled_messages(sequence_number))
        finally:
            self.run(sender.close())

    def receiver(self, entity: str = QUEUE, subscription: str | None = None, **kwargs: Any) -> Receiver:
        """A receiver on a queue or subscription (kwargs: receive_mode, sub_queue)."""
        if subscription is None:
            raw = self.client.get_queue_receiver(entity, **kwargs)
        else:
            raw = self.client.get_subscription_receiver(entity, subscription, **kwargs)
        return Receiver(raw, self.run)


class Receiver:
    """A receiver whose calls run through the driver's flavour."""

    def __init__(self, raw: Any, run: Callable[[Any], Any]) -> None:
        self.raw, self.run = raw, run

    def receive(self, count: int = 1, wait: float = 5.0) -> list[Any]:
        """Receive until `count` messages arrived or one wait passed with none."""
        got: list[Any] = []
        while len(got) < count:
            more = self.run(self.raw.receive_messages(max_message_count=count - len(got), max_wait_time=wait))
            if not more:
                break
            got.extend(more)
        return got

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self.raw.close())

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.raw, name)
        return lambda *a, **k: self.run(method(*a, **k))


class Skew:
    """How far the emulator's clock runs ahead of real time (tests move it instead of sleeping)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return time.time() + self.seconds


@pytest.fixture
def skew() -> Skew:
    """The emulator's clock offset."""
    return Skew()


@pytest.fixture
def emulator(skew: Skew) -> Iterator[ServiceBusEmulator]:
    """The emulator on a free loopback port with the test entities (short locks)."""
    with ServiceBusEmulator(CONFIG, clock=skew) as running:
        yield running


def _drivers(make_sync: Callable[[], Any], make_async: Callable[[], Any], flavour: str) -> Iterator[Driver]:
    if flavour == "sync":
        client = make_sync()
        yield Driver(client, lambda value: value, flavour)
        client.close()
        return
    loop = asyncio.new_event_loop()
    client = make_async()
    yield Driver(client, loop.run_until_complete, flavour)
    loop.run_until_complete(client.close())
    loop.close()


@pytest.fixture(params=["sync", "async"])
def sb(request: pytest.FixtureRequest, emulator: ServiceBusEmulator) -> Iterator[Driver]:
    """The real client from the emulator's connection string (UseDevelopmentEmulator=true: plain AMQP)."""
    cs = emulator.connection_string
    yield from _drivers(
        lambda: ServiceBusClient.from_connection_string(cs, retry_total=1, retry_backoff_factor=0.05),
        lambda: AsyncServiceBusClient.from_connection_string(cs, retry_total=1, retry_backoff_factor=0.05),
        request.param,
    )


def wait_for(condition: Callable[[], Any], what: str, attempts: int = 2000) -> Any:
    """Poll observable emulator state until `condition` holds (the reactor ticks every 20 ms)."""
    for _ in range(attempts):
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"never observed: {what}")


# ---- sending ------------------------------------------------------------------------------------------


def test_properties_arrive_exactly_as_sent(sb: Driver) -> None:
    """Message id, correlation id, subject, content type and typed application properties survive the broker."""
    props = {"outcome": "failed", "attempt": 3, "ratio": 0.5, "flag": True, "raw": b"\x00\x01"}
    sent = ServiceBusMessage(
        b'{"a":1}', message_id="m-1", correlation_id="c-1", subject="archive", content_type="application/json",
        application_properties=props,
    )
    sb.send(sent)
    with sb.receiver(receive_mode=_DELETE) as receiver:
        (message,) = receiver.receive()
    ids = (message.message_id, message.correlation_id, message.subject, message.content_type)
    assert ids == ("m-1", "c-1", "archive", "application/json")
    assert b"".join(message.body) == b'{"a":1}'
    received = {k.decode(): v for k, v in message.application_properties.items()}
    # pyamqp hands strings back as bytes (and rewrites the caller's dict), so the expectation is spelled out.
    assert received == {"outcome": b"failed", "attempt": 3, "ratio": 0.5, "flag": True, "raw": b"\x00\x01"}
    assert [type(received[k]) for k in ("attempt", "ratio", "flag")] == [int, float, bool]
    assert message.sequence_number >= 1 and message.enqueued_time_utc is not None


@pytest.mark.parametrize("shape", ["list", "batch"], ids=["list", "batch"])
def test_batches_store_every_message_in_order(sb: Driver, emulator: ServiceBusEmulator, shape: str) -> None:
    """A list or a ServiceBusMessageBatch is stored as separate messages, sequence numbers ascending."""
    messages = [ServiceBusMessage(f"m{i}", message_id=f"id-{i}", application_properties={"i": i}) for i in range(5)]
    sb.send(("batch", messages) if shape == "batch" else messages)
    stored = emulator.messages(QUEUE)
    assert [m["message_id"] for m in stored] == [f"id-{i}" for i in range(5)]
    assert [m["sequence_number"] for m in stored] == sorted(m["sequence_number"] for m in stored)
    with sb.receiver(receive_mode=_DELETE) as receiver:
        assert [str(m) for m in receiver.receive(5)] == [f"m{i}" for i in range(5)]


def test_duplicate_message_id_is_dropped_within_the_window(sb: Driver, emulator: ServiceBusEmulator) -> None:
    """A second send with the same message id is accepted by the broker and dropped, once per id."""
    sb.send(ServiceBusMessage("first", message_id="dup"))
    sb.send([ServiceBusMessage("second", message_id="dup"), ServiceBusMessage("other", message_id="new")])
    assert [m["message_id"] for m in emulator.messages(QUEUE)] == ["dup", "new"]
    assert emulator.duplicates_dropped(QUEUE) == 1


def test_queue_without_duplicate_detection_keeps_repeats(sb: Driver, emulator: ServiceBusEmulator) -> None:
    """Duplicate detection is per entity: a queue without it keeps both copies."""
    sb.send([ServiceBusMessage("a", message_id="same"), ServiceBusMessage("b", message_id="same")], entity=SHORT)
    assert [m["message_id"] for m in emulator.messages(SHORT)] == ["same", "same"]


def test_unknown_entity_is_not_found(sb: Driver) -> None:
    """Sending to an entity the config does not declare fails."""
    with pytest.raises(ServiceBusError):
        sb.send(ServiceBusMessage("x"), entity="nope")


# ---- topics -------------------------------------------------------------------------------------------


# Each row: (message id, application properties, subject, correlation id, subscriptions that must get a copy).
FILTER_TABLE = [
    ("failed", {"outcome": "failed", "seconds": 1}, None, None, {"all", "failed"}),
    ("succeeded", {"outcome": "succeeded", "seconds": 1}, None, None, {"all"}),
    ("slow", {"outcome": "succeeded", "seconds": 12}, None, None, {"all", "slow-or-labelled"}),
    ("slow-failed", {"outcome": "failed", "seconds": 10.5}, None, None, {"all", "failed", "slow-or-labelled"}),
    ("not-in-list", {"outcome": "skipped", "seconds": 99}, None, None, {"all"}),
    ("label", {"seconds": 1}, "urgent", None, {"all", "slow-or-labelled"}),
    ("correlation-and-not", {"outcome": "x"}, None, "c", {"all", "slow-or-labelled"}),
    ("correlation-only", {"outcome": "y"}, None, "c", {"all"}),
    ("no-properties", {}, None, None, {"all"}),
]


def test_topic_copies_to_subscriptions_whose_rules_match(sb: Driver, emulator: ServiceBusEmulator) -> None:
    """Each subscription gets a copy when any of its SQL rules is true; no rules means every message (FILTER_TABLE)."""
    sb.send(
        [
            ServiceBusMessage("o", message_id=i, subject=s, correlation_id=c, application_properties=p)
            for i, p, s, c, _ in FILTER_TABLE
        ],
        topic=True,
    )
    names = ("all", "failed", "slow-or-labelled")
    held = {name: {m["message_id"] for m in emulator.messages(f"{TOPIC}/Subscriptions/{name}")} for name in names}
    got = {i: {name for name, ids in held.items() if i in ids} for i, *_ in FILTER_TABLE}
    assert got == {i: expected for i, *_, expected in FILTER_TABLE}


def test_subscription_receiver_gets_its_copy(sb: Driver) -> None:
    """A subscription receiver reads the topic's message with the same sequence number as its sibling's copy."""
    sb.send(ServiceBusMessage("o", message_id="o-2", application_properties={"outcome": "failed"}), topic=True)
    numbers = []
    for name in ("all", "failed"):
        with sb.receiver(TOPIC, name) as receiver:
            (message,) = receiver.receive()
            receiver.complete_message(message)
            numbers.append(message.sequence_number)
    assert numbers[0] == numbers[1]


# ---- peek-lock ----------------------------------------------------------------------------------------


def test_complete_removes_the_message_on_the_receive_link(sb: Driver, emulator: ServiceBusEmulator) -> None:
    """Completing settles on the link (no update-disposition fallback) and removes the message."""
    sb.send(ServiceBusMessage("x", message_id="c"))
    with sb.receiver() as receiver:
        (message,) = receiver.receive()
        assert emulator.messages(QUEUE)[0]["locked"] is True
        assert message.lock_token == uuid.UUID(bytes_le=message._delivery_tag)
        receiver.complete_message(message)
    assert emulator.messages(QUEUE) == []
    assert "com.microsoft:update-disposition" not in emulator.operations()


def test_abandon_redelivers_with_a_higher_delivery_count(sb: Driver) -> None:
    """Abandon unlocks the message; the next delivery carries delivery_count + 1."""
    sb.send(ServiceBusMessage("x", message_id="a"))
    counts = []
    with sb.receiver() as receiver:
        for _ in range(2):
            (message,) = receiver.receive()
            counts.append(message.delivery_count)
            receiver.abandon_message(message)
        (message,) = receiver.receive()
        counts.append(message.delivery_count)
        receiver.complete_message(message)
    assert counts == [0, 1, 2]


def test_max_delivery_count_moves_the_message_to_the_dead_letter_queue(sb: Driver, emulator: ServiceBusEmulator) -> None:
    """After MaxDeliveryCount abandons the message is in `$deadletterqueue` with reason MaxDeliveryCountExceeded."""
    sb.send(ServiceBusMessage("x", message_id="poison"))
    with sb.receiver() as receiver:
        for _ in range(3):
            (message,) = receiver.receive()
            receiver.abandon_message(message)
        assert receiver.receive(wait=0.5) == []
    with sb.receiver(sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        (dead,) = dlq.receive()
        dlq.complete_message(dead)
    assert (dead.message_id, dead.dead_letter_reason) == ("poison", "MaxDeliveryCountExceeded")
    assert emulator.dead_letters(QUEUE) == []


@pytest.mark.parametrize("via", ["link", "management"], ids=["link", "management"])
def test_dead_letter_keeps_reason_and_description(sb: Driver, emulator: ServiceBusEmulator, via: str) -> None:
    """Dead-lettering by the receiver (on the link or by update-disposition) keeps its reason and description."""
    sb.send(ServiceBusMessage("x", message_id="bad", application_properties={"n": 1}))
    with sb.receiver() as receiver:
        (message,) = receiver.receive()
        if via == "link":
            receiver.dead_letter_message(message, reason="InvalidEvent", error_description="no runId")
        else:
            details = {"deadletter-reason": "InvalidEvent", "deadletter-description": "no runId"}
            receiver._settle_message_via_mgmt_link("suspended", [message.lock_token], details)
    (dead,) = emulator.dead_letters(QUEUE)
    assert (dead["dead_letter_reason"], dead["dead_letter_description"]) == ("InvalidEvent", "no runId")
    with sb.receiver(sub_queue=ServiceBusSubQueue.DEAD_LETTER, receive_mode=_DELETE) as dlq:
        (got,) = dlq.receive()
    seen = (got.dead_letter_reason, got.dead_letter_error_description, got.application_properties[b"n"])
    assert seen == ("InvalidEvent", "no runId", 1)
    assert (emulator.operations().get("com.microsoft:update-disposition", 0) == 1) == (via == "management")


@pytest.mark.parametrize("status", ["completed", "abandoned"], ids=["complete", "abandon"])
def test_update_disposition_settles_by_lock_token(sb: Driver, emulator: ServiceBusEmulator, status: str) -> None:
    """`com.microsoft:update-disposition` completes or abandons the message its lock token names."""
    sb.send(ServiceBusMessage("x", message_id="u"))
    with sb.receiver() as receiver:
        (message,) = receiver.receive()
        receiver._settle_message_via_mgmt_link(status, [message.lock_token])
        stored = emulator.messages(QUEUE)
    assert stored == [] if status == "completed" else [(m["delivery_count"], m["locked"]) for m in stored] == [(1, False)]


def test_renew_lock_extends_locked_until(sb: Driver) -> None:
    """`com.microsoft:renew-lock` moves locked_until forward."""
    sb.send(ServiceBusMessage("x", message_id="r"))
    with sb.receiver() as receiver:
        (message,) = receiver.receive()
        before = message.locked_until_utc
        wait_for(lambda: dt.datetime.now(dt.timezone.utc) > before - dt.timedelta(seconds=29.9), "time to pass")
        after = receiver.renew_message_lock(message)
        receiver.complete_message(message)
    assert after > before


def test_expired_lock_redelivers_and_settling_it_reports_lock_lost(sb: Driver, emulator: ServiceBusEmulator) -> None:
    """A lock that expires unlocks the message with delivery_count + 1; completing the stale one fails."""
    sb.send(ServiceBusMessage("x", message_id="slow"), entity=SHORT)
    with sb.receiver(SHORT, prefetch_count=0) as receiver:
        (first,) = receiver.receive()
        wait_for(lambda: emulator.messages(SHORT)[0]["delivery_count"] == 1, "the lock to expire")
        # The client refuses to settle a lock it knows has expired; move its view on so the broker answers.
        first._expiry = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)
        with pytest.raises(MessageLockLostError):
            receiver.complete_message(first)
        (second,) = receiver.receive()
        receiver.complete_message(second)
    assert (first.delivery_count, second.delivery_count) == (0, 1)


def test_receive_and_delete_removes_on_delivery(sb: Driver, emulator: ServiceBusEmulator) -> None:
    """In receive-and-delete mode the message is gone once delivered; no lock token."""
    sb.send(ServiceBusMessage("x", message_id="d"))
    with sb.receiver(receive_mode=_DELETE) as receiver:
        (message,) = receiver.receive()
    assert emulator.messages(QUEUE) == []
    assert message.lock_token is None


def test_peek_browses_without_locking_from_a_sequence_number(sb: Driver, emulator: ServiceBusEmulator) -> None:
    """`com.microsoft:peek-message` returns messages in sequence order from the given number, unlocked."""
    sb.send([ServiceBusMessage(f"p{i}", message_id=f"p{i}") for i in range(4)])
    with sb.receiver() as receiver:
        first = receiver.peek_messages(max_message_count=2)
        rest = receiver.peek_messages(max_message_count=10, sequence_number=first[-1].sequence_number + 1)
        empty = receiver.peek_messages(max_message_count=10, sequence_number=rest[-1].sequence_number + 1)
    assert [m.message_id for m in first + rest] == ["p0", "p1", "p2", "p3"]
    assert empty == []
    assert not any(m["locked"] for m in emulator.messages(QUEUE))


def test_scheduled_message_appears_at_its_time_with_its_sequence_number(
    sb: Driver, emulator: ServiceBusEmulator, skew: Skew
) -> None:
    """schedule_messages returns a sequence number; the message is invisible until its enqueue time."""
    at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    number = sb.schedule(ServiceBusMessage("later", message_id="s"), at)
    assert [m["sequence_number"] for m in emulator.scheduled(QUEUE)] == [number]
    assert emulator.messages(QUEUE) == []
    skew.seconds = 3601  # the broker's clock passes the scheduled time
    wait_for(lambda: emulator.messages(QUEUE), "the scheduled message to be enqueued")
    with sb.receiver(receive_mode=_DELETE) as receiver:
        (message,) = receiver.receive()
    assert message.sequence_number == number
    assert message.scheduled_enqueue_time_utc is not None and message.enqueued_time_utc >= message.scheduled_enqueue_time_utc


def test_scheduled_enqueue_time_on_a_plain_send_holds_the_message(sb: Driver, emulator: ServiceBusEmulator) -> None:
    """A message sent with scheduled_enqueue_time_utc is held like a scheduled one."""
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    sb.send(ServiceBusMessage("later", message_id="h", scheduled_enqueue_time_utc=later))
    assert [m["message_id"] for m in emulator.scheduled(QUEUE)] == ["h"] and emulator.messages(QUEUE) == []


def test_cancel_scheduled_message_removes_it(sb: Driver, emulator: ServiceBusEmulator) -> None:
    """cancel_scheduled_messages drops a scheduled message; cancelling it again fails."""
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    number = sb.schedule(ServiceBusMessage("never", message_id="n"), later, topic=True)
    sb.cancel(number, topic=True)
    assert emulator.scheduled(TOPIC) == []
    with pytest.raises(ServiceBusError):
        sb.cancel(number, topic=True)


# ---- authentication -----------------------------------------------------------------------------------


class StaticToken:
    """A TokenCredential handing out one bearer token, counting requests."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("eyJ.local.token", int(time.time()) + 3600)


class AsyncStaticToken(StaticToken):
    """The async flavour of StaticToken."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:  # type: ignore[override]
        return StaticToken.get_token(self, *scopes, **kwargs)

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_bearer_token_form_authenticates_through_cbs_jwt(emulator: ServiceBusEmulator, flavour: str) -> None:
    """ServiceBusClient(namespace, credential, use_tls=False) puts a jwt token on $cbs and can send and receive."""
    credential = StaticToken() if flavour == "sync" else AsyncStaticToken()
    drivers = _drivers(
        lambda: ServiceBusClient(emulator.fully_qualified_namespace, credential, use_tls=False),
        lambda: AsyncServiceBusClient(emulator.fully_qualified_namespace, credential, use_tls=False),
        flavour,
    )
    driver = next(drivers)
    driver.send(ServiceBusMessage("jwt", message_id="j"))
    with driver.receiver(receive_mode=_DELETE) as receiver:
        assert [str(m) for m in receiver.receive()] == ["jwt"]
    next(drivers, None)
    assert credential.scopes and all(s == ("https://servicebus.azure.net//.default",) for s in credential.scopes)
    assert emulator.operations().get("$cbs:put-token:jwt", 0) >= 2


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_wrong_sas_key_is_refused(emulator: ServiceBusEmulator, flavour: str) -> None:
    """A SAS token signed with another key is refused at put-token; nothing is stored."""
    cs = emulator.connection_string.replace("SAS_KEY_VALUE", "WRONG_KEY")
    drivers = _drivers(
        lambda: ServiceBusClient.from_connection_string(cs, retry_total=0),
        lambda: AsyncServiceBusClient.from_connection_string(cs, retry_total=0),
        flavour,
    )
    driver = next(drivers)
    with pytest.raises(ServiceBusAuthenticationError):
        driver.send(ServiceBusMessage("x"))
    next(drivers, None)
    assert emulator.messages(QUEUE) == []


def test_link_without_put_token_is_refused_unauthorized(emulator: ServiceBusEmulator) -> None:
    """A plain AMQP client attaching to an entity with no put-token gets amqp:unauthorized-access."""
    from proton.utils import BlockingConnection, LinkDetached

    connection = BlockingConnection(f"amqp://127.0.0.1:{emulator.port}", timeout=10)
    try:
        with pytest.raises(LinkDetached) as refused:
            connection.create_sender(QUEUE)
        assert "amqp:unauthorized-access" in str(refused.value)
    finally:
        connection.close()


# ---- faults -------------------------------------------------------------------------------------------


def test_refused_cbs_fails_the_send(sb: Driver, emulator: ServiceBusEmulator) -> None:
    """An injected CBS refusal surfaces as an authentication error."""
    emulator.refuse_cbs(times=5)
    with pytest.raises(ServiceBusAuthenticationError):
        sb.send(ServiceBusMessage("x"))
    assert emulator.messages(QUEUE) == []


def test_rejected_send_is_retried_by_the_client(sb: Driver, emulator: ServiceBusEmulator) -> None:
    """One rejected transfer (server-busy) is retried; the message is stored once."""
    emulator.reject_sends(times=1)
    sb.send(ServiceBusMessage("x", message_id="retry"))
    assert [m["message_id"] for m in emulator.messages(QUEUE)] == ["retry"]


def test_rejected_sends_beyond_the_retries_fail(sb: Driver, emulator: ServiceBusEmulator) -> None:
    """Rejections past the client's retry budget raise; nothing is stored."""
    emulator.reject_sends(times=5, rejection=SendRejection("amqp:internal-error", "boom"))
    with pytest.raises(ServiceBusError):
        sb.send(ServiceBusMessage("x", message_id="fail"))
    assert emulator.messages(QUEUE) == []


def test_detached_receive_link_is_reattached(sb: Driver, emulator: ServiceBusEmulator) -> None:
    """After the broker detaches a receive link, the next receive reattaches and gets the message."""
    # (max_wait_time also bounds the link's opening, so each receive waits for a message already sent)
    sb.send(ServiceBusMessage("before", message_id="before"))
    with sb.receiver(receive_mode=_DELETE) as receiver:
        assert [str(m) for m in receiver.receive()] == ["before"]
        assert emulator.detach_links(QUEUE) >= 1
        sb.send(ServiceBusMessage("after", message_id="after"))
        got = receiver.receive(wait=5)
    assert [str(m) for m in got] == ["after"]


@pytest.mark.parametrize("graceful", [False, True], ids=["socket-cut", "close-forced"])
def test_idle_connection_drop_is_survived_by_the_next_send(sb: Driver, emulator: ServiceBusEmulator, graceful: bool) -> None:
    """A connection dropped while idle is re-established by the client's next operation."""
    sender = sb.client.get_queue_sender(QUEUE)
    try:
        sb.run(sender.send_messages(ServiceBusMessage("one", message_id="one")))
        assert emulator.drop_connections(graceful=graceful) >= 1
        if not graceful:  # a close frame waits for the idle client to read it; a cut socket is gone at once
            wait_for(lambda: emulator.connection_count() == 0, "the connection to drop")
        sb.run(sender.send_messages(ServiceBusMessage("two", message_id="two")))
    finally:
        sb.run(sender.close())
    assert [m["message_id"] for m in emulator.messages(QUEUE)] == ["one", "two"]
