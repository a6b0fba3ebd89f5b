"""The AMQP 1.0 broker: a proton reactor on a background thread speaking Service Bus to the real client.

Link kinds, by address (full `amqp[s]://host:port/…` or `sb://…` URIs are reduced to the entity path):
`$cbs` (put-token), `<entity>/$management` (request/response), a queue or topic (client sends), a queue,
subscription or `…/$deadletterqueue` (client receives; snd-settle-mode settled means receive-and-delete).
Settlement is answered with the outcome the client sent (rcv-settle-mode second), or `rejected` with
`com.microsoft:message-lock-lost` when the lock has expired; the lock token is the delivery tag read as
UUID `bytes_le`. (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-protocol-guide)
"""

from __future__ import annotations

import itertools
from collections import Counter
import logging
import queue
import threading
import uuid
from concurrent.futures import Future
from typing import Any, Callable, TypeVar

from proton import Condition, Delivery, Endpoint, Link, Message, symbol
from proton import Handler
from proton.reactor import ApplicationEvent, Container, EventInjector

from emulators.servicebus import cbs, management, wire
from emulators.servicebus.faults import Faults
from emulators.servicebus.store import EntityError, LockLost, MessageQueue, Namespace, entity_path, management_base

__all__ = ["Broker"]

_LOG = logging.getLogger(__name__)
# The proton reactor logs every event at DEBUG (dozens a second with the tick); keep that out of test logs.
logging.getLogger("proton").setLevel(logging.INFO)
_TICK_SECONDS = 0.02
_CREDIT = 100
# Standard tier's message size limit, which the client reads from the attach to size its batches.
MAX_MESSAGE_BYTES = 256 * 1024
T = TypeVar("T")


def _reply(link: Link, message: Message) -> None:
    """Queue a response on a reply link; it leaves when the client has given credit."""
    pending: list[bytes] = link.sb_pending if "sb_pending" in link._attrs else []
    pending.append(message.encode())
    link.sb_pending = pending
    _flush(link)


def _flush(link: Link) -> None:
    pending: list[bytes] = link.sb_pending if "sb_pending" in link._attrs else []
    while pending and link.credit > 0:
        delivery = link.delivery(uuid.uuid4().bytes)
        link.send(pending.pop(0))
        link.advance()
        delivery.settle()


def _links(connection: Any, predicate: Callable[[Link], bool]) -> list[Link]:
    found = []
    link = connection.link_head(Endpoint.LOCAL_ACTIVE)
    while link is not None:
        if predicate(link):
            found.append(link)
        link = link.next(Endpoint.LOCAL_ACTIVE)
    return found


def _error(condition: str, description: str) -> Condition:
    """An error as the service sends it: with an info map, which the Python client indexes unconditionally."""
    return Condition(condition, description, {symbol("com.microsoft:tracking-id"): str(uuid.uuid4())})


def _text(value: Any) -> Any:
    return bytes(value).decode("utf-8", "replace") if isinstance(value, (bytes, memoryview)) else value


def _guarded(handler: Callable[[Broker, Any], None]) -> Callable[[Broker, Any], None]:
    """An exception in a handler would end the reactor for every client: close that one connection instead."""

    def run(self: Broker, event: Any) -> None:
        try:
            handler(self, event)
        except Exception as error:  # noqa: BLE001 - hostile or unexpected input must not stop the broker
            _LOG.exception("Service Bus emulator: %s failed", handler.__name__)
            connection = getattr(event, "connection", None)
            if connection is not None:
                connection.condition = _error("amqp:internal-error", f"{type(error).__name__}: {error}")
                connection.close()

    run.__name__ = handler.__name__
    return run


