"""Packing operations into /api/v2/batch bodies."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.pipeline.batching import batch_body, body_size, linger_ms, pack


def test_body_is_a_json_batch_of_the_items_in_order():
    items = [orjson.dumps({"n": n}) for n in range(3)]
    assert orjson.loads(batch_body(items)) == {"batch": [{"n": 0}, {"n": 1}, {"n": 2}]}


@pytest.mark.parametrize("sizes", [[], [5], [5, 7, 9]])
def test_body_size_matches_the_real_body(sizes):
    items = [b"x" * size for size in sizes]
    assert body_size(sizes) == len(batch_body(items))


def test_runs_are_cut_at_the_item_cap():
    assert pack([10] * 5, max_bytes=10_000, max_items=2) == [range(2), range(2, 4), range(4, 5)]


def test_runs_are_cut_before_the_byte_cap():
    # Given bodies of envelope (12) + items + commas, a 40-byte cap fits two 12-byte items but not three.
    assert pack([12, 12, 12], max_bytes=40, max_items=100) == [range(2), range(2, 3)]


def test_an_item_too_large_alone_gets_its_own_run():
    assert pack([5, 100, 5], max_bytes=50, max_items=100) == [range(1), range(1, 2), range(2, 3)]


@given(
    st.lists(st.integers(min_value=1, max_value=400), max_size=60),
    st.integers(min_value=420, max_value=3_000),
    st.integers(min_value=1, max_value=20),
)
def test_runs_cover_every_item_once_in_order_within_both_caps(sizes, max_bytes, max_items):
    runs = pack(sizes, max_bytes=max_bytes, max_items=max_items)
    assert [index for run in runs for index in run] == list(range(len(sizes)))
    for run in runs:
        assert len(run) <= max_items
        assert body_size([sizes[i] for i in run]) <= max_bytes


@pytest.mark.parametrize(
    ("head_age_ms", "linger", "expected"),
    [
        (0, 50, 50),  # a fresh head waits the whole linger
        (20, 50, 30),
        (50, 50, 0),
        (900, 50, 0),  # an old head goes at once
        (-45_000, 50, 50),  # an id 45 s ahead of the clock waits the linger, not the skew
        (-1, 0, 0),
    ],
)
def test_the_linger_is_never_longer_than_linger_ms_whatever_the_head_age(head_age_ms, linger, expected):
    assert linger_ms(head_age_ms, linger) == expected
