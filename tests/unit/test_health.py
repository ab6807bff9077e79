"""The worker's local health check: beats of the consumer and the sweeper, served as /healthz and /livez."""

from __future__ import annotations

import httpx
import pytest

from tests.unit.test_metrics import free_port
from worker.ops.health import LIVENESS_FACTOR, Health, judge
from worker.ops.metrics import FleetMetrics, start_metrics_server


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("last_beat", "down", "healthy", "detail"),
    [
        (None, None, False, "not started"),
        (995.0, None, True, "beat 5.0 s ago"),
        (969.0, None, False, "no beat for 31 s (limit 30 s)"),
        (999.0, "consumer stopped", False, "consumer stopped"),
    ],
)
def test_judge(last_beat: float | None, down: str | None, healthy: bool, detail: str) -> None:
    assert judge("consumer", last_beat, down, 30.0, now=1_000.0).healthy is healthy
    assert judge("consumer", last_beat, down, 30.0, now=1_000.0).detail == detail


def test_every_watched_part_must_beat_and_a_down_part_is_ready_again_at_its_next_beat() -> None:
    clock = Clock()
    health = Health(clock)
    health.watch("consumer", 30)
    health.watch("sweeper", 10)
    assert not health.report()[0]
    health.beat("consumer")
    health.beat("sweeper")
    assert health.report()[0]
    health.down("consumer", "broker connection lost")
    assert not health.report()[0]
    assert health.report(live=True)[0], "a part that says it is down is still alive"
    health.beat("consumer")
    assert health.report()[0]


def test_liveness_fails_only_after_many_missed_beats() -> None:
    clock = Clock()
    health = Health(clock)
    health.watch("sweeper", 10)
    health.beat("sweeper")
    clock.now += 11
    assert not health.report()[0] and health.report(live=True)[0]
    clock.now += 10 * LIVENESS_FACTOR
    assert not health.report(live=True)[0]


def test_the_metrics_port_serves_healthz_and_livez_as_json_and_metrics_as_before() -> None:
    clock = Clock()
    health = Health(clock)
    health.watch("consumer", 30)
    metrics = FleetMetrics()
    metrics.delivered("acme", "track", 3)
    server = start_metrics_server(metrics, free_port(), addr="127.0.0.1", health=health)
    assert server is not None
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        before = httpx.get(f"{base}/healthz", timeout=5)
        health.beat("consumer")
        after = httpx.get(f"{base}/healthz", timeout=5)
        live = httpx.get(f"{base}/livez", timeout=5)
        scraped = httpx.get(f"{base}/metrics", timeout=5).text
    finally:
        server.shutdown()
        server.server_close()
    assert before.status_code == 503
    assert before.json() == {"healthy": False, "parts": {"consumer": {"healthy": False, "detail": "not started"}}}
    assert (after.status_code, after.json()["healthy"], live.status_code) == (200, True, 200)
    assert 'cio_fleet_events_delivered_total{type="track",workspace="acme"} 3.0' in scraped
