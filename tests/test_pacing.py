"""Specification of the write pacer (shared/pacing.py): its arithmetic, on a clock that moves only when told."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.pacing import (
    ASSUMED_REFILL,
    INTEGRAL_SECONDS,
    MAX_LANES,
    MAX_RATE,
    MIN_RATE,
    REMAINING_WRITES,
    OverBudget,
    Pacer,
    remaining_writes,
)
from tests.support import FakeTime

KEY = "4385cf00-2d3a-425a-832f-f4285b1c9dce"
RESERVE = 20  # setpoint S = 10


def pacer(time: FakeTime, reserve: int = RESERVE) -> Pacer:
    """A pacer on the fake clock."""
    return Pacer(reserve, clock=time.clock, sleep=time.sleep)


def read(p: Pacer, remaining: int | None, status: int = 200) -> None:
    """One write answered with `remaining` in the header (nothing in flight before or after)."""
    p.answered(KEY, status, {} if remaining is None else {REMAINING_WRITES: str(remaining)})


@pytest.mark.parametrize(
    ("header", "count"),
    [("19", 19), (" 7 ", 7), ("0", 0), ("-1", None), ("1e3", None), ("", None), ("12.5", None), ("9" * 10, None),
     ("١٢", None)],
    ids=["count", "padded", "zero", "negative", "exponent", "empty", "fraction", "too-long", "arabic-digits"],
)
def test_the_remaining_count_is_read_only_when_it_is_a_plain_count(header: str, count: int | None) -> None:
    """The header is hostile input: only ASCII digits make a count, anything else says nothing."""
    assert remaining_writes({REMAINING_WRITES: header}) == count


@given(st.text(max_size=40))
def test_no_header_value_breaks_the_reading(header: str) -> None:
    """Whatever the header holds, reading it gives a non-negative count or nothing, and never raises."""
    count = remaining_writes({REMAINING_WRITES: header})
    assert count is None or (0 <= count < 10**9 and header.strip().isascii())


def test_writes_go_unpaced_before_any_reading(fake_time: FakeTime) -> None:
    """No answer yet, no pacing: the first writes of a process go at once."""
    p = pacer(fake_time)
    assert [p.turn(KEY, 0.0) for _ in range(5)] == [0.0] * 5
    assert fake_time.sleeps == []


@pytest.mark.parametrize("remaining", [20, 21, 200], ids=["at-reserve", "above", "full-bucket"])
def test_writes_go_at_once_while_the_count_is_at_or_above_the_reserve(fake_time: FakeTime, remaining: int) -> None:
    """At or above ARM_WRITE_RESERVE nothing waits."""
    p = pacer(fake_time)
    read(p, remaining)
    assert p.view(KEY).pace is None
    assert p.turn(KEY, 0.0) == 0.0 and fake_time.sleeps == []


def test_a_reserve_of_zero_turns_pacing_off(fake_time: FakeTime) -> None:
    """ARM_WRITE_RESERVE=0: even an empty bucket never spaces the writes (429s follow the retry rules alone)."""
    p = pacer(fake_time, reserve=0)
    read(p, 0, status=429)
    assert (p.enabled, p.view(KEY).pace) == (False, None)
    assert p.turn(KEY, 0.0) == 0.0


@pytest.mark.parametrize(
    ("remaining", "gain"),
    [(10, 1.0), (15, 2.0), (5, 0.5), (0, 0.25), (19, 2 ** 1.8)],
    ids=["setpoint", "half-S-above", "half-S-below", "empty", "just-below-reserve"],
)
def test_the_pace_is_the_rate_times_the_gain_of_the_level(fake_time: FakeTime, remaining: int, gain: float) -> None:
    """gain = 2 ** ((level - S) / (S / 2)) with S = reserve / 2: each S / 2 writes below the setpoint halve the pace."""
    p = pacer(fake_time)
    read(p, remaining)
    assert p.view(KEY).pace == pytest.approx(ASSUMED_REFILL * gain)


def test_the_gain_never_falls_below_an_eighth(fake_time: FakeTime) -> None:
    """Writes in flight may push the level below zero; the pace then stays at rate / 8, never a stall."""
    p = pacer(fake_time)
    read(p, 0)
    for _ in range(10):
        p.turn(KEY, math.inf)  # ten writes in flight, level -10
    assert p.view(KEY).pace == pytest.approx(ASSUMED_REFILL / 8)


def test_below_the_reserve_the_writes_of_all_callers_are_spaced_at_the_pace(fake_time: FakeTime) -> None:
    """At the setpoint the pace is the rate: turns come 1 / rate apart, one after another."""
    p = pacer(fake_time)
    read(p, 10)
    waits = []
    for _ in range(4):
        waits.append(p.turn(KEY, math.inf))
        p.answered(KEY, 200, {REMAINING_WRITES: "10"})
    assert waits[0] == 0.0  # the last write went unpaced, long enough ago
    assert waits[1:] == [pytest.approx(1 / ASSUMED_REFILL)] * 3


def test_a_waiting_write_goes_sooner_when_the_count_rises_meanwhile(fake_time: FakeTime) -> None:
    """The turn is judged afresh: a reading at or above the reserve, come while a write waits, lets it go."""
    p = pacer(fake_time)
    read(p, 0)  # pace 2.5 a second: the next turn 0.4 s away
    p.turn(KEY, math.inf)
    fake_time.on_sleep = lambda n: p.answered(KEY, 200, {REMAINING_WRITES: "50"}) if n == 1 else None
    waited = p.turn(KEY, math.inf)
    assert waited == pytest.approx(0.05) and len(fake_time.sleeps) == 1


@pytest.mark.parametrize(
    ("remaining", "factor"),
    [(10, 1.0), (19, math.exp(0.9 / INTEGRAL_SECONDS)), (0, math.exp(-1 / INTEGRAL_SECONDS)),
     (15, math.exp(0.5 / INTEGRAL_SECONDS))],
    ids=["setpoint-holds", "near-reserve-grows", "empty-shrinks", "above-setpoint-grows"],
)
def test_the_learned_rate_follows_the_level_over_time(fake_time: FakeTime, remaining: int, factor: float) -> None:
    """Each reading multiplies the rate by exp((level - S) / S × dt / INTEGRAL_SECONDS): a second at one level."""
    p = pacer(fake_time)
    read(p, remaining)
    fake_time.now += 1.0
    p.answered(KEY, 200, {REMAINING_WRITES: str(remaining)})
    assert p.view(KEY).rate == pytest.approx(ASSUMED_REFILL * factor)


def test_a_reading_after_an_idle_time_counts_as_one_second_at_most(fake_time: FakeTime) -> None:
    """An hour without writes says nothing about the pace: the step is capped."""
    p = pacer(fake_time)
    read(p, 0)
    fake_time.now += 3600
    p.answered(KEY, 200, {REMAINING_WRITES: "0"})
    assert p.view(KEY).rate == pytest.approx(ASSUMED_REFILL * math.exp(-1 / INTEGRAL_SECONDS))


def test_a_429_halves_the_rate_at_most_once_a_second(fake_time: FakeTime) -> None:
    """A burst of 429s is one overshoot; another second, another halving."""
    p = pacer(fake_time)
    for _ in range(3):
        read(p, 0, status=429)
    assert p.view(KEY).rate == pytest.approx(ASSUMED_REFILL / 2)
    fake_time.now += 1.0
    read(p, 0, status=429)
    assert p.view(KEY).rate == pytest.approx(ASSUMED_REFILL / 2 * math.exp(-1 / INTEGRAL_SECONDS) / 2)


def test_a_429_without_the_count_says_nothing(fake_time: FakeTime) -> None:
    """A 429 that is not ARM's throttling (no remaining count) leaves pacing to the retry rules."""
    p = pacer(fake_time)
    read(p, None, status=429)
    assert p.view(KEY).pace is None and p.view(KEY).rate == ASSUMED_REFILL


