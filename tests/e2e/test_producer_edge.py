"""The producer's edge against a real worker process: its in-script kick is a task the worker takes (issue 13.16),
and a workspace the running fleet does not serve is refused (issue 13.2)."""

from __future__ import annotations

import pytest

from producers import UnknownWorkspace
from producers.keys import drain_queue, workspaces_key
from tests.e2e.conftest import standin_workspaces, wait_for, wait_until_drained

pytestmark = pytest.mark.e2e


def test_a_real_worker_takes_the_kick_of_the_enqueue_script_and_unknown_workspaces_are_refused(
    stand_in, make_fleet, redis_client, key_prefix
):
    # Given a worker whose sweeper went round once (it published its workspaces) and then sleeps for an hour, so
    # that only a producer's kick can start a drain
    fleet = make_fleet(standin_workspaces(stand_in.url, "a"))
    fleet.start(1, CIO_SWEEP_INTERVAL_S="3600")
    wait_for(lambda: redis_client.hkeys(workspaces_key(key_prefix)) == [b"wsa"], 20, "the published workspaces")
    # When a producer enqueues events of several people (its script queues the drain tasks, no Celery involved)
    with fleet.producer("wsa") as producer:
        events = [
            {"type": "track", "userId": f"user-{n % 7}", "event": "Kicked", "messageId": f"k-{n}"} for n in range(20)
        ]
        assert producer.enqueue_many(events).enqueued == 20
    # Then the worker takes those tasks and delivers every event
    wait_for(lambda: len(stand_in.accepted("site-a")) >= 20, 30, "20 accepted operations")
    assert sorted(op["operation"]["id"] for op in stand_in.accepted("site-a")) == sorted(f"k-{n}" for n in range(20))
    wait_until_drained(redis_client, key_prefix, "wsa")
    assert redis_client.llen(drain_queue(key_prefix)) == 0
    # And a producer of a workspace the fleet does not serve is refused, naming the ones it does
    with fleet.producer("wsx") as producer, pytest.raises(UnknownWorkspace, match=r"'wsx'.*it serves: wsa"):
        producer.track("user-1", "Lost")
