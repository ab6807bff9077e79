"""A drain's read step (real Redis, the stand-in on 127.0.0.1): bounded by bytes, and a linger bounded by time.

A read step holds at most its byte budget plus one entry, whatever the events' sizes; an event over the size
limit is dead-lettered whole, by its size, without being parsed; and the linger before a short batch never
outlasts ``linger_ms``, whatever the stream ids say, nor a shutdown.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import orjson
import pytest

from producers._events import MAX_EVENT_BYTES
from producers.keys import lease_key, stream_key
from tests.integration.test_pipeline import KEY, SITE, dead_letters, make_deps, put, stream_len, track
from worker.local.fake_customerio import FakeCustomerIO
from worker.pipeline.drain import drain
from worker.settings import BatchingSettings
from worker.store.partitions import Entry, Head, PartitionStore

BUDGET = 100_000


@pytest.fixture
def stand_in() -> Iterator[FakeCustomerIO]:
    fake = FakeCustomerIO(credentials={SITE: KEY}).start()
    yield fake
    fake.stop()


def entry_size(fields: dict[bytes, bytes]) -> int:
    return sum(len(name) + len(value) for name, value in fields.items())


def fill(client, prefix: str, sizes: list[int]) -> list[bytes]:
    """XADD one entry per size (its event padded to that many bytes); return the entry ids."""
    key = stream_key(prefix, "ws", 0)
    return [client.xadd(key, {"v": "1", "event": b"x" * size}) for size in sizes]


@pytest.mark.parametrize(
    "sizes",
    [
        [30_000] * 10,  # the budget falls between two entries
        [1_000] * 50 + [90_000, 5_000, 200_000, 1_000],  # a large entry after many small ones
        [250_000, 10, 10],  # the first entry alone is over the budget
        [10] * 500,  # small entries: the count, not the bytes, ends the step
    ],
)
def test_a_read_step_returns_the_oldest_entries_within_the_byte_budget_plus_one(redis_client, key_prefix, sizes):
    # Given entries of these sizes
    ids = fill(redis_client, key_prefix, sizes)
    store = PartitionStore(redis_client, key_prefix)
    # When the partition is read step by step, each step's entries settled before the next
    seen: list[bytes] = []
    while entries := store.read("ws", 0, 200, BUDGET):
        sizes_read = [entry_size(dict(entry.fields)) for entry in entries]
        # Then each step is within the budget, or one entry alone, and at most the count
        assert sum(sizes_read) <= BUDGET or len(entries) == 1
        assert len(entries) <= 200
        # And it stops only where the next entry would not fit (the budget is used, not wasted)
        rest = redis_client.xrange(stream_key(key_prefix, "ws", 0), count=len(entries) + 1)
        if len(rest) > len(entries) and len(entries) < 200:
            assert sum(sizes_read) + entry_size(rest[-1][1]) > BUDGET
        seen += [entry.id.encode() for entry in entries]
        redis_client.xdel(stream_key(key_prefix, "ws", 0), *[entry.id for entry in entries])
    # And every entry was read exactly once, in order, fields intact
    assert seen == ids


def test_a_read_step_keeps_every_field_of_an_entry(redis_client, key_prefix):
    fields = {b"v": b"1", b"event": b"\xff\x00binary", b"foo": b"bar"}
    entry_id = redis_client.xadd(stream_key(key_prefix, "ws", 0), fields)
    store = PartitionStore(redis_client, key_prefix)
    assert store.read("ws", 0, 10, BUDGET) == [Entry(entry_id.decode(), fields)]


class RecordingStore(PartitionStore):
    """The real store, remembering the total field bytes of each read step."""

    steps: list[tuple[int, int]]

    def read_head(self, *args, **kwargs) -> Head | None:
        head = super().read_head(*args, **kwargs)
        entries = head.entries if head is not None else []
        self.steps.append((len(entries), sum(entry_size(dict(entry.fields)) for entry in entries)))
        return head


def big_track(n: int, size: int) -> bytes:
    """A track event of about ``size`` bytes that would map to a small operation (``context`` is not sent)."""
    return orjson.dumps(track(n, context={"padding": "p" * size}))


def test_oversize_events_are_dead_lettered_whole_by_their_size_and_read_within_the_budget(
    redis_client, key_prefix, stand_in
):
    # Given small events around three 1 MB events (deliverable if parsed: the padding is in `context`)
    deps = make_deps(redis_client, key_prefix, stand_in.url)
    store = RecordingStore(redis_client, key_prefix)
    store.steps = []
    deps.store = store
    big = {n: big_track(n, 1_000_000) for n in (1, 2, 4)}
    put(redis_client, key_prefix, track(0), big[1], big[2], track(3), big[4], track(5))
    # When the partition is drained
    drain(deps, "ws", 0)
    # Then every read step held at most the budget (500 KB) plus one entry
    max_bytes = deps.settings.batching.max_bytes
    assert store.steps and all(total <= max_bytes or count == 1 for count, total in store.steps)
    # And the small events were delivered, the large ones dead-lettered with their size and bytes intact
    assert [r["operation"]["id"] for r in stand_in.accepted()] == ["m0", "m3", "m5"]
    letters = dead_letters(redis_client, key_prefix)
    assert [letter.event for letter in letters] == [big[1], big[2], big[4]]
    for letter in letters:
        assert letter.outcome == "rejected"
        assert f"over the {MAX_EVENT_BYTES}-byte limit" in letter.reason
    assert stream_len(redis_client, key_prefix) == 0


def lingering_deps(redis_client, key_prefix, url, linger_ms: int, stop: threading.Event | None = None):
    """Deps whose waits are recorded; ``stop`` is set during the first wait (a shutdown mid-linger)."""
    deps = make_deps(redis_client, key_prefix, url)
    deps.settings = deps.settings.model_copy(update={"batching": BatchingSettings(linger_ms=linger_ms)})
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        if stop is None:
            return False
        stop.set()
        return stop.wait(seconds)

    deps.sleep = wait  # type: ignore[assignment]  # records a plain sleep too, if one were used
    deps.wait_or_stop = wait
    deps.stopping = stop.is_set if stop is not None else deps.stopping
    return deps, waits


def put_ahead_of_the_clock(client, prefix: str, ahead_ms: int, event: dict) -> None:
    now_s, micros = client.time()
    entry_id = f"{now_s * 1000 + micros // 1000 + ahead_ms}-0"
    client.xadd(stream_key(prefix, "ws", 0), {"v": "1", "event": orjson.dumps(event)}, id=entry_id)


def test_an_entry_ahead_of_the_clock_lingers_no_longer_than_linger_ms(redis_client, key_prefix, stand_in):
    # Given an entry whose id is 60 s ahead of Redis's clock
    deps, waits = lingering_deps(redis_client, key_prefix, stand_in.url, linger_ms=200)
    put_ahead_of_the_clock(redis_client, key_prefix, 60_000, track(0))
    # When the partition is drained
    drain(deps, "ws", 0)
    # Then it waited for company at most linger_ms, and was delivered
    assert waits and max(waits) <= 0.2
    assert [r["operation"]["id"] for r in stand_in.accepted()] == ["m0"]


def test_a_shutdown_during_the_linger_ends_the_drain_without_sending(redis_client, key_prefix, stand_in):
    # Given a drain lingering on a lone entry when the worker starts shutting down
    stop = threading.Event()
    deps, waits = lingering_deps(redis_client, key_prefix, stand_in.url, linger_ms=5_000, stop=stop)
    put_ahead_of_the_clock(redis_client, key_prefix, 60_000, track(0))
    # When the partition is drained
    result = drain(deps, "ws", 0)
    # Then the linger ended with the shutdown, nothing was sent, and the entry waits for the rest of the fleet
    assert len(waits) == 1
    assert stand_in.requests() == []
    assert stream_len(redis_client, key_prefix) == 1
    assert result.action == "requeue"
    assert redis_client.get(lease_key(key_prefix, "ws", 0)) == b"kicked"
