"""The Service Bus queue trigger: peek-lock receive, invoke on a pool, settle as `autoCompleteMessages: true`.

One thread runs the receiver: it receives while the pool has room, hands each message to an invocation, and
settles finished invocations (complete on return, abandon on raise). Locks are renewed by the SDK's AutoLockRenewer
up to host.json's `maxAutoLockRenewalDuration`. The SDK's sync receiver is not thread-safe: a renew-lock sent while
the same receiver is inside `receive_messages` on another thread fails (lock lost, then a redelivery), so the
renewer's calls are handed to the receive thread, which runs them between receives (a shared lock would starve
the renewer: the loop takes it again at once).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from azure.servicebus import AutoLockRenewer, ServiceBusReceivedMessage, ServiceBusReceiveMode, ServiceBusReceiver
from azure.servicebus.exceptions import ServiceBusError

from emulators.host.connections import open_servicebus
from emulators.host.hostjson import HostOptions
from emulators.host.index import BindingError, IndexedFunction, resolve_setting_references
from emulators.host.metadata import decode_message

__all__ = ["QueueListener", "Settlement"]

log = logging.getLogger("emulators.host.queue")
_RECEIVE_WAIT = 0.25  # seconds one receive call waits; bounds how long finished invocations wait to be settled


@dataclass
class Settlement:
    """What the listener did, for tests and the stack's log: counts of completed and abandoned messages."""

    completed: int = 0
    abandoned: int = 0
    failed_settlements: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    def record(self, attribute: str) -> None:
        """Count one settlement and wake waiters."""
        with self.changed:
            setattr(self, attribute, getattr(self, attribute) + 1)
            self.changed.notify_all()

    def wait_for(self, predicate: Callable[[Settlement], bool], timeout: float) -> bool:
        """Block until `predicate(self)` holds (True) or `timeout` passes (False)."""
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self), timeout)


class _ReceiveThreadCalls:
    """The receiver as the AutoLockRenewer sees it: each renewal runs on the receive thread, which owns the receiver."""

    def __init__(self, receiver: ServiceBusReceiver) -> None:
        self._receiver = receiver
        self._pending: queue.SimpleQueue[tuple[ServiceBusReceivedMessage, Future[object]]] = queue.SimpleQueue()

    def renew_message_lock(self, message: ServiceBusReceivedMessage) -> object:
        """Ask the receive thread to renew one message's lock and wait for its answer."""
        answer: Future[object] = Future()
        self._pending.put((message, answer))
        return answer.result(timeout=60)

    def run_pending(self) -> None:
        """On the receive thread: run the renewals asked for so far."""
        while True:
            try:
                message, answer = self._pending.get_nowait()
            except queue.Empty:
                return
            try:
                answer.set_result(self._receiver.renew_message_lock(message))
            except BaseException as exc:  # noqa: BLE001 - handed back to the renewer, which reports it
                answer.set_exception(exc)

    def refuse_pending(self) -> None:
        """The receiver is closing: renewals still asked for fail at once."""
        while True:
            try:
                _, answer = self._pending.get_nowait()
            except queue.Empty:
                return
            answer.set_exception(ServiceBusError("the receiver is closing"))


class QueueListener:
    """Drives one `serviceBusTrigger` function from its queue."""

    def __init__(self, function: IndexedFunction, env: Mapping[str, str], options: HostOptions) -> None:
        if not options.auto_complete_messages:  # the function would have to settle, which Python functions cannot here
            raise BindingError("host.json autoCompleteMessages: false is not supported by the stand-in")
        trigger = function.trigger
        self.function = function
        self.queue_name = resolve_setting_references(str(trigger["queueName"]), env)
        self.connection = str(trigger.get("connection") or "AzureWebJobsServiceBus")
        self.options = options
        self.settlement = Settlement()
        self._client = open_servicebus(env, self.connection)
        self._renewer = AutoLockRenewer(max_lock_renewal_duration=options.max_auto_lock_renewal_duration,
                                        on_lock_renew_failure=self._renewal_failed)
        self._pool = ThreadPoolExecutor(options.max_concurrent_calls, thread_name_prefix=f"host-{function.name}")
        self._finished: queue.SimpleQueue[tuple[ServiceBusReceivedMessage, BaseException | None]] = queue.SimpleQueue()
        self._in_flight = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"host-queue-{function.name}", daemon=True)
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> None:
        """Open the receiver and start the receive loop."""
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop receiving, let running invocations finish and settle them, then close the client."""
        self._stop.set()
        self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._renewer.close()
        self._client.close()

    def _renewal_failed(self, message: ServiceBusReceivedMessage, error: Exception | None) -> None:
        cause = getattr(error, "error", None) or error
        log.warning("lock renewal of message %s stopped: %s %s", message.message_id, type(cause).__name__, cause)

    def _invoke(self, message: ServiceBusReceivedMessage) -> None:
        try:
            self.function.call(**{self.function.trigger["name"]: decode_message(message)})
        except BaseException as exc:  # noqa: BLE001 - the host abandons on any failure of the invocation
            log.warning("function %s failed for message %s: %s", self.function.name, message.message_id, type(exc).__name__)
            self._finished.put((message, exc))
        else:
            self._finished.put((message, None))

    def _settle(self, receiver: ServiceBusReceiver, block: float | None) -> None:
        try:
            message, error = self._finished.get(timeout=block) if block else self._finished.get_nowait()
        except queue.Empty:
            return
        self._in_flight -= 1
        try:
            if error is None:
                receiver.complete_message(message)
            else:
                receiver.abandon_message(message)
            self.settlement.record("completed" if error is None else "abandoned")
        except ServiceBusError as exc:  # a lost lock: Service Bus redelivers the message itself
            log.warning("settling message %s failed: %s", message.message_id, type(exc).__name__)
            self.settlement.record("failed_settlements")

    def _run(self) -> None:
        try:
            receiver = self._client.get_queue_receiver(
                self.queue_name, receive_mode=ServiceBusReceiveMode.PEEK_LOCK, prefetch_count=self.options.prefetch_count
            )
            calls = _ReceiveThreadCalls(receiver)
            with receiver:
                self.ready.set()
                try:
                    self._loop(receiver, calls)
                finally:
                    calls.refuse_pending()
        except BaseException as exc:  # noqa: BLE001 - kept for start() to raise, and logged
            self.error = exc
            log.error("queue listener %s stopped: %s", self.function.name, type(exc).__name__)
        finally:
            self.ready.set()

    def _loop(self, receiver: ServiceBusReceiver, calls: _ReceiveThreadCalls) -> None:
        """Settle, renew, receive while the pool has room; when stopping, settle what is still running."""
        while not self._stop.is_set() or self._in_flight > 0:
            while not self._finished.empty():
                self._settle(receiver, None)
            calls.run_pending()
            room = self.options.max_concurrent_calls - self._in_flight
            if self._stop.is_set() or room <= 0:
                self._settle(receiver, _RECEIVE_WAIT)
                continue
            for message in receiver.receive_messages(max_message_count=room, max_wait_time=_RECEIVE_WAIT):
                self._renewer.register(calls, message)  # type: ignore[arg-type]
                self._in_flight += 1
                self._pool.submit(self._invoke, message)
