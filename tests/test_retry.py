"""The retry budget and Retry-After parsing (contract §3)."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from shared.retry import RetryBudget, parse_retry_after


def test_waits_grow_exponentially_with_jitter_within_the_cap() -> None:
    """Each backoff lies between half and all of base * 2^(n-1), capped."""
    budget = RetryBudget(max_attempts=10, max_wait_seconds=1000, base_seconds=0.5, cap_seconds=4, jitter=random.Random(7))
    waits = [budget.next_wait(n, None) for n in range(1, 7)]
    for n, wait in enumerate(waits, start=1):
        step = min(4, 0.5 * 2 ** (n - 1))
        assert wait is not None and step / 2 <= wait <= step
    assert len(set(waits)) == len(waits)


def test_attempts_are_bounded() -> None:
    """No wait is offered once max_attempts tries were made."""
    budget = RetryBudget(max_attempts=3, max_wait_seconds=100)
    assert budget.next_wait(2, None) is not None
    assert budget.next_wait(3, None) is None


def test_retry_after_is_honoured_exactly() -> None:
    """ARM's Retry-After replaces the backoff."""
    budget = RetryBudget(max_attempts=4, max_wait_seconds=10)
    assert budget.next_wait(1, 3.0) == 3.0
    assert budget.remaining == 7.0


def test_retry_after_longer_than_the_budget_ends_retries_at_once() -> None:
    """No sleeping past ARM_RETRY_MAX_SECONDS: the failure is reported now."""
    budget = RetryBudget(max_attempts=4, max_wait_seconds=5)
    assert budget.next_wait(1, 6.0) is None
    assert budget.waited == 0


def test_backoff_is_clipped_to_what_is_left_of_the_budget() -> None:
    """The total waiting never exceeds the budget."""
    budget = RetryBudget(max_attempts=100, max_wait_seconds=1.2, base_seconds=1)
    total = 0.0
    while (wait := budget.next_wait(1, None)) is not None:
        total += wait
    assert total == pytest.approx(1.2)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), (" 2 ", 2.0), ("0", 0.0), ("-3", 0.0), ("1.5", 1.5), ("soon", None), ("", None), (None, None), ("inf", None), ("nan", None)],
    ids=["seconds", "padded", "zero", "negative", "fraction", "garbage", "empty", "absent", "infinite", "nan"],
)
def test_retry_after_in_seconds(header: str | None, seconds: float | None) -> None:
    """The delta-seconds form."""
    assert parse_retry_after(header) == seconds


def test_retry_after_as_http_date() -> None:
    """The HTTP-date form counts from now."""
    now = 1_800_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
