"""Backoff with full jitter, the Retry-After floor and the retry window."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.pipeline.retry import (
    SPLIT_AFTER_ATTEMPTS,
    backoff_ceiling,
    head_batch_limit,
    next_delay,
    throttle_pause,
    window_exhausted,
)
from worker.settings import RetryPolicy

POLICY = RetryPolicy(base_s=1.0, cap_s=300.0, window_s=4 * 3600.0)


def fixed(value: float):
    """A ``rand`` that always returns ``value``."""
    return lambda: value


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (9, 256.0), (10, 300.0), (50, 300.0), (10_000, 300.0)],
)
def test_the_ceiling_doubles_per_attempt_up_to_the_cap(attempt: int, ceiling: float) -> None:
    """Exponential growth stops at cap_s, also for absurd attempt numbers."""
    assert backoff_ceiling(attempt, POLICY) == ceiling


@pytest.mark.parametrize(("attempt", "rand", "expected"), [(1, 0.5, 0.5), (3, 0.25, 1.0), (12, 0.5, 150.0)])
def test_the_delay_is_rand_times_the_ceiling(attempt: int, rand: float, expected: float) -> None:
    """Full jitter: any delay between 0 and the ceiling."""
    assert next_delay(attempt, POLICY, rand=fixed(rand)) == pytest.approx(expected)


def test_full_jitter_may_pick_no_delay_at_all() -> None:
    """rand() == 0 gives 0, which spreads a thundering herd the most."""
    assert next_delay(4, POLICY, rand=fixed(0.0)) == 0.0


@pytest.mark.parametrize(
    ("attempt", "rand", "retry_after", "expected"),
    [
        (1, 0.5, 30.0, 30.0),  # Retry-After longer than the backoff wins
        (9, 0.5, 30.0, 128.0),  # backoff longer than Retry-After wins
        (12, 0.99, 1000.0, 1000.0),  # Retry-After beyond the cap is still honoured
        (1, 0.0, 0.0, 0.0),
        (1, 0.5, 10 * 24 * 3600.0, 4 * 3600.0),  # bounded by the retry window
    ],
)
def test_retry_after_is_a_floor_never_shortened(attempt: int, rand: float, retry_after: float, expected: float) -> None:
    """A 429's Retry-After is never undercut by the jittered backoff."""
    assert next_delay(attempt, POLICY, retry_after=retry_after, rand=fixed(rand)) == pytest.approx(expected)


@pytest.mark.parametrize("retry_after", [-1.0, math.nan, math.inf])
def test_a_nonsense_retry_after_is_ignored(retry_after: float) -> None:
    """Negative or non-finite Retry-After falls back to plain backoff."""
    assert next_delay(3, POLICY, retry_after=retry_after, rand=fixed(0.5)) == 2.0


@pytest.mark.parametrize("attempt", [0, -1])
def test_an_attempt_below_one_is_a_programmer_error(attempt: int) -> None:
    """Attempts count from 1."""
    with pytest.raises(ValueError, match="attempt"):
        next_delay(attempt, POLICY)


@pytest.mark.parametrize(
    ("first_ms", "now_ms", "exhausted"),
    [
        (0, 0, False),
        (1_000, 1_000 + 4 * 3600 * 1000 - 1, False),
        (1_000, 1_000 + 4 * 3600 * 1000, True),
        (1_000, 1_000 + 5 * 3600 * 1000, True),
    ],
)
def test_the_window_closes_window_s_after_the_first_failure(first_ms: int, now_ms: int, exhausted: bool) -> None:
    """Past window_s the caller dead-letters instead of retrying."""
    assert window_exhausted(first_ms, now_ms, POLICY) is exhausted


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    rand=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    retry_after=st.none() | st.floats(min_value=0.0, max_value=1e6),
)
def test_the_delay_stays_within_its_bounds(attempt: int, rand: float, retry_after: float | None) -> None:
    """Never negative, never above max(cap, Retry-After bounded by the window), never below Retry-After."""
    delay = next_delay(attempt, POLICY, retry_after=retry_after, rand=fixed(rand))
    floor = 0.0 if retry_after is None else min(retry_after, POLICY.window_s)
    assert floor <= delay <= max(POLICY.cap_s, floor)


def test_the_default_rand_jitters_within_the_ceiling() -> None:
    """Without an injected rand, delays still fall in [0, ceiling)."""
    delays = {next_delay(6, POLICY) for _ in range(50)}
    assert all(0.0 <= delay < 32.0 for delay in delays)
    assert len(delays) > 1


@pytest.mark.parametrize(("attempt", "pause"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0), (10, 4.0), (10_000, 4.0)])
def test_a_429_without_retry_after_pauses_for_a_short_step_however_long_the_run(attempt: int, pause: float) -> None:
    """The first steps of the policy, never the step a long run of 5xx reached (300 s at attempt 10)."""
    assert throttle_pause(attempt, POLICY) == pause


def test_the_throttle_pause_refuses_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt must be >= 1"):
        throttle_pause(0, POLICY)


@pytest.mark.parametrize(
    ("attempt", "size", "current", "limit"),
    [
        (1, 50, 0, 0),  # a first failure may be a blip: the same batch again
        (SPLIT_AFTER_ATTEMPTS - 1, 50, 0, 0),
        (SPLIT_AFTER_ATTEMPTS, 50, 0, 25),  # the batch keeps failing: its first half next
        (SPLIT_AFTER_ATTEMPTS + 1, 25, 25, 12),  # each further failure halves again
        (SPLIT_AFTER_ATTEMPTS + 5, 3, 3, 1),
        (SPLIT_AFTER_ATTEMPTS + 6, 1, 1, 1),  # an event that fails alone stays alone
    ],
)
def test_a_head_batch_that_keeps_failing_is_halved(attempt: int, size: int, current: int, limit: int) -> None:
    assert head_batch_limit(attempt, size, current, throttled=False) == limit


@pytest.mark.parametrize("attempt", [1, SPLIT_AFTER_ATTEMPTS, 40])
def test_a_429_never_splits_the_head_batch(attempt: int) -> None:
    """Throttling is about the workspace's rate, not about an event: the current limit stays."""
    assert head_batch_limit(attempt, 50, 0, throttled=True) == 0
    assert head_batch_limit(attempt, 10, 10, throttled=True) == 10
