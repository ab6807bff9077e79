"""The Redis round trips of a drain's hot path (real Redis, the stand-in on 127.0.0.1): counted, not timed.

A batch costs a fixed number of round trips on top of a drain's own (take the lease, the span, the first read,
release...): the fenced reservation (the limiter's slot, lease checked and renewed: the fence before the POST) and
the fenced settle, which reads the next entries in the same step (lease renewed, entries, retry state, clock).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.integration.test_pipeline import KEY, SITE, make_deps, put, stream_len, track
from tests.integration.test_pipeline import close_http_clients as close_http_clients
from worker.local.fake_customerio import FakeCustomerIO
from worker.pipeline.drain import drain
from worker.store.partitions import PartitionStore
from worker.store.ratelimit import WorkspaceLimiter

#: Round trips per full batch on the hot path (no linger, no failure, the limiter's slot is now).
ROUND_TRIPS_PER_BATCH = 2
BATCH = 20


@pytest.fixture
def stand_in() -> Iterator[FakeCustomerIO]:
    fake = FakeCustomerIO(credentials={SITE: KEY}).start()
    yield fake
    fake.stop()


class CountingRedis(redis.Redis):
    """A client on the same pool that counts the commands it sends: each one is a round trip."""

    commands = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        CountingRedis.commands += 1
        return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        CountingRedis.commands += 1  # a pipeline is sent in one round trip (its commands are not counted one by one)
        return super().pipeline(transaction, shard_hint)


def round_trips_to_drain(redis_client: redis.Redis, prefix: str, url: str, batches: int) -> int:
    """The round trips of one drain of ``batches`` full batches of one partition."""
    counting = CountingRedis(connection_pool=redis_client.connection_pool)
    # A rate limit far above what the test sends: each slot is now (a sender that sleeps for one renews once more)
    unlimited = {"rate_limit_rps": 100_000}
    deps = make_deps(redis_client, prefix, url, max_events=BATCH, read_count=BATCH, workspace=unlimited)
    deps.store = PartitionStore(counting, prefix)
    deps.limiter = WorkspaceLimiter(counting, prefix)
    put(redis_client, prefix, *[track(n) for n in range(batches * BATCH)])
    deps.store.now_ms()  # the scripts' first calls load them (NOSCRIPT, then EVAL): not the hot path
    CountingRedis.commands = 0
    assert drain(deps, "ws", 0).action == "done"
    assert stream_len(redis_client, prefix) == 0
    return CountingRedis.commands


def test_each_full_batch_costs_two_redis_round_trips(redis_client, key_prefix, stand_in):
    # Given a warmed-up drain (its scripts loaded), and the round trips of a drain of one batch
    round_trips_to_drain(redis_client, key_prefix, stand_in.url, 1)
    one = round_trips_to_drain(redis_client, key_prefix, stand_in.url, 1)
    # When the same drain moves five batches
    five = round_trips_to_drain(redis_client, key_prefix, stand_in.url, 5)
    # Then each batch more costs two round trips: the fenced reservation, the fenced settle and next read
    assert (five - one) / 4 == ROUND_TRIPS_PER_BATCH
    assert len(stand_in.accepted()) == (1 + 1 + 5) * BATCH