def test_the_pace_recovers_once_the_count_is_back_at_the_reserve(fake_time: FakeTime) -> None:
    """Paced while low, unpaced again as soon as the count rises to the reserve."""
    p = pacer(fake_time)
    read(p, 3)
    assert p.view(KEY).pace is not None
    read(p, 20)
    assert p.view(KEY).pace is None


def test_a_wait_past_the_budget_left_is_refused_without_taking_a_turn(fake_time: FakeTime) -> None:
    """OverBudget carries the wait ahead; nothing slept, nothing counted in flight."""
    p = pacer(fake_time)
    read(p, 0)
    p.turn(KEY, math.inf)
    read(p, 0)  # answered: pace 2.5 a second, the next turn 0.4 s after the last
    in_flight = p.view(KEY).in_flight
    with pytest.raises(OverBudget) as refused:
        p.turn(KEY, 0.3)
    assert refused.value.wait == pytest.approx(0.4) and refused.value.waited == 0.0
    assert p.view(KEY).in_flight == in_flight and fake_time.sleeps == []


def test_the_writes_other_processes_have_in_flight_are_counted_by_the_share(fake_time: FakeTime) -> None:
    """The count fell by 8 while this process had 2 answers: a quarter is its share, the rest others'."""
    p = pacer(fake_time)
    read(p, 60)
    read(p, 56)
    read(p, 52)  # fell 8 for 2 own answers: share (1 + 0.25) / 2
    assert p.view(KEY).share == pytest.approx(0.625)
    p.turn(KEY, math.inf)
    p.turn(KEY, math.inf)  # two in flight: as if 2 / 0.625 = 3.2 writes were about to land
    view = p.view(KEY)
    assert view.pace is None  # 52 - 3.2 is still above the reserve
    read(p, 22)  # a fall of 30 for one answer: share (0.625 + 1/30) / 2 = 0.33
    assert p.view(KEY).pace is not None  # 22 - 1 / 0.33 is below the reserve; alone (22 - 1) it would not be


