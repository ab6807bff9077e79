"""Shared fixtures: a real Redis on 127.0.0.1 and a key prefix of the test's own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from producers.connect import sync_client
from tests.support.redis_cluster import RedisCluster

pytest_plugins = ["tests.support.fake_cio"]

#: The Redis every integration test uses; `.ci/run` makes sure it answers.
TEST_REDIS_URL = os.environ.get("CIO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CIO_ variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("CIO_") and name != "CIO_TEST_REDIS_URL":
            monkeypatch.delenv(name)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``single_and_cluster`` run on one Redis node and on the test Redis Cluster (unless also marked
    ``single_only``: what they check exists on one node only, such as the drain queue the producer writes to)."""
    definition = metafunc.definition
    if definition.get_closest_marker("single_only"):
        return
    if definition.get_closest_marker("single_and_cluster") and "redis_url" in metafunc.fixturenames:
        metafunc.parametrize("redis_kind", ["single", "cluster"])


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A private Redis Cluster (3 masters + 3 replicas), started once for the session when a test asks for it."""
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_kind() -> str:
    """``single`` (the shared Redis on 6379) unless the test is marked ``single_and_cluster``."""
    return "single"


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, redis_kind: str) -> str:
    """The Redis the test uses: the shared one, or the test cluster's ``redis+cluster://`` URL."""
    if redis_kind == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        return cluster.url
    return TEST_REDIS_URL


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A prefix no other test uses; its keys are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = sync_client(redis_url)
    for pattern in (f"{prefix}:*", f"{prefix}.*", f"_kombu.binding*.{prefix}.*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the real Redis; the test fails, never skips, when it does not answer."""
    client = sync_client(redis_url)
    client.ping()
    yield client
    client.close()
