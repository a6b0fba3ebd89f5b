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


def measure(
    clients: Sequence[Client], *, rounds: int, events: int, warmup: int, block: int, between: Callable[[], None]
) -> PerEvent:
    """Warm every client up, then `rounds` rounds of `events` events per client, interleaved A B C A B C …

    Within a round the clients take turns every `block` events, so that a slower or faster spell of
    a shared 2-core machine (another process, a frequency change) falls on every client alike,
    while each turn is long enough for the client to run with warm caches, as it would alone.
    `between` runs before each round, outside the timing (the emulator's log is cleared so that it
    never grows into a slower server as the run goes on).
    """
    for client in clients:
        for n in range(warmup):
            client(n)
    result = PerEvent({c.name: [] for c in clients}, {c.name: [] for c in clients})
    clock = time.perf_counter_ns
    for _ in range(rounds):
        between()
        gc.collect()
        spent = dict.fromkeys(result.events_ns, 0)
        for first in range(0, events, block):
            for client in clients:
                times = result.events_ns[client.name]
                started = clock()
                for n in range(first, min(first + block, events)):
                    begin = clock()
                    client(n)
                    times.append(clock() - begin)
                spent[client.name] += clock() - started
        for name, total in spent.items():
            result.round_means_us[name].append(total / events / 1000)
    return result
