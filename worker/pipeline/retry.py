"""When to try a failed delivery again: exponential backoff with full jitter, bounded by a window (pure).

The formula is stamina's and the AWS Architecture Blog's "full jitter"::

    delay = rand() * min(cap_s, base_s * 2 ** (attempt - 1))

A ``Retry-After`` from a 429 is a floor: the delay is never shorter than what Customer.io asked for, so
a fleet of workers that all back off at random still respects the server. The retry window (default 4 hours,
as Segment does) bounds the whole sequence; ``window_exhausted`` tells the caller when to dead-letter.

A run of failures that keeps failing the same head batch splits it: from the ``SPLIT_AFTER_ATTEMPTS``-th failed
attempt on, each failure halves the head batch (``head_batch_limit``), so that an event that makes Customer.io
fail is soon retried alone and its neighbours are delivered. A 429 is about the workspace, not about an event: it
never splits, and without ``Retry-After`` it pauses for a short step of its own (``throttle_pause``).

Nothing here reads a clock or sleeps: the caller passes the times in and executes the delay.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Final

from worker.settings import RetryPolicy

__all__ = [
    "SPLIT_AFTER_ATTEMPTS",
    "THROTTLE_MAX_STEP",
    "RetryPolicy",
    "backoff_ceiling",
    "head_batch_limit",
    "next_delay",
    "throttle_pause",
    "window_exhausted",
]

#: Beyond this many doublings the ceiling is the cap anyway; bounding the exponent avoids float overflow.
_MAX_EXPONENT = 64

#: Failed attempts of the same head batch (5xx, 408, timeouts) after which each further failure halves it.
SPLIT_AFTER_ATTEMPTS: Final = 3

#: A 429 without ``Retry-After`` pauses for at most this step of the backoff (base, 2 x base, 4 x base).
THROTTLE_MAX_STEP: Final = 3


def backoff_ceiling(attempt: int, policy: RetryPolicy) -> float:
    """The largest delay full jitter may pick for an attempt.

    Args:
        attempt: The number of the attempt that just failed, from 1.
        policy: The backoff base, cap and window.

    Returns:
        ``min(policy.cap_s, policy.base_s * 2 ** (attempt - 1))``.

    Raises:
        ValueError: ``attempt`` is less than 1.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    exponent = min(attempt - 1, _MAX_EXPONENT)
    return min(policy.cap_s, policy.base_s * 2.0**exponent)


def next_delay(
    attempt: int,
    policy: RetryPolicy,
    *,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before the next attempt.

    Args:
        attempt: The number of the attempt that just failed, from 1.
        policy: The backoff base, cap and window.
        retry_after: The server's ``Retry-After`` in seconds, if it sent one. The result is never shorter
            than it (unless it exceeds the whole retry window, which bounds it: waiting longer than the window
            could only end in the dead-letter queue). Negative or non-finite values are ignored.
        rand: A source of floats in ``[0, 1)``; injectable so that tests are deterministic.

    Returns:
        The delay in seconds, ``>= 0``.

    Raises:
        ValueError: ``attempt`` is less than 1.
    """
    jittered = rand() * backoff_ceiling(attempt, policy)
    if retry_after is None or not math.isfinite(retry_after) or retry_after < 0:
        return jittered
    return max(min(retry_after, policy.window_s), jittered)


def window_exhausted(first_failed_at_ms: int, now_ms: int, policy: RetryPolicy) -> bool:
    """Whether the retry window that opened with the first failure has closed.

    Args:
        first_failed_at_ms: Unix time in milliseconds of the first failure of the current sequence.
        now_ms: Unix time in milliseconds now.
        policy: Holds ``window_s``, the window's length.

    Returns:
        True once ``window_s`` or more has passed since the first failure.
    """
    return now_ms - first_failed_at_ms >= policy.window_s * 1000.0


def throttle_pause(attempt: int, policy: RetryPolicy) -> float:
    """How long a 429 without ``Retry-After`` pauses the workspace.

    Args:
        attempt: The number of the attempt that just failed, from 1 (any failures of the run count).
        policy: The backoff base, cap and window.

    Returns:
        The unjittered backoff step of ``attempt``, but never beyond step ``THROTTLE_MAX_STEP``: a long run of 5xx
        before the 429 does not stretch the pause of the whole workspace.

    Raises:
        ValueError: ``attempt`` is less than 1.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    return backoff_ceiling(min(attempt, THROTTLE_MAX_STEP), policy)


def head_batch_limit(attempt: int, batch_size: int, current_limit: int, *, throttled: bool) -> int:
    """How many entries, at most, the next attempt sends from the head of the partition (0: no limit).

    Args:
        attempt: The number of the attempt that just failed, from 1.
        batch_size: The entries the failed batch held.
        current_limit: The limit the failed batch was sent under (0: none).
        throttled: The failure was a 429: it is about the workspace, never about an event, so nothing changes.

    Returns:
        ``current_limit`` for a 429 or before ``SPLIT_AFTER_ATTEMPTS``; else half of the failed batch (at least 1).
    """
    if throttled or attempt < SPLIT_AFTER_ATTEMPTS:
        return current_limit
    return max(batch_size // 2, 1)
