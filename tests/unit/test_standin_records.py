"""The local stand-in's memory of accepted operations: kept whole, in order, and out of the garbage collector's way.

A benchmark's stand-in holds hundreds of thousands of accepted operations. Kept as parsed dicts, they were millions
of objects that every full garbage collection walked: the stand-in stopped answering for 0.6-1.1 s each time, which
showed up as dips in the rate-limited benchmark (issue 12). They are kept encoded now, one bytes object each.
"""

from __future__ import annotations

import gc

import orjson

from worker.local.fake_customerio.records import Recorder, RequestRecord


def request(request_id: int, site_id: str = "site-a", items: int = 1) -> RequestRecord:
    return RequestRecord(
        request_id,
        1_700_000_000.0 + request_id,
        site_id,
        "POST",
        "/api/v2/batch",
        200,
        10,
        items,
        items,
        0.001,
        True,
        "",
    )


def operation(index: int) -> dict[str, object]:
    return {
        "type": "person",
        "action": "event",
        "identifiers": {"id": f"user-{index}"},
        "name": "Order Completed",
        "id": f"m-{index}",
        "attributes": {"products": [{"sku": "a", "price": 9.99}], "total": index},
    }


def test_accepted_operations_come_back_whole_in_arrival_order_with_their_site_and_request() -> None:
    # Given a recorder that accepted operations of two sites in two requests
    recorder = Recorder()
    recorder.add(request(1, "site-a", 2), [operation(1), operation(2)])
    recorder.add(request(2, "site-b"), [operation(3)])
    # When they are read back, all of them and one site's
    everything, site_b = recorder.accepted(), recorder.accepted("site-b")
    # Then each is the operation as accepted, with its site, request and arrival time, in order
    assert [record["operation"] for record in everything] == [operation(1), operation(2), operation(3)]
    assert [(r["site_id"], r["request_id"], r["received_at"]) for r in everything] == [
        ("site-a", 1, 1_700_000_001.0),
        ("site-a", 1, 1_700_000_001.0),
        ("site-b", 2, 1_700_000_002.0),
    ]
    assert site_b == [everything[2]]
    assert recorder.stats()["accepted_by_site"] == {"site-a": 2, "site-b": 1}


def test_the_oldest_accepted_operations_are_dropped_beyond_the_limit() -> None:
    recorder = Recorder(max_records=2)
    for index in range(1, 4):
        recorder.add(request(index), [operation(index)])
    assert [record["operation"]["id"] for record in recorder.accepted()] == ["m-2", "m-3"]
    assert recorder.stats()["accepted"] == 3


def test_accepted_operations_are_not_objects_the_garbage_collector_walks() -> None:
    # Given a recorder, and the number of objects the cyclic garbage collector tracks
    recorder = Recorder()
    gc.collect()
    before = len(gc.get_objects())
    # When it accepts 2,000 operations of nested dicts and lists (about 10 tracked objects each as dicts)
    for index in range(200):
        recorder.add(request(index, items=10), [operation(index * 10 + n) for n in range(10)])
    gc.collect()
    # Then what it keeps adds about one tracked object per request at most, not one per operation or per dict
    assert len(gc.get_objects()) - before < 1_000
    assert len(recorder.accepted()) == 2_000


def test_the_json_of_the_accepted_operations_is_what_accepted_returns() -> None:
    recorder = Recorder()
    assert recorder.accepted_json() == b"[]"
    recorder.add(request(1, "site-a", 2), [operation(1), operation(2)])
    recorder.add(request(2, "site-b"), [operation(3)])
    assert orjson.loads(recorder.accepted_json()) == recorder.accepted()
    assert orjson.loads(recorder.accepted_json("site-b")) == recorder.accepted("site-b")
