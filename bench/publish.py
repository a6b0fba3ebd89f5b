"""Publish cost over AMQP: the queue function end to end with its outcome sent to the local Service Bus on loopback.

The app is built as in production (`build_app`, the real ServiceBusPublisher from a connection string), its
ARM at the emulator process and its topic at the local AMQP Service Bus (`emulators.servicebus`, in this
process). The publisher is wrapped to time each `publish` call inside each event, so every event yields its
total time and the part of it spent handing the outcome to the broker (encode, transfer, the broker's
accepted disposition): their ratio is the publish's share of the event.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from typing import Any

from bench.clients import InboundMessage, app_settings, run_ids
from bench.servers import endpoints
from emulators.servicebus import ServiceBusEmulator
from shared.app import build_app
from shared.outcome import Outcome
from shared.publisher import make_publisher
from shared.settings import Settings

__all__ = ["measure_publish"]


class _TimedPublisher:
    """The app's own publisher, timing each publish (perf_counter_ns)."""

    def __init__(self, settings: Settings) -> None:
        self._inner = make_publisher(settings)
        self.publish_ns: list[int] = []

    def publish(self, outcome: Outcome) -> None:
        began = time.perf_counter_ns()
        self._inner.publish(outcome)
        self.publish_ns.append(time.perf_counter_ns() - began)

    def close(self) -> None:
        self._inner.close()


def measure_publish(events: int, warmup: int) -> dict[str, Any]:
    """Median and p90 µs of one event and of its publish over AMQP, and the publish's share of the event."""
    publishers: list[_TimedPublisher] = []

    def timed(settings: Settings) -> _TimedPublisher:
        publishers.append(_TimedPublisher(settings))
        return publishers[-1]

    with endpoints() as ep, ServiceBusEmulator() as broker:
        identity_env = ep.identity.environ()
        os.environ.update(identity_env)
        settings = {name: value for name, value in app_settings(ep.arm_url, identity_env).items() if "__" not in name}
        settings["ServiceBusConnection"] = broker.connection_string
        app = build_app(settings, publisher_factory=timed)
        function = next(f.get_user_function() for f in app.get_functions() if f.get_function_name() == "archive_queue")
        bodies = [
            f'{{"registryName": "myRegistry", "runId": "{run}", "isArchiveEnabled": true, '
            f'"subscriptionId": "4385cf00-2d3a-425a-832f-f4285b1c9dce", "resourceGroupName": "myResourceGroup"}}'.encode()
            for run in run_ids("publish")
        ]
        event_ns: list[int] = []
        try:
            for n in range(warmup + events):
                message = InboundMessage(
                    body=bodies[n % len(bodies)],
                    message_id=f"bench-publish-{n}",
                    correlation_id=None,
                    delivery_count=1,
                    application_properties={},
                    user_properties={},
                )
                if n == warmup:
                    gc.collect()
                began = time.perf_counter_ns()
                function(message)
                if n >= warmup:
                    event_ns.append(time.perf_counter_ns() - began)
        finally:
            app.close()
        received = broker.messages("acr-archive-outcomes/Subscriptions/all-outcomes")
    publish_ns = publishers[0].publish_ns[warmup:]
    if len(publish_ns) != events or len(received) != warmup + events:
        raise RuntimeError(f"published {len(publish_ns)} of {events} timed outcomes; the subscription holds {len(received)}")
    shares = [p / e for p, e in zip(publish_ns, event_ns, strict=True)]
    return {
        "events": events,
        "publish_median_us": statistics.median(publish_ns) / 1000,
        "publish_p90_us": statistics.quantiles(publish_ns, n=10)[-1] / 1000,
        "event_median_us": statistics.median(event_ns) / 1000,
        "event_p90_us": statistics.quantiles(event_ns, n=10)[-1] / 1000,
        "share_median": statistics.median(shares),
        "share_of_totals": sum(publish_ns) / sum(event_ns),
    }
