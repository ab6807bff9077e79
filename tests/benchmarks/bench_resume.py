"""How long the partitions of a SIGKILLed worker wait before they deliver again.

Two workers drain a steady stream (1,000 events/s over 16 partitions; the stand-in answers in 50 ms so that
requests are in flight most of the time). One worker is SIGKILLed; for every partition, the gap is the time from
the kill to its first acceptance afterwards. Partitions of the surviving worker go on at once; those the dead
worker held wait for their lease to expire (``CIO_LEASE_TTL_S``) and for the sweeper to kick them.

Run: ``/work/venv/bin/pytest tests/benchmarks/bench_resume.py -s -o addopts=""``.
Knobs: ``BENCH_RESUME_TTLS`` (``30,5``), ``BENCH_RATE`` (1,000/s), ``BENCH_SWEEP_S`` (2).
The stand-in prints ``ConnectionResetError`` tracebacks when the killed worker's connections drop: expected noise.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from typing import Any

import pytest

from producers.keys import lease_key
from tests.benchmarks.conftest import (
    WORKSPACE,
    env_float,
    forget_unacked,
    paced_enqueue,
    partition_of,
    percentile,
    report,
    workspace_options,
)
from tests.e2e.conftest import backlog, wait_for

pytestmark = pytest.mark.timeout(3_600)

PARTITIONS = 16
#: Seconds of steady stream before the kill.
WARM_S = 5.0
#: The sweeper's interval: the production default (the e2e fleet uses 0.5 s), overridable with ``BENCH_SWEEP_S``.
SWEEP_S = os.environ.get("BENCH_SWEEP_S", "2")
#: Timeouts short enough for a 5 s lease (a request must not outlive the lease: 1 + 0.5 + 3 x 0.5 + 1 s margin).
TIMEOUTS_FOR_A_SHORT_LEASE = {
    "CIO_HTTP__TIMEOUT_S": "0.5",
    "CIO_HTTP__CONNECT_TIMEOUT_S": "0.5",
    "CIO_REDIS_SOCKET_TIMEOUT_S": "1",
}
#: A partition whose gap is longer than this is counted as stalled by the kill.
STALL_S = 1.0


@pytest.fixture
def no_unacked_left(redis_client, key_prefix):
    """Afterwards, drop the killed worker's unacked drain messages from kombu's shared bookkeeping."""
    yield
    forget_unacked(redis_client, {f"{key_prefix}.drain"})


def lease_ttls() -> list[int]:
    return [int(value) for value in os.environ.get("BENCH_RESUME_TTLS", "30,5").split(",")]


@pytest.mark.parametrize("ttl_s", lease_ttls())
def test_partitions_of_a_killed_worker_resume_after_the_lease_ttl(
    stand_in, make_fleet, redis_client, key_prefix, no_unacked_left, ttl_s
):
    rate = env_float("BENCH_RATE", 1_000)
    # Given two workers draining a steady stream from a paced producer
    stand_in.client.set_faults([{"latency_ms": 50}])
    fleet = make_fleet(workspace_options(stand_in.url, rate_limit_rps=100_000, partitions=PARTITIONS))
    victim, _survivor = fleet.start(
        2, concurrency=8, CIO_LEASE_TTL_S=str(ttl_s), CIO_SWEEP_INTERVAL_S=SWEEP_S, **TIMEOUTS_FOR_A_SHORT_LEASE
    )
    sent: dict[str, float] = {}
    producer = fleet.producer(WORKSPACE, partitions=PARTITIONS)
    feeder = threading.Thread(target=lambda: sent.update(paced_enqueue(producer, rate, WARM_S + ttl_s + 20, tag="r")))
    feeder.start()
    # When one worker is SIGKILLed in the middle of its work
    time.sleep(WARM_S)
    leases = [redis_client.get(lease_key(key_prefix, WORKSPACE, p)) for p in range(PARTITIONS)]
    victim.kill()
    killed_at = time.time()
    feeder.join()
    producer.close()
    # (duplicates count towards the stand-in's total, so wait for empty streams: entries leave once accepted)
    wait_for(lambda: backlog(redis_client, key_prefix, WORKSPACE, PARTITIONS) == 0, ttl_s + 120, "empty streams")
    accepted = stand_in.client.accepted()
    # Then every event arrives (at least once), and each partition's gap after the kill is printed
    ids = Counter(record["operation"]["id"] for record in accepted)
    assert set(ids) == set(sent)
    gaps = partition_gaps(accepted, killed_at)
    stalled = {p: gap for p, gap in gaps.items() if gap > STALL_S}
    others = [gap for p, gap in gaps.items() if p not in stalled]
    report(
        f"resume after SIGKILL, CIO_LEASE_TTL_S={ttl_s}, sweep every {SWEEP_S} s, 2 workers x8, "
        f"{PARTITIONS} partitions, {rate:,.0f} events/s",
        [
            ("leases owned by a drainer at the kill", sum(1 for v in leases if v and v not in (b"kicked", b"retry"))),
            ("leases 'kicked' at the kill", sum(1 for v in leases if v == b"kicked")),
            ("partitions stalled by the kill (gap > 1 s)", len(stalled)),
            ("stalled partitions: gap min (s)", min(stalled.values(), default=0.0)),
            ("stalled partitions: gap max (s)", max(stalled.values(), default=0.0)),
            ("other partitions: gap max (ms)", max(others, default=0.0) * 1000),
            ("other partitions: gap median (ms)", percentile(others, 50) * 1000 if others else 0.0),
            ("events delivered twice (at-least-once)", sum(1 for count in ids.values() if count > 1)),
            ("events sent", len(sent)),
        ],
    )
    print("  gaps by partition (s):", {p: round(gap, 2) for p, gap in sorted(gaps.items())})
    fleet.stop()


def partition_gaps(accepted: list[dict[str, Any]], killed_at: float) -> dict[int, float]:
    """Per partition, seconds from the kill to its first acceptance afterwards."""
    first_after: dict[int, float] = {}
    for record in accepted:
        if record["received_at"] < killed_at:
            continue
        partition = partition_of(int(record["operation"]["id"].split("-", 1)[1]), partitions=PARTITIONS)
        first_after[partition] = min(first_after.get(partition, float("inf")), record["received_at"])
    return {p: at - killed_at for p, at in first_after.items()}