class Broker(Handler):
    """The reactor handler: owns the namespace state; every method runs on the reactor thread."""

    def __init__(self, namespace: Namespace, keys: cbs.Keys, host: str, port: int) -> None:
        super().__init__()
        self.namespace = namespace
        self.keys = keys
        self.faults = Faults()
        self.host, self.port = host, port
        self.ready = threading.Event()
        self.connections: dict[int, Any] = {}
        self._ids = itertools.count(1)
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._injector = EventInjector()
        self.container = Container(self)
        self.container.selectable(self._injector)
        self._acceptor: Any = None
        self.startup_error: BaseException | None = None
        self.operations: Counter[str] = Counter()

    # ---- thread hop -------------------------------------------------------------------------------
    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run `fn` on the reactor thread and return its result (state is only touched there)."""
        future: Future[T] = Future()
        self._calls.put((fn, future))
        self._injector.trigger(ApplicationEvent("sbemu_call"))
        return future.result(timeout)

    def on_sbemu_call(self, event: Any) -> None:
        while True:
            try:
                fn, future = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                future.set_result(fn())
            except BaseException as error:  # noqa: BLE001 - handed back to the calling thread
                future.set_exception(error)

    def run(self) -> None:
        """Run the reactor until `stop` (the body of the broker thread)."""
        try:
            self.container.run()
        except BaseException as error:  # noqa: BLE001 - reported to start() instead of dying silently
            self.startup_error = error
            _LOG.exception("Service Bus emulator reactor failed")
        finally:
            self.ready.set()

    def stop(self) -> None:
        """Close every connection and end the reactor."""
        for connection in list(self.connections.values()):
            connection.close()
        if self._acceptor is not None:
            self._acceptor.close()
        self._injector.close()
        self.container.stop()

    # ---- reactor lifecycle ------------------------------------------------------------------------
    def on_reactor_init(self, event: Any) -> None:
        try:
            self._acceptor = self.container.acceptor(self.host, self.port)
            # proton keeps the listening socket as the selectable's delegate; port 0 is resolved there.
            self.port = self._acceptor._selectable._delegate.getsockname()[1]
        except BaseException as error:  # noqa: BLE001
            self.startup_error = error
            self.container.stop()
        finally:
            self.ready.set()
        self.container.schedule(_TICK_SECONDS, self)

    @_guarded
    def on_timer_task(self, event: Any) -> None:
        try:
            if self.namespace.tick():
                self.pump_all()
        finally:
            self.container.schedule(_TICK_SECONDS, self)

    # ---- endpoints --------------------------------------------------------------------------------
    @_guarded
    def on_connection_remote_open(self, event: Any) -> None:
        connection = event.connection
        connection.sb_id = next(self._ids)
        connection.sb_grants = []
        self.connections[connection.sb_id] = connection
        connection.open()

    @_guarded
    def on_connection_remote_close(self, event: Any) -> None:
        event.connection.close()

    @_guarded
    def on_transport_closed(self, event: Any) -> None:
        connection = event.connection
        if connection is not None and "sb_id" in connection._attrs:
            self.connections.pop(connection.sb_id, None)

    @_guarded
    def on_session_remote_open(self, event: Any) -> None:
        event.session.open()

    @_guarded
    def on_session_remote_close(self, event: Any) -> None:
        event.session.close()

    @_guarded
    def on_link_remote_close(self, event: Any) -> None:
        event.link.close()

    def _refuse(self, link: Link, condition: str, description: str) -> None:
        link.sb_refused = True
        _LOG.info("Service Bus emulator refused a link to %r: %s", link.sb_path, condition)
        link.condition = _error(condition, description)
        link.open()
        link.close()

    def _authorized(self, link: Link, path: str) -> bool:
        return any(cbs.covers(granted, path) for granted in link.connection.sb_grants)

    @_guarded
    def on_link_remote_open(self, event: Any) -> None:
        link: Link = event.link
        address = link.remote_source.address if link.is_sender else link.remote_target.address
        path = entity_path(address)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        link.sb_path = path
        link.sb_kind = "cbs" if path.lower() == "$cbs" else "management" if management_base(path) else "entity"
        base = management_base(path) or path
        if link.sb_kind != "cbs":
            if not self.namespace.exists(base) or (link.sb_kind == "entity" and not self._entity_fits(link, base)):
                return self._refuse(link, "amqp:not-found", f"The messaging entity '{base}' could not be found.")
            if not self._authorized(link, base):
                return self._refuse(link, "amqp:unauthorized-access", f"Unauthorized access to '{base}': no put-token for it.")
        # Only an accepted attach echoes the terminus: a refusing attach carries a null one (AMQP 1.0 §2.6.3).
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        if link.sb_kind == "entity" and link.is_sender:
            link.sb_queue = self.namespace.receiver(base)
            link.sb_peek_lock = link.remote_snd_settle_mode != Link.SND_SETTLED
        link.max_message_size = MAX_MESSAGE_BYTES
        link.open()
        if link.is_receiver:
            link.flow(_CREDIT)

    def _entity_fits(self, link: Link, path: str) -> bool:
        """Clients send to queues and topics and receive from queues, subscriptions and dead-letter queues."""
        table = self.namespace.receivers if link.is_sender else self.namespace.senders
        return path.lower() in table

    # ---- deliveries -------------------------------------------------------------------------------
    @_guarded
    def on_link_flow(self, event: Any) -> None:
        link = event.link
        if link.is_sender:
            _flush(link)
            self.pump(link)

    @_guarded
    def on_delivery(self, event: Any) -> None:
        delivery: Delivery = event.delivery
        link = delivery.link
        if link.is_receiver:
            if delivery.readable and not delivery.partial:
                self._incoming(link, delivery)
        elif delivery.updated:
            self._outcome(link, delivery)

    def _incoming(self, link: Link, delivery: Delivery) -> None:
        data = link.recv(delivery.pending) or b""
        link.advance()
        if delivery.aborted or "sb_refused" in link._attrs or "sb_kind" not in link._attrs:
            delivery.settle()
            return
        if link.credit < _CREDIT // 2:
            link.flow(_CREDIT - link.credit)
        if link.sb_kind == "cbs":
            self._cbs(link, data)
        elif link.sb_kind == "management":
            self._management(link, data)
        else:
            self._send(link, delivery, data)
            return
        delivery.update(Delivery.ACCEPTED)
        delivery.settle()

    def _send(self, link: Link, delivery: Delivery, data: bytes) -> None:
        rejection = self.faults.take_send_rejection()
        if rejection is not None:
            delivery.local.condition = _error(rejection.condition, rejection.description)
            delivery.update(Delivery.REJECTED)
            delivery.settle()
            return
        sender = self.namespace.sender(link.sb_path)
        now = self.namespace.clock()
        try:
            for encoded in wire.split_batch(data) or [data]:
                sender.send(encoded, now)
        except ValueError as error:
            delivery.local.condition = _error("amqp:decode-error", str(error))
            delivery.update(Delivery.REJECTED)
            delivery.settle()
            return
        delivery.update(Delivery.ACCEPTED)
        delivery.settle()
        self.pump_all()

    def _reply_link(self, link: Link, reply_to: Any) -> Link | None:
        wanted = entity_path(_text(reply_to)).lower() if reply_to else None
        candidates = _links(link.connection, lambda l: l.is_sender and "sb_kind" in l._attrs and l.sb_kind == link.sb_kind)
        for candidate in candidates:
            if wanted is not None and entity_path(candidate.remote_source.address).lower() == wanted:
                return candidate
        return next((c for c in candidates if c.sb_path.lower() == link.sb_path.lower()), None)

    def _cbs(self, link: Link, data: bytes) -> None:
        request = Message()
        request.decode(data)
        props = request.properties or {}
        self.operations[f"$cbs:{_text(props.get('operation'))}:{_text(props.get('type'))}"] += 1
        if props.get("operation") != "put-token":
            status, description = 400, "Only put-token is supported on $cbs."
        elif self.faults.take_cbs_refusal():
            status, description = 401, "The emulator refused this put-token (injected fault)."
        else:
            try:
                granted = cbs.authorize(_text(request.body), props.get("type"), _text(props.get("name")), self.keys)
                link.connection.sb_grants.append(granted)
                status, description = 202, "Accepted"
            except cbs.CbsRefused as refused:
                status, description = 401, str(refused)
        target = self._reply_link(link, request.reply_to)
        if target is not None:
            answer = {"status-code": status, "status-description": description}
            _reply(target, Message(correlation_id=request.id, properties=answer))

    def _management(self, link: Link, data: bytes) -> None:
        request = Message()
        request.decode(data)
        base = management_base(link.sb_path) or link.sb_path
        operation = _text((request.properties or {}).get("operation"))
        self.operations[str(operation)] += 1
        answer = management.handle(self.namespace, base, operation, request.body)
        target = self._reply_link(link, request.reply_to)
        if target is not None:
            _reply(target, Message(correlation_id=request.id, properties=answer.application_properties(), body=answer.body))
        self.pump_all()

    def pump(self, link: Link) -> None:
        """Deliver available messages to a receive link while it has credit."""
        if "sb_queue" not in link._attrs or link.state & Endpoint.LOCAL_CLOSED:
            return
        source: MessageQueue = link.sb_queue
        now = self.namespace.clock()
        while link.credit > 0:
            message = source.take(now, link.sb_peek_lock)
            if message is None:
                break
            tag = message.lock_token.bytes_le if message.lock_token is not None else uuid.uuid4().bytes_le
            delivery = link.delivery(tag)
            link.send(message.wire_bytes())
            link.advance()
            if message.lock_token is None:
                delivery.settle()  # receive-and-delete: the message is gone once sent
            else:
                delivery.sb_lock = (source, message.lock_token)
        if link.drain_mode and link.credit > 0:
            link.drained()

    def pump_all(self) -> None:
        """Offer messages to every receive link (after a send, a schedule coming due or a lock expiring)."""
        for connection in list(self.connections.values()):
            for link in _links(connection, lambda l: l.is_sender and "sb_queue" in l._attrs):
                self.pump(link)

    def _outcome(self, link: Link, delivery: Delivery) -> None:
        """Apply the client's disposition on a delivered message and answer with the outcome applied."""
        if "sb_lock" not in delivery._attrs or delivery.settled:
            return
        source, token = delivery.sb_lock
        state = delivery.remote_state
        now = self.namespace.clock()
        try:
            if state == Delivery.ACCEPTED:
                source.complete(token, now)
            elif state == Delivery.RELEASED:
                source.release(token, now)
            elif state == Delivery.MODIFIED:
                if delivery.remote.undeliverable:
                    raise EntityError("amqp:not-implemented", "Deferral is not supported by this emulator.")
                (source.abandon if delivery.remote.failed else source.release)(token, now)
            elif state == Delivery.REJECTED:
                condition = delivery.remote.condition
                info = dict(condition.info or {}) if condition is not None else {}
                source.dead_letter(token, now, _text(info.get("DeadLetterReason")), _text(info.get("DeadLetterErrorDescription")))
            elif delivery.remote_settled:
                pass  # settled with no outcome: the lock stays until it expires, as on the service
            else:
                return
            if state:
                delivery.update(state)
        except (LockLost, EntityError) as error:
            delivery.local.condition = _error(error.condition, error.description)
            delivery.update(Delivery.REJECTED)
        delivery.settle()
        self.pump_all()

    # ---- faults on the reactor thread ---------------------------------------------------------------
    def detach(self, path: str | None, condition: str, description: str) -> int:
        """Detach entity links (all when `path` is None; `$cbs` links are left alone)."""
        count = 0
        for connection in list(self.connections.values()):
            for link in _links(connection, lambda l: "sb_kind" in l._attrs and l.sb_kind != "cbs"):
                base = management_base(link.sb_path) or link.sb_path
                if path is None or base.lower() == path.lower():
                    link.condition = _error(condition, description)
                    link.close()
                    count += 1
        return count

    def drop(self, graceful: bool) -> int:
        """Drop every connection: a `close` with amqp:connection:forced, or the socket cut with no frame."""
        dropped = list(self.connections.values())
        for connection in dropped:
            if graceful:
                connection.condition = _error("amqp:connection:forced", "The emulator closed the connection.")
                connection.close()
            else:
                transport = connection.transport
                transport.close_tail()
                transport.close_head()
        return len(dropped)
