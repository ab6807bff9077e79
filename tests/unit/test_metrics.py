"""Process metrics: bounded labels, counts in the exposition, the pure state families and the endpoint."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from worker.ops.metrics import (
    FleetMetrics,
    WorkspaceState,
    entry_time_s,
    observe_many,
    start_metrics_server,
    state_families,
    status_label,
)

#: Every label name a cio-fleet metric may carry (plus the histogram bucket label).
BOUNDED_LABELS = {"workspace", "type", "status", "outcome", "reason", "field", "le"}


@pytest.fixture
def metrics() -> FleetMetrics:
    return FleetMetrics()


def sample(metrics: FleetMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_counts_appear_in_the_exposition(metrics: FleetMetrics) -> None:
    """What the pipeline reports is what Prometheus scrapes."""
    metrics.delivered("acme", "track", 3)
    metrics.skipped("acme", "page")
    metrics.rejected("acme", "identify", 2)
    metrics.dead_lettered("acme", "rejected", 2)
    metrics.auth_failure("acme")
    metrics.timestamps_dropped("acme", "device.last_used", 4)
    text = generate_latest(metrics.registry).decode()
    assert 'cio_fleet_events_delivered_total{type="track",workspace="acme"} 3.0' in text
    assert 'cio_fleet_events_skipped_total{type="page",workspace="acme"} 1.0' in text
    assert 'cio_fleet_events_rejected_total{type="identify",workspace="acme"} 2.0' in text
    assert 'cio_fleet_events_dead_lettered_total{outcome="rejected",workspace="acme"} 2.0' in text
    assert 'cio_fleet_auth_failures_total{workspace="acme"} 1.0' in text
    assert 'cio_fleet_timestamps_dropped_total{field="device.last_used",workspace="acme"} 4.0' in text


@pytest.mark.parametrize(
    ("call", "name", "labels"),
    [
        (lambda m: m.delivered("acme", "made-up-type"), "cio_fleet_events_delivered_total", {"type": "other"}),
        (lambda m: m.rejected("acme", None), "cio_fleet_events_rejected_total", {"type": "other"}),
        (lambda m: m.dead_lettered("acme", "free text!"), "cio_fleet_events_dead_lettered_total", {"outcome": "other"}),
        (lambda m: m.request("acme", None, 0.1, 1, 10), "cio_fleet_requests_total", {"status": "error"}),
        (lambda m: m.request("acme", 999, 0.1, 1, 10), "cio_fleet_requests_total", {"status": "other"}),
        (lambda m: m.request("acme", 429, 0.1, 1, 10), "cio_fleet_requests_total", {"status": "429"}),
        (lambda m: m.timestamps_dropped("acme", "sentAt"), "cio_fleet_timestamps_dropped_total", {"field": "other"}),
    ],
)
def test_label_values_outside_the_bounded_sets_are_folded(
    metrics: FleetMetrics, call, name: str, labels: dict[str, str]
) -> None:
    """Unknown types, outcomes and statuses never create new series."""
    call(metrics)
    assert sample(metrics, name, workspace="acme", **labels) == 1.0


def test_a_request_records_status_duration_and_batch_size(metrics: FleetMetrics) -> None:
    """One call fills the request counter and the three histograms."""
    metrics.request("acme", 200, 0.25, events=150, nbytes=120_000)
    assert sample(metrics, "cio_fleet_requests_total", workspace="acme", status="200") == 1.0
    assert sample(metrics, "cio_fleet_request_duration_seconds_sum", workspace="acme") == 0.25
    assert sample(metrics, "cio_fleet_batch_events_bucket", workspace="acme", le="200.0") == 1.0
    assert sample(metrics, "cio_fleet_batch_events_bucket", workspace="acme", le="100.0") == 0.0
    assert sample(metrics, "cio_fleet_batch_bytes_sum", workspace="acme") == 120_000


def test_end_to_end_latency_is_read_from_stream_entry_ids(metrics: FleetMetrics) -> None:
    """The enqueue time is the entry id's milliseconds."""
    metrics.end_to_end_from_ids("acme", ["1700000000000-0", b"1700000001000-3"], accepted_at_s=1_700_000_002.5)
    assert sample(metrics, "cio_fleet_end_to_end_latency_seconds_sum", workspace="acme") == pytest.approx(4.0)
    assert sample(metrics, "cio_fleet_end_to_end_latency_seconds_count", workspace="acme") == 2.0


def test_a_clock_behind_redis_never_records_negative_latency(metrics: FleetMetrics) -> None:
    """Skew between hosts is clipped at zero."""
    metrics.end_to_end("acme", -0.5)
    metrics.limiter_wait("acme", 0.02)
    assert sample(metrics, "cio_fleet_end_to_end_latency_seconds_sum", workspace="acme") == 0.0
    assert sample(metrics, "cio_fleet_rate_limiter_wait_seconds_count", workspace="acme") == 1.0


@pytest.mark.parametrize(("entry_id", "seconds"), [("1700000000123-0", 1_700_000_000.123), (b"5-1", 0.005)])
def test_entry_time_reads_the_id_milliseconds(entry_id: str | bytes, seconds: float) -> None:
    """``<ms>-<seq>`` becomes unix seconds."""
    assert entry_time_s(entry_id) == pytest.approx(seconds)


@pytest.mark.parametrize(("status", "label"), [(200, "200"), (503, "503"), (None, "error"), (42, "other")])
def test_status_labels(status: int | None, label: str) -> None:
    """HTTP statuses stay; anything else is bounded."""
    assert status_label(status) == label


