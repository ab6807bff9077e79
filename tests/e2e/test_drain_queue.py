"""Queued drain tasks stay bounded by the partitions, however long they wait for a thread."""

from __future__ import annotations

import threading
import time

import pytest

from producers.keys import drain_queue
from tests.e2e.conftest import backlog, standin_workspaces, wait_for

pytestmark = pytest.mark.e2e

PARTITIONS = 16
EVENTS = 1_300
#: One task queued per partition, and none in progress, is the most the design allows: 16 tasks in the queue. One
#: more is possible, rarely: the sweeper may kick a partition again whose task a worker took that very moment.
SLACK = 1


class QueueSampler:
    """Samples the length of the drain queue every 20 ms in a background thread."""

    def __init__(self, client, queue: str) -> None:
        self.client = client
        self.queue = queue
        self.lengths: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> QueueSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.lengths.append(int(self.client.llen(self.queue)))


def test_queued_drain_tasks_never_outnumber_the_partitions_under_a_backlog(
    stand_in, make_fleet, redis_client, key_prefix
):
    # Given one worker with 2 threads for 16 busy partitions, 1-second drain slices and Customer.io answering in
    # 150 ms: a drain task waits about 8 s in the queue, longer than a kick used to live (5 s); sweeps every 0.5 s
    stand_in.set_faults([{"latency_ms": 150}])
    workspaces = standin_workspaces(stand_in.url, "a", partitions=PARTITIONS)
    fleet = make_fleet(workspaces, CIO_BATCHING__MAX_EVENTS="5", CIO_WORKSPACE_MAX_SHARE="1", CIO_DRAIN_SLICE_S="1")
    fleet.start(1, concurrency=2)
    events = [{"type": "track", "userId": f"u{n}", "event": "Ordered", "messageId": f"m{n}"} for n in range(EVENTS)]
    # When a backlog of 1,300 events (260 requests, about 20 s of work) drains
    with QueueSampler(redis_client, drain_queue(key_prefix)) as sampler:
        with fleet.producer("wsa") as producer:
            producer.enqueue_many(events)
        wait_for(lambda: backlog(redis_client, key_prefix, "wsa") == 0, 90, "the backlog to drain")
        time.sleep(1.0)  # a few more sweeps after the last event
    # Then the queue never held more than one drain task per partition (plus the slack)
    assert len(sampler.lengths) > 100
    assert max(sampler.lengths) <= PARTITIONS + SLACK, f"queue lengths, one sample a second: {sampler.lengths[::50]}"
    # And every event was delivered
    delivered = {record["operation"]["id"] for record in stand_in.accepted()}
    assert delivered == {event["messageId"] for event in events}
