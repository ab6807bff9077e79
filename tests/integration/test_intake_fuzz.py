"""The intake's OpenAPI document, fuzzed with schemathesis against a real server and the real Redis: no input gets a
500, and every event the answer says was accepted is in Redis (no more, no fewer)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings

from tests.conftest import TEST_REDIS_URL
from tests.integration.test_intake import KEY_A, basic, intake_env
from tests.support.intake import Intake, running_intake
from worker.intake.openapi import document

schema = schemathesis.openapi.from_dict(document())


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Intake, str]]:
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    directory: Path = tmp_path_factory.mktemp("fuzz")
    with running_intake(intake_env(TEST_REDIS_URL, prefix, directory), directory / "intake.log") as server:
        yield server, prefix
    client = redis.Redis.from_url(TEST_REDIS_URL)
    for pattern in (f"{prefix}:*", f"{prefix}.*", f"_kombu.binding*.{prefix}.*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    client.close()


def waiting(client: redis.Redis, prefix: str) -> int:
    return sum(int(client.xlen(key)) for key in client.scan_iter(match=f"{prefix}:s:*", count=1000))


def events_in(case: schemathesis.Case) -> int:
    if case.path not in ("/v1/batch", "/v1/b", "/v1/import"):
        return 1
    batch = case.body.get("batch") if isinstance(case.body, dict) else None
    return len(batch) if isinstance(batch, list) else 0


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_gets_a_500_and_accepted_events_are_in_redis(case: schemathesis.Case, fuzzed, redis_client) -> None:
    server, prefix = fuzzed
    before = waiting(redis_client, prefix)

    response = case.call(base_url=server.url, headers=basic(KEY_A), timeout=30)

    assert response.status_code < 500, response.text
    if case.method != "POST":
        return
    answer = response.json()
    accepted = events_in(case) if response.status_code == 200 else answer.get("accepted", 0)
    assert waiting(redis_client, prefix) - before == accepted
