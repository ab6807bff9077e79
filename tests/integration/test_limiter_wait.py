"""A sender waiting for the fleet-wide rate limiter, against the real Redis (no HTTP request is made)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from producers.keys import lease_key, rate_key
from worker.delivery import CustomerIOClient
from worker.pipeline.ports import Deps
from worker.pipeline.sending import BatchSender
from worker.settings import Settings
from worker.store.partitions import PartitionStore
from worker.store.ratelimit import WorkspaceLimiter

#: How much the sender's thread oversleeps: far more than the 10 ms it may be late by and still send.
OVERSLEEP_S = 0.2


@pytest.fixture
def slow_waker(redis_client: redis.Redis, key_prefix: str) -> Iterator[BatchSender]:
    """A sender of a 0.1 request/s workspace (no headroom) whose thread always wakes up 0.2 s late."""
    workspace = {"site_id": "s", "api_key": "k", "rate_limit_rps": 0.1, "rate_limit_headroom": 0}
    settings = Settings(key_prefix=key_prefix, workspaces={"ws": workspace})
    http = CustomerIOClient(settings.http)
    deps = Deps(
        settings=settings,
        store=PartitionStore(redis_client, key_prefix),
        limiter=WorkspaceLimiter(redis_client, key_prefix),
        client=http,
        sleep=lambda seconds: time.sleep(seconds + OVERSLEEP_S),
    )
    # The sender's lease, which its reservations check and renew (the fence)
    redis_client.set(lease_key(key_prefix, "ws", 0), "token", px=60_000)
    yield BatchSender(deps, settings.workspaces["ws"], 0, "token", renew=lambda: None)
    http.close()


def test_a_sender_that_wakes_up_late_gives_its_slot_back_and_goes_at_once(slow_waker, redis_client, key_prefix):
    # Given a workspace whose next free slot is 0.3 s away (the one after it 10 s later)
    seconds, micros = redis_client.time()
    redis_client.set(rate_key(key_prefix, "ws"), seconds * 1_000_000 + micros + 300_000, px=60_000)
    # When the sender reserves it, sleeps, and wakes up 0.2 s after it
    slow_waker._wait_for_limiter()
    # Then, instead of waiting 10 s more for the next slot, it took its missed slot back and may send now:
    # one slot is spent in all, the next one is an interval after now
    seconds, micros = redis_client.time()
    now_us = seconds * 1_000_000 + micros
    assert now_us < int(redis_client.get(rate_key(key_prefix, "ws"))) <= now_us + 10_000_000
