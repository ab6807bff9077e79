"""Dead-letter queue at 100,000 entries: `dlq stats` and `dlq list --limit 50` as CLI runs, and replay throughput.

Run: ``/work/venv/bin/pytest tests/benchmarks/bench_dlq.py -s -o addopts=""``. Prints figures; asserts no timing.
Target: stats and list under 2 s each (whole CLI process, start-up included).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import redis

from producers.keys import dlq_key
from worker.deadletter.api import DeadLetter, DeadLetterFilter, dlq_size, replay

CLI = str(Path(sys.executable).parent / "cio-fleet")
ENTRIES = 100_000
WORKSPACES = ("acme", "beta", "gamma", "delta")
REASONS = ("HTTP 400: attribute too long", "missing userId", "gave up after 4h", "batch item rejected")


def seed(client: redis.Redis, prefix: str) -> None:
    """100,000 realistic dead letters over four workspaces, written as the pipeline writes them."""
    now_ms = int(time.time() * 1_000)
    pipe = client.pipeline(transaction=False)
    for n in range(ENTRIES):
        event = (
            f'{{"type":"track","event":"Order Completed","userId":"user-{n}","messageId":"msg-{n}",'
            f'"properties":{{"order_id":"o-{n}","total":{n % 500}.99,"currency":"EUR"}},'
            f'"timestamp":"2026-11-28T10:00:00Z"}}'
        ).encode()
        letter = DeadLetter(
            workspace=WORKSPACES[n % 4], partition=n % 16, event=event, outcome="rejected", reason=REASONS[n % 4],
            status=(400, 422, 503, None)[n % 4], response='{"meta":{"error":"attribute too long"}}', attempts=n % 7 + 1,
            first_failed_at_ms=now_ms - 60_000, last_failed_at_ms=now_ms, host="worker-1", message_id=f"msg-{n}",
            event_type="track", event_name="Order Completed",
        )  # fmt: skip
        pipe.xadd(dlq_key(prefix, letter.workspace), letter.to_fields())  # type: ignore[arg-type]
        if n % 5_000 == 4_999:
            pipe.execute()
    pipe.execute()


def timed_cli(env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([CLI, *args], env=env, check=True, capture_output=True, timeout=120)
    return time.perf_counter() - started


def test_dlq_at_100k_entries(redis_client: redis.Redis, redis_url: str, key_prefix: str) -> None:
    started = time.perf_counter()
    seed(redis_client, key_prefix)
    print(f"\nseeded {ENTRIES} dead letters in {time.perf_counter() - started:.2f} s")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIO_")}
    env.update(CIO_REDIS_URL=redis_url, CIO_KEY_PREFIX=key_prefix)
    print(f"cio-fleet version (start-up alone): {timed_cli(env, 'version'):.3f} s")
    for args in (
        ("dlq", "stats"),
        ("dlq", "stats", "--json"),
        ("dlq", "list", "--limit", "50"),
        ("dlq", "list", "--limit", "50", "--json"),
        ("dlq", "list", "--limit", "50", "--status", "503"),
        ("dlq", "list", "--limit", "50", "--event", "no such event"),
    ):
        best = min(timed_cli(env, *args) for _ in range(3))
        print(f"cio-fleet {' '.join(args)}: best of 3 {best:.3f} s")
    started = time.perf_counter()
    result = replay(redis_client, key_prefix, DeadLetterFilter(), lambda _ws: 16)
    elapsed = time.perf_counter() - started
    print(f"replay uncapped: moved {result.moved} in {elapsed:.2f} s = {result.moved / elapsed:,.0f} events/s")
    print(f"left in the dead-letter queue: {sum(dlq_size(redis_client, key_prefix, ws) for ws in WORKSPACES)}")
