"""The default partition count of a workspace, derived from its rate limit, and the fences of a count going up."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.pipeline.drain import up_to_fence
from worker.settings import (
    DEFAULT_PARTITIONS,
    DEFAULT_WORKER_THREADS,
    DRAIN_CYCLE_OVERHEAD_S,
    MAX_DEFAULT_PARTITIONS,
    SLOWEST_ANSWER_S,
    Settings,
    WorkspaceConfig,
    default_partitions,
)
from worker.store.layout import entry_after, fence_candidates
from worker.store.partitions import Entry


@pytest.mark.parametrize(
    ("rps", "partitions"),
    [(1, 16), (10, 16), (26.6, 16), (27, 17), (50, 30), (100, 60), (200, 120), (426, 256), (10_000, 256)],
)
def test_the_default_count_keeps_enough_batches_in_flight_for_the_slowest_answer(rps: float, partitions: int) -> None:
    assert default_partitions(rps) == partitions


@given(st.floats(min_value=0.01, max_value=1e6, allow_nan=False))
def test_the_default_count_is_within_its_bounds_and_fills_the_rate_when_it_is_not_capped(rps: float) -> None:
    partitions = default_partitions(rps)
    assert DEFAULT_PARTITIONS <= partitions <= MAX_DEFAULT_PARTITIONS
    if partitions < MAX_DEFAULT_PARTITIONS:
        # one batch in flight per partition, one cycle per answer: enough partitions for the whole rate
        assert partitions / (SLOWEST_ANSWER_S + DRAIN_CYCLE_OVERHEAD_S) >= rps * (1 - 1e-9)


@given(st.floats(min_value=0.01, max_value=1e6, allow_nan=False), st.floats(min_value=0.01, max_value=1e6))
def test_a_higher_rate_never_gets_fewer_partitions(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert default_partitions(low) <= default_partitions(high)


def test_a_workspace_without_partitions_gets_the_derived_count_and_an_explicit_count_wins() -> None:
    assert WorkspaceConfig(site_id="s", api_key="k").partitions == 60
    assert WorkspaceConfig(site_id="s", api_key="k", rate_limit_rps=10).partitions == 16
    assert WorkspaceConfig(site_id="s", api_key="k", rate_limit_rps=100, partitions=16).partitions == 16
    named = WorkspaceConfig(site_id="s", api_key="k", rate_limit_rps=100).model_copy(update={"name": "a"})
    assert named.partitions == 60


def test_one_worker_process_holds_every_default_partition_of_a_100_rps_workspace_at_once() -> None:
    # a drain holds a thread for its slice; workspace_max_share (0.75) of the threads may serve one workspace
    share = Settings.model_fields["workspace_max_share"].default
    assert math.floor(DEFAULT_WORKER_THREADS * share) >= default_partitions(100)


@pytest.mark.parametrize(
    ("entry", "fence", "after"),
    [("5-0", "5-0", False), ("5-1", "5-0", True), ("4-9", "5-0", False), ("10-0", "9-99", True), ("6", "5-3", True)],
)
def test_an_entry_is_after_the_fence_by_its_time_then_its_sequence(entry: str, fence: str, after: bool) -> None:
    assert entry_after(entry, fence) is after


def test_a_fenced_drainer_takes_the_leading_entries_up_to_the_fence() -> None:
    entries = [Entry(f"{n}-0", {}) for n in (1, 2, 3, 4)]
    assert [e.id for e in up_to_fence(entries, "2-0")] == ["1-0", "2-0"]
    assert up_to_fence(entries, "0-5") == []
    assert up_to_fence(entries, "9-0") == entries


@pytest.mark.parametrize(
    ("partitions", "span", "published", "fenced"),
    [
        (16, None, b"8", 8),  # going up: the old count's streams
        (60, b"16", None, 16),  # the first publish above what producers wrote with
        (16, b"32", b"8", 32),  # going up while streams of an older, larger count still wait: all of them
        (16, None, b"16", 0),  # the same count
        (8, b"16", b"16", 0),  # going down: the span rule orders that
        (16, None, None, 0),  # nothing written yet
        (16, b"16", None, 0),  # producers wrote with the same count
    ],
)
def test_streams_are_fenced_only_when_the_count_goes_up(
    partitions: int, span: bytes | None, published: bytes | None, fenced: int
) -> None:
    assert fence_candidates(partitions, span, published) == fenced
