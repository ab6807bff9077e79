"""`cio-fleet status` and the fleet status it reads, on the real Redis."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from producers.keys import authpause_key, lease_key, pause_key, retry_key, stream_key, workers_key
from producers.wire import KICKED
from tests.integration.test_cli_dlq import API_KEY, cli_environment, run
from tests.integration.test_deadletter_store import letter, put
from worker.store.fleet_status import gather_status

pytestmark = pytest.mark.single_and_cluster


@pytest.fixture
def cli_env(tmp_path: Path, redis_url: str, key_prefix: str) -> dict[str, str]:
    return cli_environment(tmp_path, redis_url, key_prefix)


def seed_fleet(client: redis.Redis, prefix: str, now_ms: int) -> None:
    """acme: backlog on two partitions, one busy, one retrying, throttled; beta: unauthorized; two workers."""
    client.xadd(stream_key(prefix, "acme", 0), {"v": "1", "event": "{}"}, id=f"{now_ms - 90_000}-0")
    client.xadd(stream_key(prefix, "acme", 0), {"v": "1", "event": "{}"}, id=f"{now_ms - 1_000}-0")
    client.xadd(stream_key(prefix, "acme", 3), {"v": "1", "event": "{}"}, id=f"{now_ms - 5_000}-0")
    client.set(lease_key(prefix, "acme", 0), "owner-7f3a", px=30_000)
    client.set(lease_key(prefix, "acme", 1), KICKED, px=30_000)
    client.set(lease_key(prefix, "acme", 3), "retry", px=30_000)
    client.hset(retry_key(prefix, "acme", 2), mapping={"attempts": "2", "first_failed_at": str(now_ms)})
    client.set(pause_key(prefix, "acme"), "429 from Customer.io", px=20_000)
    client.hset(authpause_key(prefix, "beta"), mapping={"status": "401", "reason": "bad key", "since": str(now_ms)})
    client.hset(
        workers_key(prefix), mapping={"host-a:11": str(now_ms / 1_000 - 5), "host-b:12": str(now_ms / 1_000 - 300)}
    )
    put(client, prefix, letter("beta"))


def test_gather_status_reads_backlog_leases_pauses_dead_letters_and_workers(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    now_ms = int(time.time() * 1_000)
    seed_fleet(redis_client, key_prefix, now_ms)
    fleet = gather_status(redis_client, key_prefix, {"acme": 4, "beta": 2}, now_ms=now_ms)
    acme, beta = fleet.workspaces
    assert (acme.name, acme.partitions, acme.backlog, acme.oldest_age_s) == ("acme", 4, 3, 90.0)
    assert (acme.busy, acme.retrying, acme.paused, acme.pause_reason) == (1, 2, "throttled", "429 from Customer.io")
    assert acme.pause_remaining_s is not None and 0 < acme.pause_remaining_s <= 20
    assert (beta.backlog, beta.oldest_age_s, beta.busy, beta.dead_letters) == (0, None, 0, 1)
    assert (beta.paused, beta.auth_status, beta.auth_since_ms, beta.pause_reason) == (
        "unauthorized",
        401,
        now_ms,
        "bad key",
    )
    assert [(w.id, w.alive) for w in fleet.workers] == [("host-a:11", True), ("host-b:12", False)]
    assert fleet.workers_alive == 1


def test_an_idle_fleet_reports_zeros(redis_client: redis.Redis, key_prefix: str) -> None:
    fleet = gather_status(redis_client, key_prefix, {"acme": 2})
    [acme] = fleet.workspaces
    assert (acme.backlog, acme.busy, acme.retrying, acme.paused, acme.dead_letters) == (0, 0, 0, None, 0)
    assert (fleet.workers, fleet.workers_alive) == ((), 0)


def test_status_json_gives_every_workspace_and_the_workers(
    cli_env: dict[str, str],
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    seed_fleet(redis_client, key_prefix, int(time.time() * 1_000))
    data = json.loads(run(cli_env, "status", "--json").stdout)
    by_name = {ws["name"]: ws for ws in data["workspaces"]}
    assert (by_name["acme"]["backlog"], by_name["acme"]["busy"], by_name["acme"]["paused"]) == (3, 1, "throttled")
    assert (by_name["beta"]["paused"], by_name["beta"]["auth_status"], by_name["beta"]["dead_letters"]) == (
        "unauthorized",
        401,
        1,
    )
    assert data["workers_alive"] == 1


@pytest.mark.parametrize("text", ["acme", "throttled", "unauthorized (401", "Workers alive: 1 (host-a:11)"])
def test_status_text_shows_the_state(
    cli_env: dict[str, str],
    redis_client: redis.Redis,
    key_prefix: str,
    text: str,
) -> None:
    seed_fleet(redis_client, key_prefix, int(time.time() * 1_000))
    out = run(cli_env, "status").stdout
    assert text in out
    assert API_KEY not in out
