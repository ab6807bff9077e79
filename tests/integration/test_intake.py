"""The HTTP intake through a real uvicorn server on 127.0.0.1 and the real Redis: routes, keys, decoding,
merging, validation, enqueue and the answers' semantics."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from tests.support.intake import Intake, free_port, running_intake, stored_events, wait_healthy, workspaces_toml

KEY_A = "wk-alpha-0001"
KEY_A2 = "wk-alpha-0002"
KEY_B = "wk-bravo-0001"


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def intake_env(redis_url: str, prefix: str, tmp_path: Path, **env: str) -> dict[str, str]:
    workspaces = {
        "wsa": {
            "site_id": "site-a",
            "api_key": "key-a-secret",
            "write_keys": [KEY_A, KEY_A2],
            "cors_origins": ["https://shop.example"],
        },
        "wsb": {"site_id": "site-b", "api_key": "key-b-secret", "write_keys": [KEY_B]},
    }
    path = tmp_path / "workspaces.toml"
    path.write_text(workspaces_toml(workspaces), encoding="utf-8")
    return {
        "CIO_REDIS_URL": redis_url,
        "CIO_KEY_PREFIX": prefix,
        "CIO_WORKSPACES_FILE": str(path),
        "CIO_LOG_FORMAT": "json",
        **env,
    }


@pytest.fixture
def intake(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Intake]:
    with running_intake(intake_env(redis_url, key_prefix, tmp_path), tmp_path / "intake.log") as server:
        yield server


@pytest.fixture
def client(intake: Intake) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=intake.url, timeout=30) as http:
        yield http


def test_a_track_with_basic_auth_is_in_redis_when_answered_200(client, redis_client, key_prefix):
    answer = client.post(
        "/v1/track", json={"userId": "u1", "event": "Signed Up", "messageId": "m-1"}, headers=basic(KEY_A)
    )

    assert answer.status_code == 200 and answer.json() == {"success": True}
    [event] = stored_events(redis_client, key_prefix, "wsa")
    assert event["type"] == "track" and event["event"] == "Signed Up" and event["messageId"] == "m-1"
    assert event["receivedAt"] and event["sentAt"] and event["timestamp"]
    assert stored_events(redis_client, key_prefix, "wsb") == []


def test_the_body_write_key_and_text_plain_are_accepted_and_the_key_is_not_enqueued(client, redis_client, key_prefix):
    body = orjson.dumps({"writeKey": KEY_B, "userId": "u2", "traits": {"plan": "pro"}})
    answer = client.post("/v1/i", content=body, headers={"Content-Type": "text/plain"})

    assert answer.status_code == 200
    [event] = stored_events(redis_client, key_prefix, "wsb")
    assert event["type"] == "identify" and event["traits"] == {"plan": "pro"} and "writeKey" not in event


def test_a_second_key_of_a_workspace_works_and_unknown_or_missing_keys_get_401(client, redis_client, key_prefix):
    assert client.post("/v1/t", json={"userId": "u", "event": "E"}, headers=basic(KEY_A2)).status_code == 200
    unknown = client.post("/v1/t", json={"userId": "u", "event": "E"}, headers=basic("wk-nobody-0001"))
    missing = client.post("/v1/t", json={"userId": "u", "event": "E"})

    assert unknown.status_code == 401 and unknown.json()["success"] is False
    assert missing.status_code == 401
    assert len(stored_events(redis_client, key_prefix, "wsa")) == 1


def test_a_batch_merges_top_level_context_and_integrations_and_corrects_clock_skew(client, redis_client, key_prefix):
    # The client's clock is one hour ahead: it stamped the event at 13:00:00 and sent the batch at 13:00:05.
    batch = {
        "batch": [
            {
                "type": "track",
                "userId": "u1",
                "event": "Ordered",
                "timestamp": "2030-01-01T13:00:00.000Z",
                "context": {"ip": "10.0.0.1"},
                "integrations": {"All": True},
            }
        ],
        "context": {"ip": "10.9.9.9", "library": {"name": "sdk"}},
        "integrations": {"Other": False},
        "sentAt": "2030-01-01T13:00:05.000Z",
    }
    before = dt.datetime.now(dt.UTC)
    answer = client.post("/v1/batch", json=batch, headers=basic(KEY_A))
    after = dt.datetime.now(dt.UTC)

    assert answer.status_code == 200
    [event] = stored_events(redis_client, key_prefix, "wsa")
    assert event["context"] == {"ip": "10.0.0.1", "library": {"name": "sdk"}}
    assert event["integrations"] == {"All": True, "Other": False}
    assert event["originalTimestamp"] == "2030-01-01T13:00:00.000Z"
    corrected = dt.datetime.fromisoformat(event["timestamp"])
    received = dt.datetime.fromisoformat(event["receivedAt"])
    assert corrected == received - dt.timedelta(seconds=5)
    assert before - dt.timedelta(seconds=6) <= corrected <= after


def test_a_batch_with_bad_events_enqueues_the_good_ones_and_names_the_bad(client, redis_client, key_prefix):
    batch = {
        "batch": [
            {"type": "track", "userId": "u1", "event": "One"},
            {"type": "track", "userId": "u1"},
            {"type": "track", "userId": "u1", "event": "Three"},
            "not an event",
            {"type": "launch", "userId": "u1"},
        ]
    }
    answer = client.post("/v1/import", json=batch, headers=basic(KEY_A))

    assert answer.status_code == 400
    body = answer.json()
    assert body["success"] is False and body["accepted"] == 2
    assert [(r["index"], r["field"]) for r in body["refused"]] == [(1, "event"), (3, "(event)"), (4, "type")]
    assert "required for track" in body["refused"][0]["reason"]
    stored = stored_events(redis_client, key_prefix, "wsa")
    assert [event["event"] for event in stored] == ["One", "Three"]


def test_oversize_events_and_batches_get_413(client, redis_client, key_prefix):
    big = {"userId": "u", "event": "Big", "properties": {"blob": "x" * 33_000}}
    single = client.post("/v1/track", json=big, headers=basic(KEY_A))
    mixed = client.post(
        "/v1/batch",
        json={"batch": [{"type": "track", **big}, {"type": "track", "userId": "u", "event": "Small"}]},
        headers=basic(KEY_A),
    )
    whole = client.post(
        "/v1/batch",
        json={"batch": [{"type": "track", "userId": "u", "event": "E", "p": "y" * 20_000} for _ in range(30)]},
        headers=basic(KEY_A),
    )

    assert single.status_code == 413 and single.json()["refused"][0]["index"] == 0
    assert mixed.status_code == 413 and [r["index"] for r in mixed.json()["refused"]] == [0]
    assert whole.status_code == 413 and "500000" in whole.json()["error"]
    assert [event["event"] for event in stored_events(redis_client, key_prefix, "wsa")] == ["Small"]


def test_gzip_bodies_are_accepted(client, redis_client, key_prefix):
    body = gzip.compress(orjson.dumps({"batch": [{"type": "page", "userId": "u", "name": "Home"}]}))
    answer = client.post(
        "/v1/b", content=body, headers={**basic(KEY_A), "Content-Type": "application/json", "Content-Encoding": "gzip"}
    )

    assert answer.status_code == 200
    assert stored_events(redis_client, key_prefix, "wsa")[0]["name"] == "Home"


def test_cors_preflight_and_origins_per_workspace(client, redis_client, key_prefix):
    preflight = client.options(
        "/v1/t",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-retry-count",
        },
    )
    stranger = client.options("/v1/t", headers={"Origin": "https://evil.example"})
    event = orjson.dumps({"writeKey": KEY_A, "userId": "u", "event": "E"})
    allowed = client.post(
        "/v1/t", content=event, headers={"Origin": "https://shop.example", "Content-Type": "text/plain"}
    )
    other_workspace = client.post(
        "/v1/t",
        content=orjson.dumps({"writeKey": KEY_B, "userId": "u", "event": "E"}),
        headers={"Origin": "https://shop.example", "Content-Type": "text/plain"},
    )

    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == "content-type,x-retry-count"  # analytics-next's
    assert "access-control-allow-origin" not in stranger.headers
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://shop.example"
    assert other_workspace.status_code == 403
    assert other_workspace.headers["access-control-allow-origin"] == "https://shop.example"  # the reason is readable
    assert len(stored_events(redis_client, key_prefix, "wsa")) == 1
    assert stored_events(redis_client, key_prefix, "wsb") == []


def test_health_openapi_and_metrics(client):
    assert client.post("/v1/track", json={"userId": "u", "event": "E"}, headers=basic(KEY_A)).status_code == 200
    assert client.post("/v1/track", json={"userId": "u"}, headers=basic(KEY_A)).status_code == 400

    assert client.get("/health").json() == {"status": "ok"}
    document = client.get("/openapi.json").json()
    assert "/v1/batch" in document["paths"] and "/v1/t" in document["paths"]
    metrics = client.get("/metrics").text
    assert 'cio_fleet_intake_requests_total{status="200"} 1.0' in metrics
    assert 'cio_fleet_intake_requests_total{status="400"} 1.0' in metrics
    assert 'cio_fleet_intake_events_total{outcome="accepted",workspace="wsa"} 1.0' in metrics
    assert 'cio_fleet_intake_events_total{outcome="refused",workspace="wsa"} 1.0' in metrics
    assert "cio_fleet_intake_request_seconds_bucket" in metrics


def test_write_keys_and_api_keys_never_reach_the_logs(intake, client):
    client.post("/v1/track", json={"userId": "u", "event": "E"}, headers=basic("wk-unknown-key-9"))
    client.post("/v1/track", json={"userId": "u"}, headers=basic(KEY_A))

    logs = intake.logs()
    assert logs  # the server did log (startup, the refused request)
    for secret in (KEY_A, KEY_A2, KEY_B, "key-a-secret"):
        assert secret not in logs


def test_a_full_backlog_gets_503_with_retry_after_and_says_what_was_enqueued(redis_url, key_prefix, tmp_path):
    env = intake_env(redis_url, key_prefix, tmp_path, CIO_BACKLOG_CAP="2")
    with running_intake(env, tmp_path / "intake.log") as server, httpx.Client(base_url=server.url) as http:
        batch = {"batch": [{"type": "track", "userId": "u", "event": f"E{n}"} for n in range(3)]}
        answer = http.post("/v1/batch", json=batch, headers=basic(KEY_A))
        again = http.post("/v1/track", json={"userId": "u", "event": "E"}, headers=basic(KEY_A))

    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert answer.json()["accepted"] == 2
    assert again.status_code == 503 and again.json()["accepted"] == 0
    client = redis.Redis.from_url(redis_url)
    assert [event["event"] for event in stored_events(client, key_prefix, "wsa")] == ["E0", "E1"]
    client.close()


def test_several_server_processes_serve_the_same_keys(redis_url, key_prefix, tmp_path, redis_client):
    env = intake_env(redis_url, key_prefix, tmp_path)
    with (
        running_intake(env, tmp_path / "intake.log", "--workers", "2") as server,
        httpx.Client(base_url=server.url) as http,
    ):
        answers = [http.post("/v1/t", json={"userId": "u", "event": f"E{n}"}, headers=basic(KEY_A)) for n in range(4)]

    assert [answer.status_code for answer in answers] == [200] * 4
    assert len(stored_events(redis_client, key_prefix, "wsa")) == 4


def test_the_app_runs_under_a_plain_uvicorn_with_settings_from_the_environment(
    redis_url, key_prefix, tmp_path, redis_client
):
    port = free_port()
    uvicorn = str(Path(sys.executable).parent / "uvicorn")
    env = {**os.environ, **intake_env(redis_url, key_prefix, tmp_path)}
    log_path = tmp_path / "uvicorn.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [uvicorn, "worker.intake:app", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=log
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process, log_path)
        answer = httpx.post(f"{url}/v1/track", json={"userId": "u", "event": "E"}, headers=basic(KEY_B), timeout=30)
    finally:
        process.terminate()
        process.wait(30)

    assert answer.status_code == 200
    assert [event["event"] for event in stored_events(redis_client, key_prefix, "wsb")] == ["E"]
