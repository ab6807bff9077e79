"""`cio-fleet partition`: a person's partition from a shell, with the count a producer would use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from producers import Producer
from producers.keys import config_key, stream_key
from producers.wire import partition_for
from tests.integration.test_cli_dlq import PARTITIONS, cli_environment, run


@pytest.fixture
def cli_env(tmp_path: Path, redis_url: str, key_prefix: str) -> dict[str, str]:
    return cli_environment(tmp_path, redis_url, key_prefix)


def test_the_partition_is_where_the_producer_writes_the_person(
    cli_env: dict[str, str], redis_url: str, redis_client: redis.Redis, key_prefix: str
) -> None:
    redis_client.hset(config_key(key_prefix, "acme"), "partitions", 16)
    with Producer(redis_url, "acme", key_prefix=key_prefix, kick=False) as producer:
        producer.track("42", "Signed Up")
    written = next(n for n in range(16) if redis_client.xlen(stream_key(key_prefix, "acme", n)))
    data = json.loads(run(cli_env, "partition", "--workspace", "acme", "42", "--json").stdout)
    assert data["partitions"] == 16 and data["source"] == "published by the workers"
    assert data["keys"] == [
        {"person_key": "42", "partition": written, "stream": stream_key(key_prefix, "acme", written)}
    ]


def test_before_any_worker_published_the_configured_count_is_used(cli_env: dict[str, str], key_prefix: str) -> None:
    out = run(cli_env, "partition", "-w", "acme", "42", "alice@example.com").stdout.splitlines()
    assert out[0].startswith(f"workspace acme: {PARTITIONS} partitions (configured")
    assert out[1].split("\t") == [
        "42",
        f"partition {partition_for({'userId': '42'}, PARTITIONS)}",
        f"{key_prefix}:s:{{acme}}:{partition_for({'userId': '42'}, PARTITIONS)}",
    ]
    assert out[2].startswith("alice@example.com\tpartition ")


def test_an_explicit_count_wins_and_a_bad_one_is_refused(cli_env: dict[str, str]) -> None:
    data = json.loads(run(cli_env, "partition", "-w", "nosuch", "--partitions", "8", "42", "--json").stdout)
    assert (data["partitions"], data["source"], data["keys"][0]["partition"]) == (8, "--partitions", 0)
    assert "--partitions" in run(cli_env, "partition", "-w", "acme", "--partitions", "0", "42", code=2).stderr
