"""Per-event cost: the clients take turns, round after round, against one ARM emulator process."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Client", "PerEvent", "measure"]


class Client(Protocol):
    """Sends event n; raises if it did not succeed."""

    name: str

    def __call__(self, n: int) -> None: ...


@dataclass
class PerEvent:
    """Per-event times of every client: each event's own time, and each round's mean."""

    events_ns: dict[str, list[int]] = field(default_factory=dict)
    round_means_us: dict[str, list[float]] = field(default_factory=dict)

    def median_us(self, name: str) -> float:
        """Median µs of one event of this client, over all rounds."""
        return statistics.median(self.events_ns[name]) / 1000

    def percentile_us(self, name: str, q: int) -> float:
        """The q-th percentile (1-99) µs of one event of this client."""
        return statistics.quantiles(self.events_ns[name], n=100)[q - 1] / 1000

    def mean_of_rounds_us(self, name: str) -> float:
        """Median over rounds of the round's mean µs per event (GC and tail included)."""
        return statistics.median(self.round_means_us[name])


def measure(clients: Sequence[Client], *, rounds: int, events: int, warmup: int, between: Callable[[], None]) -> PerEvent:
    """Warm every client up, then run `rounds` rounds of `events` events per client, A B C A B C …

    `between` runs before each client's turn, outside the timing (the emulator's log is cleared so
    that it never grows into a slower server as the run goes on).
    """
    for client in clients:
        for n in range(warmup):
            client(n)
    result = PerEvent({c.name: [] for c in clients}, {c.name: [] for c in clients})
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for client in clients:
            between()
            gc.collect()
            times = [0] * events
            started = clock()
            for n in range(events):
                begin = clock()
                client(n)
                times[n] = clock() - begin
            result.round_means_us[client.name].append((clock() - started) / events / 1000)
            result.events_ns[client.name].extend(times)
    return result
