"""The worker's Redis client when Redis is black-holed (a partitioned network: connections stay open, silent)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
import redis

from tests.support.redis_gate import RedisGate
from worker.runtime import redis_client
from worker.settings import Settings


@pytest.fixture
def gate(redis_url: str) -> Iterator[RedisGate]:
    relay = RedisGate(redis_url)
    yield relay
    relay.close()


def outcome_within(call: Callable[[], object], deadline_s: float) -> BaseException | None:
    """Run ``call`` in a thread: the exception it raised, or None; fail if it still runs after ``deadline_s``."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(deadline_s)
    assert outcome, f"still waiting for the black-holed Redis after {deadline_s} s"
    return outcome[0]


def test_a_command_to_a_black_holed_redis_times_out_instead_of_hanging(gate):
    # Given the worker's client (as drain threads, the sweeper and metrics use it), connected and working
    settings = Settings(redis_url=gate.url, redis_socket_timeout_s=0.5, redis_connect_timeout_s=0.5)
    client = redis_client(settings)
    assert client.ping() is True
    # When Redis becomes a black hole, then a command fails with a timeout within 8 times the configured one
    # (and before redis-py's own default of 5 s, or never with redis-py < 6: the setting is what bounds it)
    gate.black_hole()
    assert isinstance(outcome_within(client.ping, deadline_s=4), redis.TimeoutError)
    # And it was not sent again on new connections (each would wait as long; the command may have run anyway)
    assert gate.connections == 1
