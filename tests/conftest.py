"""Shared fixtures: a real Redis on 127.0.0.1 and a key prefix of the test's own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

pytest_plugins = ["tests.support.fake_cio"]

#: The Redis every integration test uses; `.ci/run` makes sure it answers.
TEST_REDIS_URL = os.environ.get("CIO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CIO_ variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("CIO_") and name != "CIO_TEST_REDIS_URL":
            monkeypatch.delenv(name)


@pytest.fixture
def redis_url() -> str:
    return TEST_REDIS_URL


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A prefix no other test uses; its keys are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for pattern in (f"{prefix}:*", f"{prefix}.*", f"_kombu.binding.{prefix}.*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the real Redis; the test fails, never skips, when it does not answer."""
    client = redis.Redis.from_url(redis_url)
    client.ping()
    yield client
    client.close()