def test_buckets_of_other_subscriptions_are_paced_apart(fake_time: FakeTime) -> None:
    """ARM throttles per subscription: a low count in one says nothing about another."""
    p = pacer(fake_time)
    read(p, 0)
    assert p.view("another-subscription").pace is None


def test_events_naming_ever_new_subscriptions_do_not_grow_the_pacer(fake_time: FakeTime) -> None:
    """Subscription ids come from events: past MAX_LANES buckets, the first idle one is forgotten."""
    p = pacer(fake_time)
    p.turn("busy", math.inf)  # in flight: kept
    for n in range(3 * MAX_LANES):
        p.answered(f"subscription-{n}", 200, {REMAINING_WRITES: "5"})
    assert len(p) == MAX_LANES and p.view("busy").in_flight == 1


@given(
    st.lists(
        st.tuples(st.integers(0, 10**6), st.sampled_from([200, 201, 429, 500, None]), st.floats(0, 100)),
        max_size=60,
    )
)
def test_whatever_arm_answers_the_pace_stays_bounded(readings: list[tuple[int, int | None, float]]) -> None:
    """Any sequence of counts, statuses and gaps keeps the rate within its bounds and every wait finite."""
    time = FakeTime()
    p = pacer(time)
    for remaining, status, gap in readings:
        time.now += gap
        wait = p.turn(KEY, math.inf)
        assert 0.0 <= wait <= 8 / MIN_RATE
        p.answered(KEY, status, {REMAINING_WRITES: str(remaining)} if status is not None else {})
        view = p.view(KEY)
        assert MIN_RATE <= view.rate <= MAX_RATE and 0 < view.share <= 1 and view.in_flight == 0
