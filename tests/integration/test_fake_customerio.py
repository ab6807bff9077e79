"""The fake Customer.io over real HTTP on 127.0.0.1: auth, limits, schema checks, faults, records, control, CLI."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support import fake_cio as support
from tests.support.fake_cio import FakeCioClient, start_fake_cio_process
from worker.local.fake_customerio import FakeCustomerIO

SITE, KEY = "site-a", "key-a-secret"
OTHER_SITE, OTHER_KEY = "site-b", "key-b-secret"

#: One valid operation of every (type, action) pair the schema defines.
VALID_OPERATIONS: list[dict[str, Any]] = [
    {"type": "person", "action": "identify", "identifiers": {"id": "42"}, "attributes": {"plan": "pro"}},
    {"type": "person", "action": "identify", "identifiers": {"email": "a@example.com"}, "timestamp": 1700000000},
    {"type": "person", "action": "delete", "identifiers": {"cio_id": "a3000001"}},
    {"type": "person", "action": "event", "identifiers": {"id": "42"}, "name": "purchase", "id": "m-1"},
    {"type": "person", "action": "event", "identifiers": {"anonymous_id": "anon-1"}, "name": "viewed"},
    {"type": "person", "action": "page", "identifiers": {"id": "42"}, "name": "https://example.com/"},
    {"type": "person", "action": "screen", "identifiers": {"phone": "+14155552671"}, "name": "Home"},
    {
        "type": "person",
        "action": "add_relationships",
        "identifiers": {"id": "42"},
        "cio_relationships": [{"identifiers": {"object_type_id": "1", "object_id": "acme"}}],
    },
    {
        "type": "person",
        "action": "delete_relationships",
        "identifiers": {"id": "42"},
        "cio_relationships": [{"identifiers": {"cio_object_id": "obb7fd050101"}}],
    },
    {
        "type": "person",
        "action": "add_device",
        "identifiers": {"id": "42"},
        "device": {"token": "tok-1", "platform": "ios", "last_used": 1700000000},
    },
    {"type": "person", "action": "delete_device", "identifiers": {"id": "42"}, "device": {"token": "tok-1"}},
    {"type": "person", "action": "merge", "primary": {"id": "42"}, "secondary": {"email": "old@example.com"}},
    {"type": "person", "action": "suppress", "identifiers": {"id": "42"}},
    {"type": "person", "action": "unsuppress", "identifiers": {"id": "42"}},
    {
        "type": "object",
        "action": "identify",
        "identifiers": {"object_type_id": "1", "object_id": "acme"},
        "attributes": {"name": "Acme"},
        "cio_relationships": [{"identifiers": {"id": "42"}, "relationship_attributes": {"role": "admin"}}],
    },
    {
        "type": "object",
        "action": "identify_anonymous",
        "identifiers": {"object_type_id": "1", "object_id": "acme"},
        "cio_relationships": [{"identifiers": {"anonymous_id": "anon-1"}}],
    },
    {"type": "object", "action": "delete", "identifiers": {"object_type_id": "1", "object_id": "acme"}},
    {
        "type": "object",
        "action": "add_relationships",
        "identifiers": {"object_type_id": "1", "object_id": "acme"},
        "cio_relationships": [{"identifiers": {"id": "42"}}],
    },
    {
        "type": "object",
        "action": "delete_relationships",
        "identifiers": {"cio_object_id": "obb7fd050101"},
        "cio_relationships": [{"identifiers": {"email": "a@example.com"}}],
    },
    {
        "type": "delivery",
        "action": "event",
        "identifiers": {"id": "RPIyMTM6OjEyMzQ="},
        "name": "opened",
        "attributes": {"device_token": "tok-1"},
    },
]

#: The shared fixtures, used by name.
fake_cio = support.fake_cio
fake_cio_process = support.fake_cio_process

EVENT = {"type": "person", "action": "event", "identifiers": {"id": "42"}, "name": "ok"}


def event(name: str = "ok", **extra: Any) -> dict[str, Any]:
    return {**EVENT, "name": name, **extra}


@pytest.fixture
def fake() -> Iterator[FakeCustomerIO]:
    """A fake that knows two workspaces, with a seeded random source."""
    with FakeCustomerIO(credentials={SITE: KEY, OTHER_SITE: OTHER_KEY}, seed=7).start() as server:
        yield server


@pytest.fixture
def api(fake: FakeCustomerIO) -> Iterator[httpx.Client]:
    """A Track API client of workspace ``SITE``."""
    with httpx.Client(base_url=fake.url, auth=(SITE, KEY), timeout=10) as client:
        yield client


@pytest.fixture
def control(fake: FakeCustomerIO) -> Iterator[FakeCioClient]:
    client = FakeCioClient(fake.url)
    yield client
    client.close()


def post_batch(client: httpx.Client, operations: list[Any], **kwargs: Any) -> httpx.Response:
    return client.post("/api/v2/batch", content=orjson.dumps({"batch": operations}), **kwargs)


def post_and_keep_outcome(client: httpx.Client, operations: list[Any], outcomes: list[object]) -> None:
    try:
        outcomes.append(post_batch(client, operations, timeout=3).status_code)
    except httpx.HTTPError as exc:
        outcomes.append(exc)


# --- authentication ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [None, (SITE, "wrong"), ("unknown-site", KEY), (SITE, ""), (OTHER_SITE, KEY)],
    ids=["missing", "wrong-key", "unknown-site", "empty-key", "other-sites-key"],
)
def test_wrong_or_missing_credentials_are_answered_401_and_nothing_is_accepted(fake, auth):
    response = httpx.post(f"{fake.url}/api/v2/batch", json={"batch": [EVENT]}, auth=auth)

    assert response.status_code == 401
    assert fake.accepted() == []
    assert fake.requests()[-1]["authorization_ok"] is False


@pytest.mark.parametrize("header", ["Bearer abc", "Basic not-base64!", "Basic " + "c2l0ZS1h"])
def test_an_unreadable_authorization_header_is_answered_401(fake, header):
    response = httpx.post(f"{fake.url}/api/v2/batch", json={"batch": [EVENT]}, headers={"Authorization": header})

    assert response.status_code == 401


def test_without_configured_credentials_any_non_empty_pair_is_accepted(fake_cio):
    ok = httpx.post(f"{fake_cio.url}/api/v2/batch", json={"batch": [EVENT]}, auth=("any", "thing"))
    empty = httpx.post(f"{fake_cio.url}/api/v2/batch", json={"batch": [EVENT]}, auth=("any", ""))

    assert (ok.status_code, empty.status_code) == (200, 401)


def test_the_region_lookup_checks_credentials_and_names_the_fake(fake, api):
    response = api.get("/api/v1/accounts/region")

    assert response.status_code == 200
    assert response.json()["url"] == fake.url
    assert httpx.get(f"{fake.url}/api/v1/accounts/region").status_code == 401


# --- limits and malformed bodies ---------------------------------------------------------------------------


def test_a_batch_body_over_500000_bytes_is_answered_413(fake, api):
    big = [event(attributes={"pad": "x" * 30_000}) for _ in range(17)]

    response = post_batch(api, big)

    assert response.status_code == 413
    assert fake.accepted() == []


def test_an_entity_body_over_32000_bytes_is_answered_413(fake, api):
    response = api.post("/api/v2/entity", json=event(attributes={"pad": "x" * 32_000}))

    assert response.status_code == 413


def test_a_batch_item_over_32000_bytes_is_refused_alone_in_a_207(fake, api):
    response = post_batch(api, [event("first"), event(attributes={"pad": "x" * 32_000}), event("third")])

    assert response.status_code == 207
    assert [error["batch_index"] for error in response.json()["errors"]] == [1]
    assert [record["operation"]["name"] for record in fake.accepted()] == ["first", "third"]


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"batch": {}}', b'{"items": []}', b""], ids=repr)
def test_a_body_that_is_not_json_or_has_no_batch_array_is_answered_400(fake, api, body):
    response = api.post("/api/v2/batch", content=body)

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["reason"]
    assert error["message"]


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/api/v2/batch", 405), ("POST", "/api/v9/x", 404)])
def test_unknown_paths_and_methods_are_refused(api, method, path, status):
    assert api.request(method, path).status_code == status


# --- schema validation ------------------------------------------------------------------------------------------


def test_a_valid_batch_of_every_operation_kind_is_accepted_whole(fake, api):
    response = post_batch(api, VALID_OPERATIONS)

    assert (response.status_code, response.json()) == (200, {})
    assert [record["operation"] for record in fake.accepted()] == VALID_OPERATIONS


@pytest.mark.parametrize(
    ("operation", "field"),
    [
        ({**EVENT, "name": None}, "name"),
        ({key: value for key, value in EVENT.items() if key != "name"}, "name"),
        ({**EVENT, "identifiers": {"id": "42", "email": "a@example.com"}}, "identifiers"),
        ({**EVENT, "identifiers": {}}, "identifiers"),
        ({**EVENT, "action": "teleport"}, "action"),
        ({**EVENT, "type": "robot"}, "type"),
        ({**EVENT, "timestamp": "yesterday"}, "timestamp"),
        ({"type": "person", "action": "add_device", "identifiers": {"id": "1"}, "device": {"platform": "ios"}}, ""),
        ("just a string", ""),
    ],
    ids=[
        "null-name",
        "no-name",
        "two-identifiers",
        "no-identifier",
        "bad-action",
        "bad-type",
        "bad-timestamp",
        "no-token",
        "not-object",
    ],
)
def test_an_invalid_item_is_refused_with_its_batch_index_and_the_rest_is_accepted(fake, api, operation, field):
    response = post_batch(api, [event("before"), operation, event("after")])

    assert response.status_code == 207
    [error] = response.json()["errors"]
    assert error["batch_index"] == 1
    assert error["field"].startswith(field)
    assert error["reason"]
    assert error["message"]
    assert [record["operation"]["name"] for record in fake.accepted()] == ["before", "after"]


def test_a_valid_entity_is_accepted_and_an_invalid_one_is_answered_400(fake, api):
    ok = api.post("/api/v2/entity", json=event("single"))
    bad = api.post("/api/v2/entity", json={**EVENT, "name": 3})

    assert (ok.status_code, bad.status_code) == (200, 400)
    assert bad.json()["errors"][0]["field"] == "name"
    assert [record["operation"]["name"] for record in fake.accepted()] == ["single"]


def test_with_validation_off_an_invalid_item_is_accepted():
    with FakeCustomerIO(validate=False).start() as fake:
        response = httpx.post(f"{fake.url}/api/v2/batch", json={"batch": [{"nonsense": 1}]}, auth=("s", "k"))

        assert response.status_code == 200
        assert len(fake.accepted()) == 1


# --- faults -----------------------------------------------------------------------------------------------------


def test_latency_delays_the_answer_and_still_accepts(fake, api):
    fake.set_faults({"latency_ms": 200})

    started = time.monotonic()
    response = post_batch(api, [EVENT])

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.2
    assert fake.requests()[-1]["fault"] == "latency"
    assert len(fake.accepted()) == 1


@pytest.mark.parametrize(("rate", "expected"), [(1.0, {502}), (0.0, {200})])
def test_error_rate_answers_the_configured_statuses_at_that_rate(fake, api, rate, expected):
    fake.set_faults({"error_rate": rate, "error_statuses": [502]})

    statuses = {post_batch(api, [EVENT]).status_code for _ in range(10)}

    assert statuses == expected


def test_a_partial_error_rate_fails_some_requests_and_accepts_the_others(fake, api):
    fake.set_faults({"error_rate": 0.5})

    statuses = [post_batch(api, [EVENT]).status_code for _ in range(40)]

    assert set(statuses) == {200, 500, 503}
    assert len(fake.accepted()) == statuses.count(200)


def test_a_hang_holds_the_connection_then_answers_503_without_accepting(fake, api):
    fake.set_faults({"hang_rate": 1.0, "hang_s": 0.3})

    started = time.monotonic()
    response = post_batch(api, [EVENT])

    assert response.status_code == 503
    assert time.monotonic() - started >= 0.3
    assert fake.accepted() == []


def test_a_hang_past_the_client_timeout_times_the_client_out_and_can_close_without_answering(fake, api):
    fake.set_faults({"hang_rate": 1.0, "hang_s": 0.3, "hang_close": True})

    with pytest.raises(httpx.ReadTimeout):
        post_batch(api, [EVENT], timeout=0.1)
    with pytest.raises(httpx.RemoteProtocolError):
        post_batch(api, [EVENT], timeout=5)

    assert {record["status"] for record in fake.requests()} == {0}
    assert fake.stats()["requests_by_status"] == {"closed": 2}


def test_a_hanging_request_does_not_block_other_requests(fake, api):
    fake.set_faults([{"site_id": SITE, "hang_rate": 1.0, "hang_s": 5}])
    outcomes: list[object] = []
    hanging = threading.Thread(target=post_and_keep_outcome, args=(api, [EVENT], outcomes))
    hanging.start()

    with httpx.Client(base_url=fake.url, auth=(OTHER_SITE, OTHER_KEY)) as other:
        started = time.monotonic()
        statuses = [post_batch(other, [EVENT]).status_code for _ in range(5)]
        elapsed = time.monotonic() - started

    assert statuses == [200] * 5
    assert elapsed < 2
    assert outcomes == []  # still hanging
    fake.stop()  # ends the hang early
    hanging.join(5)
    assert len(outcomes) == 1


def test_stats_count_the_requests_answered_at_once_and_keep_the_most(fake, api):
    # Given three requests that hang at the stand-in, each from its own thread
    fake.set_faults([{"hang_rate": 1.0, "hang_s": 30}])
    outcomes: list[object] = []
    threads = [threading.Thread(target=post_and_keep_outcome, args=(api, [EVENT], outcomes)) for _ in range(3)]
    for thread in threads:
        thread.start()
    # When they are all being answered; Then the stats count them, and keep the most once they are answered
    deadline = time.monotonic() + 20
    while fake.stats()["in_flight"] < 3:
        assert time.monotonic() < deadline, fake.stats()
        time.sleep(0.05)
    fake.stop()  # ends the hangs
    for thread in threads:
        thread.join(10)
    deadline = time.monotonic() + 20
    while fake.stats()["in_flight"]:
        assert time.monotonic() < deadline, fake.stats()
        time.sleep(0.05)
    assert fake.stats()["max_in_flight"] == 3


def test_force_status_answers_that_status_with_retry_after_and_body(fake, api):
    fake.set_faults({"force_status": 429, "retry_after": 7, "body": {"meta": {"error": "slow down"}}})

    response = post_batch(api, [EVENT])

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json() == {"meta": {"error": "slow down"}}
    assert fake.accepted() == []


def test_rate_limit_answers_429_beyond_the_requests_per_second_of_the_site(fake, api):
    fake.set_faults({"rate_limit_rps": 3, "retry_after": "1"})

    responses = [post_batch(api, [EVENT]) for _ in range(5)]

    assert [response.status_code for response in responses] == [200, 200, 200, 429, 429]
    assert responses[-1].headers["Retry-After"] == "1"
    with httpx.Client(base_url=fake.url, auth=(OTHER_SITE, OTHER_KEY)) as other:
        assert post_batch(other, [EVENT]).status_code == 200


def test_reject_items_matching_refuses_only_the_items_containing_the_substring(fake, api):
    fake.set_faults({"reject_items_matching": "poison"})

    response = post_batch(api, [event("fine"), event("poison-pill"), event("also fine")])

    assert response.status_code == 207
    assert [(e["batch_index"], e["reason"]) for e in response.json()["errors"]] == [(1, "rejected")]
    assert [record["operation"]["name"] for record in fake.accepted()] == ["fine", "also fine"]


def test_reject_batch_containing_answers_the_whole_batch_400(fake, api):
    fake.set_faults({"reject_batch_containing": "bad-apple"})

    refused = post_batch(api, [event("fine"), event("bad-apple")])
    accepted = post_batch(api, [event("fine")])

    assert (refused.status_code, accepted.status_code) == (400, 200)
    assert "batch_index" not in refused.json()["errors"][0]
    assert [record["operation"]["name"] for record in fake.accepted()] == ["fine"]


def test_a_rule_scoped_to_a_site_leaves_other_sites_alone(fake, api):
    fake.set_faults([{"site_id": OTHER_SITE, "force_status": 503}])

    with httpx.Client(base_url=fake.url, auth=(OTHER_SITE, OTHER_KEY)) as other:
        assert post_batch(other, [EVENT]).status_code == 503
    assert post_batch(api, [EVENT]).status_code == 200
    assert fake.stats()["accepted_by_site"] == {SITE: 1}


def test_the_first_matching_rule_applies(fake, api):
    fake.set_faults([{"site_id": SITE, "force_status": 500}, {"force_status": 502}, {"force_status": 503}])

    with httpx.Client(base_url=fake.url, auth=(OTHER_SITE, OTHER_KEY)) as other:
        assert post_batch(other, [EVENT]).status_code == 502
    assert post_batch(api, [EVENT]).status_code == 500


def test_faults_do_not_touch_the_control_endpoints(fake, control):
    fake.set_faults({"force_status": 500, "latency_ms": 1000})

    assert control.health()["status"] == "ok"
    assert control.stats()["requests"] == 0


@pytest.mark.parametrize(
    "rules",
    [{"error_rate": 2}, {"no_such_fault": 1}, {"force_status": "500"}, {"latency_ms": True}, "fast", [1]],
    ids=repr,
)
def test_an_invalid_fault_configuration_is_refused(fake, control, rules):
    with pytest.raises(httpx.HTTPStatusError) as caught:
        control.set_faults(rules)

    assert caught.value.response.status_code == 400
    with pytest.raises(ValueError, match=r"."):
        fake.set_faults(rules)


# --- records and control endpoints -----------------------------------------------------------------------------


def test_the_record_file_holds_one_line_per_accepted_operation(tmp_path: Path):
    record = tmp_path / "accepted.jsonl"
    with FakeCustomerIO(record_path=record).start() as fake:
        response = httpx.post(f"{fake.url}/api/v2/batch", json={"batch": [event("a"), {"bad": 1}]}, auth=("s", "k"))
        assert response.status_code == 207

    lines = [orjson.loads(line) for line in record.read_bytes().splitlines()]
    assert [(line["site_id"], line["operation"]["name"]) for line in lines] == [("s", "a")]
    assert isinstance(lines[0]["received_at"], float)


def test_accepted_can_be_filtered_by_site(fake, api, control):
    post_batch(api, [event("mine")])
    with httpx.Client(base_url=fake.url, auth=(OTHER_SITE, OTHER_KEY)) as other:
        post_batch(other, [event("theirs"), event("theirs too")])

    assert [r["operation"]["name"] for r in control.accepted(site_id=SITE)] == ["mine"]
    assert len(control.accepted()) == 3
    assert control.wait_for_accepted(2, timeout=1, site_id=OTHER_SITE)[0]["site_id"] == OTHER_SITE


def test_the_request_log_describes_each_request_without_secrets(fake, api, control):
    post_batch(api, [EVENT, EVENT])
    httpx.post(f"{fake.url}/api/v2/batch", json={"batch": [EVENT]}, auth=(SITE, "not-the-key"))

    first, second = control.requests()
    assert first | {"time": 0, "duration_s": 0, "body_bytes": 0} == {
        "request_id": 1, "time": 0, "site_id": SITE, "method": "POST", "path": "/api/v2/batch", "status": 200,
        "body_bytes": 0, "items": 2, "accepted": 2, "duration_s": 0, "authorization_ok": True, "fault": "",
    }  # fmt: skip
    assert first["body_bytes"] > 0
    assert (second["status"], second["authorization_ok"]) == (401, False)
    everything = orjson.dumps([control.requests(), control.accepted(), control.stats()])
    assert b"secret" not in everything
    assert b"not-the-key" not in everything


def test_stats_count_requests_by_status_and_accepted_operations_by_site(api, control):
    post_batch(api, [EVENT, EVENT])
    post_batch(api, [EVENT, {"bad": 1}])

    assert control.stats() == {
        "in_flight": 0,
        "max_in_flight": 1,
        "requests": 2,
        "requests_by_status": {"200": 1, "207": 1},
        "accepted": 3,
        "accepted_by_site": {SITE: 3},
    }


def test_reset_clears_records_counts_and_faults(fake, api, control):
    post_batch(api, [EVENT])
    control.set_faults({"force_status": 500})

    control.reset()

    assert (control.accepted(), control.requests(), control.stats()["requests"]) == ([], [], 0)
    assert post_batch(api, [EVENT]).status_code == 200


def test_credentials_can_be_replaced_through_the_control_endpoint(fake, api, control):
    assert control.set_credentials({"new-site": "new-key"}) == {"sites": ["new-site"]}

    assert post_batch(api, [EVENT]).status_code == 401
    assert httpx.post(f"{fake.url}/api/v2/batch", json={"batch": [EVENT]}, auth=("new-site", "new-key")).is_success


def test_wait_for_accepted_times_out_when_too_few_arrive(control):
    with pytest.raises(TimeoutError):
        control.wait_for_accepted(1, timeout=0.1)


def test_the_faults_in_force_can_be_read_back(control):
    applied = control.set_faults([{"site_id": SITE, "error_rate": 0.5}])

    assert applied == [{"site_id": SITE, "error_rate": 0.5}]
    assert httpx.get(f"{control.url}/_fake/faults").json() == applied


# --- the command ---------------------------------------------------------------------------------------------


def test_the_command_serves_until_sigterm_with_its_options(tmp_path: Path):
    record = tmp_path / "record.jsonl"
    process = start_fake_cio_process(credentials={SITE: KEY}, record=record, latency_ms=1)
    try:
        ok = httpx.post(f"{process.url}/api/v2/batch", json={"batch": [EVENT]}, auth=(SITE, KEY))
        refused = httpx.post(f"{process.url}/api/v2/batch", json={"batch": [EVENT]}, auth=(SITE, "nope"))
        accepted = process.client.wait_for_accepted(1, timeout=5)
    finally:
        exit_code = process.stop()

    assert (ok.status_code, refused.status_code) == (200, 401)
    assert accepted[0]["operation"] == EVENT
    assert exit_code == 0
    assert orjson.loads(record.read_bytes().splitlines()[0])["operation"] == EVENT


def test_the_command_without_validation_accepts_anything(fake_cio_process):
    with start_fake_cio_process(validate=False, error_rate=0) as process:
        response = httpx.post(f"{process.url}/api/v2/batch", json={"batch": [{"x": 1}]}, auth=("s", "k"))

        assert response.status_code == 200
        assert process.client.health() == {"status": "ok", "validate": False}
    assert fake_cio_process.client.health() == {"status": "ok", "validate": True}


def test_a_chunked_body_is_read_like_any_other(fake, api):
    body = orjson.dumps({"batch": [event("chunked")]})

    response = api.post("/api/v2/batch", content=iter([body[:10], body[10:]]))

    assert response.status_code == 200
    assert fake.requests()[-1]["body_bytes"] == len(body)


def test_fail_batch_containing_answers_a_server_error_to_every_batch_holding_the_substring(fake, api):
    fake.set_faults({"fail_batch_containing": "poison-5xx"})
    failed = post_batch(api, [event("fine"), event("poison-5xx")])
    accepted = post_batch(api, [event("fine")])
    fake.set_faults({"fail_batch_containing": "poison-5xx", "fail_status": 503})
    unavailable = post_batch(api, [event("poison-5xx")])

    assert (failed.status_code, accepted.status_code, unavailable.status_code) == (500, 200, 503)
    assert [record["operation"]["name"] for record in fake.accepted()] == ["fine"]
    assert [record["fault"] for record in fake.requests()] == ["fail_batch", "", "fail_batch"]