def test_two_instances_do_not_share_counts() -> None:
    """Each FleetMetrics has its own registry."""
    first, second = FleetMetrics(), FleetMetrics(CollectorRegistry())
    first.delivered("acme", "track")
    assert sample(second, "cio_fleet_events_delivered_total", workspace="acme", type="track") is None


def test_prepared_workspaces_expose_zero_series(metrics: FleetMetrics) -> None:
    """rate() works before the first event."""
    metrics.prepare(["acme"])
    assert sample(metrics, "cio_fleet_events_delivered_total", workspace="acme", type="alias") == 0.0
    assert sample(metrics, "cio_fleet_timestamps_dropped_total", workspace="acme", field="timestamp") == 0.0


def test_every_metric_is_named_for_the_fleet_and_labelled_within_bounds(metrics: FleetMetrics) -> None:
    """Prometheus conventions: one prefix, bounded label names."""
    metrics.request("acme", 200, 0.1, 1, 1)
    metrics.delivered("acme", "track")
    metrics.timestamps_dropped("acme", "timestamp")
    for family in metrics.registry.collect():
        assert family.name.startswith("cio_fleet_")
        for metric_sample in family.samples:
            assert set(metric_sample.labels) <= BOUNDED_LABELS


def families_by_name(now_ms: int, states: dict[str, WorkspaceState], max_entries: int = 100) -> dict:
    """{sample name: {label tuple: value}} of the state families."""
    found: dict = {}
    for family in state_families(now_ms, states, dlq_max_entries=max_entries, dlq_alarm_ratio=0.8):
        for s in family.samples:
            found.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return found


def state(**overrides) -> WorkspaceState:
    base = {
        "enqueued": 10,
        "backlog": 4,
        "oldest_entry_ms": 1_000,
        "throttled": False,
        "unauthorized": False,
        "dead_letters": 0,
        "enqueued_by_type": {"track": 6, "identify": 1},
    }
    return WorkspaceState(**{**base, **overrides})


def test_state_families_report_backlog_age_and_enqueued() -> None:
    """Counts and age come straight from the reading."""
    found = families_by_name(now_ms=6_500, states={"acme": state()})
    key = (("workspace", "acme"),)
    enqueued = found["cio_fleet_events_enqueued_total"]
    assert enqueued[(("type", "track"), ("workspace", "acme"))] == 6
    assert enqueued[(("type", "identify"), ("workspace", "acme"))] == 1
    # the three the producers did not count (a raw XADD, a replay) are type other
    assert enqueued[(("type", "other"), ("workspace", "acme"))] == 3
    assert found["cio_fleet_backlog_events"][key] == 4
    assert found["cio_fleet_oldest_event_age_seconds"][key] == 5.5


def test_an_empty_workspace_has_no_age() -> None:
    """Without a waiting event the age is 0."""
    found = families_by_name(now_ms=6_500, states={"acme": state(backlog=0, oldest_entry_ms=None)})
    assert found["cio_fleet_oldest_event_age_seconds"][(("workspace", "acme"),)] == 0.0


@pytest.mark.parametrize(("throttled", "unauthorized"), [(False, False), (True, False), (False, True), (True, True)])
def test_pauses_are_reported_by_reason(throttled: bool, unauthorized: bool) -> None:
    """One series per bounded reason, 1 while paused."""
    found = families_by_name(0, {"acme": state(throttled=throttled, unauthorized=unauthorized)})
    paused = found["cio_fleet_workspace_paused"]
    assert paused[(("reason", "throttled"), ("workspace", "acme"))] == int(throttled)
    assert paused[(("reason", "unauthorized"), ("workspace", "acme"))] == int(unauthorized)


@pytest.mark.parametrize(("dead_letters", "alarm"), [(0, 0), (79, 0), (80, 1), (100, 1), (5_000, 1)])
def test_the_dead_letter_alarm_fires_past_the_ratio(dead_letters: int, alarm: int) -> None:
    """dlq_alarm_ratio 0.8 of dlq_max_entries 100: alarm from 80 entries."""
    found = families_by_name(0, {"acme": state(dead_letters=dead_letters)})
    assert found["cio_fleet_dead_letter_entries"][(("workspace", "acme"),)] == dead_letters
    assert found["cio_fleet_dead_letter_alarm"][(("workspace", "acme"),)] == alarm


def test_port_zero_starts_no_server(metrics: FleetMetrics) -> None:
    """Settings.metrics_port = 0 turns the endpoint off."""
    assert start_metrics_server(metrics, 0) is None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_endpoint_serves_this_registry(metrics: FleetMetrics) -> None:
    """GET /metrics returns the process's counts."""
    metrics.delivered("acme", "alias", 7)
    server = start_metrics_server(metrics, free_port(), addr="127.0.0.1")
    assert server is not None
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'cio_fleet_events_delivered_total{type="alias",workspace="acme"} 7.0' in body


@pytest.mark.parametrize(
    "values",
    [[0.0], [0.1, 0.1, 0.25, 7.0], [1e-9, 0.005, 0.0051, 2.5, 60.0, 1e9], [float(n) / 7 for n in range(300)], []],
)
def test_observing_many_values_at_once_counts_as_observing_each(values: list[float]) -> None:
    one_by_one, at_once = (Histogram("h", "h", ["ws"], registry=CollectorRegistry()) for _ in range(2))
    child = one_by_one.labels("a")
    for value in values:
        child.observe(value)
    observe_many(at_once.labels("a"), values)
    assert samples_of(at_once) == samples_of(one_by_one)


def samples_of(histogram: Histogram) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value) for metric in histogram.collect() for s in metric.samples if "created" not in s.name
    ]
