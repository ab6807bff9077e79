"""Runs of transient failures with real worker processes: one event that makes Customer.io fail is isolated."""

from __future__ import annotations

import pytest

from producers.keys import dlq_key, retry_key
from tests.e2e.conftest import standin_workspaces, wait_for, wait_until_drained
from worker.deadletter.api import DeadLetter

pytestmark = pytest.mark.e2e

WINDOW_S = 3.0


def event(n: int, **extra: object) -> dict:
    return {"type": "track", "userId": "p", "event": "Ordered", "messageId": f"m{n}", **extra}


def first_deliveries(accepted: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for record in accepted:
        seen.setdefault(record["operation"]["id"], None)
    return list(seen)


def test_one_event_that_makes_customer_io_answer_500_is_isolated_and_the_49_others_delivered_in_order(
    stand_in, make_fleet, redis_client, key_prefix
):
    # Given one person's 50 events, the 21st of which makes Customer.io answer 500 in whatever batch holds it
    stand_in.set_faults([{"site_id": "site-a", "fail_batch_containing": "poison-5xx"}])
    retry = {"CIO_RETRY__BASE_S": "0.05", "CIO_RETRY__CAP_S": "0.2", "CIO_RETRY__WINDOW_S": str(WINDOW_S)}
    fleet = make_fleet(standin_workspaces(stand_in.url, "a"), **retry)
    events = [event(n) for n in range(50)]
    events[20]["properties"] = {"tag": "poison-5xx"}
    with fleet.producer("wsa") as producer:
        producer.enqueue_many(events)
    # When a worker drains the partition
    fleet.start(1)
    # Then only the poison event reaches the dead-letter queue, after the window, with the whole run counted
    wait_for(lambda: redis_client.xlen(dlq_key(key_prefix, "wsa")) >= 1, 30, "the poison event's dead letter")
    wait_for(lambda: len(first_deliveries(stand_in.accepted("site-a"))) >= 49, 20, "the 49 others")
    wait_until_drained(redis_client, key_prefix, "wsa")
    letters = [DeadLetter.from_fields(fields) for _, fields in redis_client.xrange(dlq_key(key_prefix, "wsa"))]
    assert [(x.message_id, x.outcome, x.status) for x in letters] == [("m20", "failed_after_retries", 500)]
    assert letters[0].last_failed_at_ms - letters[0].first_failed_at_ms >= WINDOW_S * 1000
    assert letters[0].attempts > 3
    # And the 49 others are delivered in the person's order
    accepted = stand_in.accepted("site-a")
    assert first_deliveries(accepted) == [f"m{n}" for n in range(50) if n != 20]
    # And the events before it were delivered before its own run of failures began, not held for the window
    m19_at = min(record["received_at"] for record in accepted if record["operation"]["id"] == "m19")
    assert m19_at <= letters[0].first_failed_at_ms / 1000
    assert not redis_client.exists(retry_key(key_prefix, "wsa", 0))
