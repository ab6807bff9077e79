"""Bad and hostile input to the intake (a real uvicorn server, the real Redis): every one gets a clear status,
nothing is half-enqueued, nothing accepted is lost, and the server keeps serving."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from producers._kick import ENQUEUE_SHA
from tests.e2e.conftest import wait_for
from tests.integration.test_intake import KEY_A, basic, intake_env
from tests.support.intake import Intake, running_intake, stored_events
from tests.support.redis_gate import RedisGate
from worker.store.layout import publish_workspaces


@pytest.fixture
def intake(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Intake]:
    env = intake_env(redis_url, key_prefix, tmp_path, CIO_INTAKE_BODY_TIMEOUT_S="1", CIO_INTAKE_HEADER_TIMEOUT_S="1")
    with running_intake(env, tmp_path / "intake.log") as server:
        yield server


@pytest.fixture
def client(intake: Intake) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=intake.url, timeout=30) as http:
        yield http


def track(name: str = "E") -> bytes:
    return orjson.dumps({"userId": "u", "event": name})


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b'{"userId": "u", "event": ', {"Content-Type": "application/json"}, 400),
        (b"[1, 2]", {"Content-Type": "application/json"}, 400),
        (b"\xff\xfe", {"Content-Type": "text/plain"}, 400),
        (track(), {"Content-Type": "application/x-www-form-urlencoded"}, 415),
        (track(), {"Content-Type": "application/json", "Content-Encoding": "br"}, 415),
        (b"\x1f\x8b not really gzip", {"Content-Type": "application/json", "Content-Encoding": "gzip"}, 400),
    ],
    ids=["truncated-json", "not-an-object", "not-utf8", "form-content-type", "brotli", "broken-gzip"],
)
def test_malformed_bodies_get_a_clear_4xx_and_enqueue_nothing(
    client, redis_client, key_prefix, content, headers, status
):
    answer = client.post("/v1/track", content=content, headers={**basic(KEY_A), **headers})

    assert answer.status_code == status and answer.json()["success"] is False and answer.json()["error"]
    assert stored_events(redis_client, key_prefix, "wsa") == []


def test_a_gzip_bomb_is_refused_413_and_the_server_stays_up(client, redis_client, key_prefix):
    bomb = gzip.compress(b'{"batch": [' + b" " * 200_000_000 + b"]}", compresslevel=9)
    assert len(bomb) < 500_000

    answer = client.post(
        "/v1/batch",
        content=bomb,
        headers={**basic(KEY_A), "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )

    assert answer.status_code == 413 and "decompressed" in answer.json()["error"]
    assert client.post("/v1/track", content=track(), headers=basic(KEY_A)).status_code == 200
    assert len(stored_events(redis_client, key_prefix, "wsa")) == 1


def raw_request(intake: Intake, head: str, body: bytes = b"") -> bytes:
    """Send ``head`` (request line and headers, without the blank line) and ``body``; the start of the answer."""
    host, port = intake.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head.encode() + b"\r\n\r\n" + body)
        sock.settimeout(60)
        return sock.recv(4096)


def test_a_declared_or_actual_body_over_500_kb_is_413(intake, client):
    auth = basic(KEY_A)["Authorization"]
    declared = raw_request(
        intake, f"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: 600000"
    )
    streamed = client.post("/v1/batch", content=iter([b" " * 300_000, b" " * 300_000]), headers=basic(KEY_A))

    assert declared.startswith(b"HTTP/1.1 413")
    assert streamed.status_code == 413


def test_wrong_routes_and_methods(client):
    assert client.get("/v1/track").status_code == 405
    assert client.post("/v2/track", content=track()).status_code == 404
    assert client.post("/health").status_code == 405
    assert client.get("/nothing").status_code == 404


def test_a_slow_loris_sending_headers_forever_is_disconnected(intake, client):
    host, port = intake.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /v1/track HTTP/1.1\r\nHost: x\r\n")
        closed = False
        deadline = time.monotonic() + 60
        while not closed and time.monotonic() < deadline:
            try:
                sock.sendall(b"X-Slow: a\r\n")
                sock.settimeout(0.2)
                closed = sock.recv(1024) == b""
            except TimeoutError:
                continue
            except OSError:  # reset or broken pipe: closed by the server
                closed = True
    assert closed, "the server kept a connection whose headers never ended"
    assert client.get("/health").status_code == 200


def test_a_body_that_never_completes_gets_408(intake, redis_client, key_prefix):
    auth = basic(KEY_A)["Authorization"]
    answer = raw_request(
        intake, f"POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: 100", b'{"userId"'
    )

    assert answer.startswith(b"HTTP/1.1 408")
    assert stored_events(redis_client, key_prefix, "wsa") == []


def test_redis_lost_mid_request_gets_503_then_the_retry_is_whole_and_nothing_is_lost(
    redis_url, redis_client, key_prefix, tmp_path
):
    # Given a fleet that serves wsa, and an intake whose Redis connection goes through a relay that holds the enqueue
    # script call
    publish_workspaces(redis_client, key_prefix, ["wsa"])
    gate = RedisGate(redis_url)
    env = intake_env(gate.url, key_prefix, tmp_path, CIO_REDIS_SOCKET_TIMEOUT_S="1")
    batch = {"batch": [{"type": "track", "userId": f"u{n}", "event": "E", "messageId": f"m-{n}"} for n in range(5)]}
    try:
        with running_intake(env, tmp_path / "intake.log") as server, httpx.Client(base_url=server.url) as http:
            gate.hold_at((ENQUEUE_SHA.encode(),), lambda: None)
            answers: list[httpx.Response] = []
            sender = threading.Thread(
                target=lambda: answers.append(http.post("/v1/batch", json=batch, headers=basic(KEY_A)))
            )
            sender.start()
            assert gate.caught.wait(60)
            sender.join(60)
            # When Redis does not answer the script call: 503 with Retry-After, and nothing of the batch is in Redis
            [lost] = answers
            assert lost.status_code == 503 and lost.headers["retry-after"] == "5"
            assert stored_events(redis_client, key_prefix, "wsa") == []
            # And when the held call reaches Redis after all, the whole batch lands at once (one atomic script call)
            gate.release()
            wait_for(lambda: stored_events(redis_client, key_prefix, "wsa") != [], 60, "the held script call to run")
            first = stored_events(redis_client, key_prefix, "wsa")
            assert sorted(event["messageId"] for event in first) == [f"m-{n}" for n in range(5)]
            # Then the SDK's retry is accepted whole, with the same messageIds (Customer.io's dedupe id)
            retried = http.post("/v1/batch", json=batch, headers=basic(KEY_A))
            assert retried.status_code == 200
    finally:
        gate.close()
    stored = stored_events(redis_client, key_prefix, "wsa")
    assert sorted(event["messageId"] for event in stored) == sorted([f"m-{n}" for n in range(5)] * 2)


def test_an_unreachable_redis_gets_503_with_retry_after_and_health_says_so(redis_url, key_prefix, tmp_path):
    gate = RedisGate(redis_url)
    env = intake_env(gate.url, key_prefix, tmp_path, CIO_REDIS_SOCKET_TIMEOUT_S="1", CIO_REDIS_CONNECT_TIMEOUT_S="1")
    try:
        with running_intake(env, tmp_path / "intake.log") as server, httpx.Client(base_url=server.url) as http:
            gate.black_hole()
            answer = http.post("/v1/track", content=track(), headers=basic(KEY_A), timeout=60)
            health = http.get("/health", timeout=60)
    finally:
        gate.close()

    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert "Redis" in answer.json()["error"]
    assert health.status_code == 503
