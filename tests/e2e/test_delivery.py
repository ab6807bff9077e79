"""The main job end to end: producers → Redis → real worker processes → the stand-in over HTTP."""

from __future__ import annotations

from collections import Counter, defaultdict

import orjson
import pytest

from producers.keys import stream_key
from producers.wire import partition_for
from tests.e2e.conftest import backlog, standin_workspaces, wait_for, wait_until_drained
from worker.local.examples import origin_examples, synthetic_events

pytestmark = pytest.mark.e2e


def operations_by_action(accepted: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for record in accepted:
        op = record["operation"]
        grouped[f"{op['type']}:{op['action']}"].append(op)
    return grouped


def test_origin_document_examples_arrive_as_the_mapping_says(stand_in, make_fleet, redis_client, key_prefix):
    # Given one worker and the origin document's seven example events
    fleet = make_fleet(standin_workspaces(stand_in.url, "a"))
    fleet.start(1)
    with fleet.producer("wsa") as producer:
        assert producer.enqueue_many(origin_examples()).enqueued == 7
    # When they are delivered
    wait_for(lambda: len(stand_in.accepted("site-a")) >= 7, 30, "seven accepted operations")
    ops = operations_by_action(stand_in.accepted("site-a"))
    # Then each became the operation mapping.md describes
    (identify,) = ops["person:identify"]
    assert identify["identifiers"] == {"id": "97980cfea0067"}
    assert identify["attributes"]["created_at"] == 1679407797
    assert identify["attributes"]["email"] == "cool.person@example.com"
    assert {"first_name", "last_name", "plan"} <= identify["attributes"].keys()
    (group,) = ops["object:identify"]
    assert group["identifiers"] == {"object_type_id": "1", "object_id": "example-company"}
    assert group["cio_relationships"][0]["identifiers"] == {"id": "97980cfea0067"}
    (device,) = ops["person:add_device"]
    assert device["device"]["platform"] == "android"
    assert device["device"]["token"].startswith("cEFolG5uRDGPizsaUh4X4m:APA91b")
    (deleted,) = ops["person:delete_device"]
    assert deleted["device"]["token"] == device["device"]["token"]
    (event,) = ops["person:event"]
    assert (event["name"], event["id"]) == ("enrolled", "i6yatl")
    (page,) = ops["person:page"]
    assert page["name"] == "http://www.example.com"
    (screen,) = ops["person:screen"]
    assert screen["name"] == "home"
    wait_until_drained(redis_client, key_prefix, "wsa")


@pytest.mark.parametrize("broker", ["redis", "amqp"])
def test_ten_thousand_events_over_three_workspaces_arrive_once_in_order(
    stand_in, make_fleet, redis_client, key_prefix, broker
):
    # Given two workers, their drain tasks on the events Redis or on RabbitMQ, and 10,000 events over three workspaces
    fleet = make_fleet(standin_workspaces(stand_in.url, "abc"), broker=broker)
    fleet.start(2)
    events = synthetic_events(10_000, people=300)
    by_workspace = {name: events[i::3] for i, name in enumerate(("wsa", "wsb", "wsc"))}
    for name, batch in by_workspace.items():
        with fleet.producer(name) as producer:
            assert producer.enqueue_many(batch).enqueued == len(batch)
    # When every one is accepted
    wait_for(lambda: len(stand_in.accepted()) >= 10_000, 120, "10,000 accepted operations")
    # Then each arrived exactly once, at its own workspace, in per-person order
    for name, site in (("wsa", "site-a"), ("wsb", "site-b"), ("wsc", "site-c")):
        accepted = stand_in.accepted(site)
        seqs = [record["operation"]["attributes"]["seq"] for record in accepted]
        assert Counter(seqs) == Counter(event_seq(event) for event in by_workspace[name])
        assert max(Counter(seqs).values()) == 1
        assert_per_person_order(accepted)
        wait_until_drained(redis_client, key_prefix, name)
    # And every request was authenticated, under 500,000 bytes, and answered 200
    requests = [r for r in stand_in.requests() if r["path"] == "/api/v2/batch"]
    assert requests and all(r["authorization_ok"] and r["status"] == 200 for r in requests)
    assert max(r["body_bytes"] for r in requests) < 500_000


def event_seq(event: dict) -> int:
    return int((event.get("properties") or event.get("traits") or {})["seq"])


def assert_per_person_order(accepted: list[dict]) -> None:
    last: dict[str, int] = {}
    for record in accepted:
        op = record["operation"]
        identifiers = op["cio_relationships"][0]["identifiers"] if op["type"] == "object" else op["identifiers"]
        person = orjson.dumps(identifiers).decode()
        seq = op["attributes"]["seq"]
        assert seq > last.get(person, -1), f"order inversion for {person}: {seq} after {last[person]}"
        last[person] = seq


def test_events_written_by_a_raw_xadd_are_delivered_by_the_sweeper(stand_in, make_fleet, redis_client, key_prefix):
    # Given a worker, and events written with plain XADD by a non-Python producer (no kick)
    fleet = make_fleet(standin_workspaces(stand_in.url, "a"))
    fleet.start(1)
    for index in range(20):
        event = {"type": "track", "userId": f"raw-{index}", "event": "Raw", "messageId": f"raw-{index}"}
        stream = stream_key(key_prefix, "wsa", partition_for(event, 16))
        redis_client.xadd(stream, {"v": "1", "event": orjson.dumps(event)})
    # When the sweeper finds them; Then all are delivered and the streams are empty
    wait_for(lambda: len(stand_in.accepted("site-a")) >= 20, 30, "20 raw events delivered")
    assert sorted(r["operation"]["id"] for r in stand_in.accepted("site-a")) == sorted(f"raw-{i}" for i in range(20))
    wait_for(lambda: backlog(redis_client, key_prefix, "wsa") == 0, 10, "empty streams")
