"""The arithmetic of ``cio-fleet status --watch``: rates between two snapshots, and the backlog's sparkline."""

from __future__ import annotations

import pytest

from worker.cli.status_rates import Counts, Snapshot, backlog_history, increase, rates, sparkline


def snap(at_ms: int, **workspaces: Counts) -> Snapshot:
    return Snapshot(at_ms, workspaces)


def test_events_out_are_the_events_enqueued_minus_the_growth_of_the_backlog() -> None:
    """1,000 enqueued and the backlog down by 200 in 2 s: 1,200 events left the streams, 600/s."""
    before = snap(10_000, acme=Counts(enqueued=5_000, backlog=700, dead_lettered=0))
    after = snap(12_000, acme=Counts(enqueued=6_000, backlog=500, dead_lettered=0))
    assert rates(before, after, {})["acme"].events_out_per_s == 600.0


def test_dead_letters_are_counted_per_minute_and_not_as_delivered() -> None:
    """12 dead letters in 4 s of 400 events out: 180/min, and 397 delivered per second."""
    before = snap(0, acme=Counts(enqueued=0, backlog=0, dead_lettered=30))
    after = snap(4_000, acme=Counts(enqueued=1_600, backlog=0, dead_lettered=42))
    rate = rates(before, after, {})["acme"]
    assert (rate.events_out_per_s, rate.dead_letters_per_min, rate.delivered_per_s) == (400.0, 180.0, 397.0)


def test_requests_per_second_and_the_share_of_the_budget() -> None:
    """50 requests in 1 s against rate_limit_rps 100: 50 requests/s, half the budget."""
    before = snap(0, acme=Counts(0, 0, 0, requests=1_000.0))
    after = snap(1_000, acme=Counts(0, 0, 0, requests=1_050.0))
    rate = rates(before, after, {"acme": 100.0})["acme"]
    assert (rate.requests_per_s, rate.budget_share) == (50.0, 0.5)


def test_without_scraped_requests_there_is_no_request_rate_nor_budget_share() -> None:
    """No worker scraped: requests/s and the budget are unknown, not zero."""
    before, after = snap(0, acme=Counts(0, 0, 0)), snap(1_000, acme=Counts(0, 0, 0))
    rate = rates(before, after, {"acme": 100.0})["acme"]
    assert (rate.requests_per_s, rate.budget_share) == (None, None)


def test_a_counter_that_went_down_was_reset_and_counts_its_new_value() -> None:
    """A worker restarted between refreshes: its requests counter restarted from 0, as Prometheus reads it."""
    assert increase(1_000.0, 30.0) == 30.0
    before = snap(0, acme=Counts(0, 0, 0, requests=1_000.0))
    after = snap(3_000, acme=Counts(0, 0, 0, requests=30.0))
    assert rates(before, after, {"acme": 100.0})["acme"].requests_per_s == 10.0


def test_a_replay_that_fills_the_backlog_is_not_counted_as_events_out() -> None:
    """500 dead letters replayed: enqueued and backlog both grow by 500, nothing left the streams."""
    before = snap(0, acme=Counts(enqueued=100, backlog=0, dead_lettered=500))
    after = snap(1_000, acme=Counts(enqueued=600, backlog=500, dead_lettered=500))
    rate = rates(before, after, {})["acme"]
    assert (rate.events_out_per_s, rate.delivered_per_s, rate.dead_letters_per_min) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("after_ms", [5_000, 4_000])
def test_no_rates_when_no_time_passed(after_ms: int) -> None:
    """Two readings at the same instant (or out of order) give no rate rather than a division by zero."""
    counts = Counts(1, 1, 1)
    assert rates(snap(5_000, acme=counts), snap(after_ms, acme=counts), {}) == {}


def test_a_workspace_new_in_the_later_snapshot_has_no_rate_yet() -> None:
    """Rates need two readings of the same workspace."""
    before = snap(0, acme=Counts(0, 0, 0))
    after = snap(1_000, acme=Counts(0, 0, 0), beta=Counts(9, 9, 9))
    assert set(rates(before, after, {})) == {"acme"}


@pytest.mark.parametrize(
    ("values", "width", "expected"),
    [
        ([0, 1, 2, 3, 4, 5, 6, 7], 8, "▁▂▃▄▅▆▇█"),
        ([0, 0, 0], 8, "▁▁▁"),
        ([], 8, ""),
        ([10, 10], 8, "██"),
        ([100, 0, 50], 8, "█▁▅"),
        ([1, 2, 3, 4, 5], 2, "▇█"),
        ([-5, 8], 8, "▁█"),
    ],
)
def test_the_sparkline_scales_from_zero_to_the_top_value(values: list[int], width: int, expected: str) -> None:
    """One bar per value, the highest full, zero the lowest, only the last ``width`` values."""
    assert sparkline(values, width) == expected


def test_the_backlog_history_keeps_the_last_readings_of_each_workspace() -> None:
    """Each refresh appends the backlog; the oldest reading goes past ``keep``; a new workspace starts fresh."""
    history = backlog_history({"acme": (1, 2, 3)}, {"acme": 4, "beta": 7}, keep=3)
    assert history == {"acme": (2, 3, 4), "beta": (7,)}
