"""The retry policy, each event's budget, and Retry-After parsing (contract §3)."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.retry import MAX_RETRY_AFTER_SECONDS, MIN_POLL_SECONDS, RetryBudget, RetryPolicy, parse_retry_after
from shared.settings import Settings


def test_waits_grow_exponentially_with_jitter_within_the_cap() -> None:
    """Each backoff lies between half and all of base * 2^(n-1), capped."""
    budget = RetryPolicy(max_attempts=10, max_wait_seconds=1000, base_seconds=0.5, cap_seconds=4, jitter=random.Random(7)).budget()
    waits = [budget.next_wait(n, None) for n in range(1, 7)]
    for n, wait in enumerate(waits, start=1):
        step = min(4, 0.5 * 2 ** (n - 1))
        assert wait is not None and step / 2 <= wait <= step
    assert len(set(waits)) == len(waits)


def test_attempts_are_bounded() -> None:
    """No wait is offered once max_attempts tries were made."""
    budget = RetryPolicy(max_attempts=3, max_wait_seconds=100).budget()
    assert budget.next_wait(2, None) is not None
    assert budget.next_wait(3, None) is None


def test_retry_after_is_honoured_exactly() -> None:
    """ARM's Retry-After replaces the backoff."""
    budget = RetryPolicy(max_attempts=4, max_wait_seconds=10).budget()
    assert budget.next_wait(1, 3.0) == 3.0
    assert budget.remaining == 7.0


def test_retry_after_longer_than_the_budget_ends_retries_at_once() -> None:
    """No sleeping past ARM_RETRY_MAX_SECONDS: the failure is reported now."""
    budget = RetryPolicy(max_attempts=4, max_wait_seconds=5).budget()
    assert budget.next_wait(1, 6.0) is None
    assert budget.waited == 0


def test_backoff_is_clipped_to_what_is_left_of_the_budget() -> None:
    """The total waiting never exceeds the budget."""
    budget = RetryPolicy(max_attempts=100, max_wait_seconds=1.2, base_seconds=1).budget()
    total = 0.0
    while (wait := budget.next_wait(1, None)) is not None:
        total += wait
    assert total == pytest.approx(1.2)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0), (" 2 ", 2.0), ("0", 0.0), ("1.5", 1.5), ("86400", 86400.0),
        ("-3", None), ("-0", None), ("soon", None), ("", None), ("   ", None), (None, None), ("inf", None), ("nan", None),
        ("1e3", None), ("+5", None), ("1_000", None), ("\u0663", None), ("0x10", None), ("1e308", None), ("9" * 400, None),
        ("86401", None), ("999999999999", None),
    ],
    ids=[
        "seconds", "padded", "zero", "fraction", "a-day",
        "negative", "negative-zero", "garbage", "empty", "blank", "absent", "infinite", "nan",
        "exponent", "plus-sign", "underscore", "arabic-indic-digit", "hex", "huge-float", "400-digits",
        "past-a-day", "absurd",
    ],
)
def test_retry_after_in_seconds(header: str | None, seconds: float | None) -> None:
    """The delta-seconds form is digits; negative, non-finite, non-ASCII or absurd values count as absent."""
    assert parse_retry_after(header) == seconds


def test_retry_after_as_http_date() -> None:
    """The HTTP-date form counts from now."""
    now = 1_800_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize(
    "header",
    [
        "Mon, 01 Jan 99999999999999999999 00:00:00 GMT",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Mon, 01 Jan 10000 00:00:00 GMT",
        "Mon, 32 Jan 2030 00:00:00 GMT",
        "Mon, 01 Foo 2030 00:00:00 GMT",
        "Mon, 01 Jan 2030 99:00:00 GMT",
        "Mon, 01 Jan 2030 00:00:00 +9999",
        "Mon, 01 Jan 2030 00:00:00 GMT" + " " * 100,
        "Mon, 01 Jan 2030 00:00:00 GMT, Mon, 01 Jan 2030 00:00:00 GMT",
    ],
    ids=["year-past-any-calendar", "year-9999", "year-10000", "day-32", "month-foo", "hour-99", "offset-9999", "padded-long", "two-dates"],
)
def test_absurd_http_dates_count_as_absent(header: str) -> None:
    """A date no calendar holds, or too far ahead to be meant, is no Retry-After, never an exception."""
    assert parse_retry_after(header, now=1_800_000_000.0) is None


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet="0123456789.-+eE :,GMTJanMo"), st.from_regex(r"\A-?[0-9]{1,30}(\.[0-9]{0,30})?\Z")))
def test_retry_after_of_any_text_is_none_or_a_bounded_wait(header: str) -> None:
    """Whatever ARM sends, the parser returns None or a finite wait in [0, a day], and never raises."""
    seconds = parse_retry_after(header)
    assert seconds is None or (isinstance(seconds, float) and 0.0 <= seconds <= MAX_RETRY_AFTER_SECONDS)


def test_the_policy_comes_from_settings_and_is_frozen() -> None:
    """ARM_MAX_ATTEMPTS and ARM_RETRY_MAX_SECONDS become the policy; the policy cannot change under a call."""
    policy = RetryPolicy.from_settings(Settings.from_env({"ARM_MAX_ATTEMPTS": "7", "ARM_RETRY_MAX_SECONDS": "12.5"}))
    assert (policy.max_attempts, policy.max_wait_seconds) == (7, 12.5)
    with pytest.raises(AttributeError):
        policy.max_attempts = 1  # type: ignore[misc]


def test_each_budget_is_its_own_state() -> None:
    """Waiting done by one event does not shrink the next event's budget."""
    policy = RetryPolicy(max_attempts=4, max_wait_seconds=10)
    first, second = policy.budget(), policy.budget()
    assert first.next_wait(1, 6.0) == 6.0
    assert (first.remaining, second.remaining) == (4.0, 10.0)
    assert isinstance(first, RetryBudget)


@pytest.mark.parametrize(
    ("polls", "retry_after", "wait"),
    [(1, None, 0.25), (2, None, 0.5), (4, None, 2.0), (9, None, 2.0), (1, 3.0, 3.0), (3, 0.0, 1.0), (1, 0.01, MIN_POLL_SECONDS)],
    ids=["first-default", "second-default", "default-capped", "default-stays-capped", "retry-after", "zero-is-absent", "tiny-is-raised"],
)
def test_polls_wait_retry_after_or_a_growing_default_never_below_the_floor(polls: int, retry_after: float | None, wait: float) -> None:
    """A positive Retry-After sets the poll interval; zero counts as absent; no poll comes sooner than 0.1 s."""
    assert RetryPolicy(max_attempts=4, max_wait_seconds=10).poll_wait(polls, retry_after) == wait


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=1, max_value=10**6), st.one_of(st.none(), st.floats(allow_nan=False, max_value=1e6)), st.floats(0.0, 10.0))
def test_no_poll_wait_is_below_the_floor(polls: int, retry_after: float | None, poll_seconds: float) -> None:
    """Whatever the poll count, Retry-After or configured interval, polling never spins."""
    assert RetryPolicy(max_attempts=4, max_wait_seconds=10, poll_seconds=poll_seconds).poll_wait(polls, retry_after) >= MIN_POLL_SECONDS
