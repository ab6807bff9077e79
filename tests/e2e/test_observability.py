"""Operating a real run: its Prometheus metrics and its JSON logs."""

from __future__ import annotations

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from producers.keys import stream_key
from tests.e2e.conftest import standin_workspaces, wait_for
from worker.local.demo import free_port

pytestmark = pytest.mark.e2e


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, labs), v in samples.items() if n == name and wanted <= set(labs))


def mixed_events() -> list[dict]:
    tracks = [{"type": "track", "userId": f"t{n}", "event": "Bought", "messageId": f"t-{n}"} for n in range(30)]
    identifies = [{"type": "identify", "userId": f"i{n}", "traits": {"plan": "pro"}} for n in range(10)]
    anonymous = [{"type": "identify", "anonymousId": f"a{n}", "traits": {"plan": "x"}} for n in range(5)]
    no_url_pages = [{"type": "page", "userId": f"p{n}", "name": "Home"} for n in range(3)]
    refused = [
        {"type": "track", "userId": f"r{n}", "event": "Bought", "properties": {"tag": "refuse-me"}} for n in range(2)
    ]
    return tracks + identifies + anonymous + no_url_pages + refused


def test_a_real_run_is_counted_by_every_metric_family(stand_in, make_fleet):
    # Given a worker serving metrics, and 50 events: 42 deliverable (2 of which Customer.io refuses), 5 skipped,
    # 3 rejected by the mapping
    stand_in.set_faults([{"reject_items_matching": "refuse-me"}])
    port = free_port()
    fleet = make_fleet(standin_workspaces(stand_in.url, "a"), CIO_METRICS_PORT=str(port))
    fleet.start(1)
    with fleet.producer("wsa") as producer:
        assert producer.enqueue_many(mixed_events()).enqueued == 50
    # When they have all been settled
    wait_for(
        lambda: (
            value(scrape(port), "cio_fleet_events_dead_lettered_total", workspace="wsa") == 5
            and value(scrape(port), "cio_fleet_events_delivered_total", workspace="wsa") == 40
        ),
        30,
        "every outcome counted",
    )
    samples = scrape(port)
    requests = [r for r in stand_in.requests() if r["site_id"] == "site-a"]
    # Then each family shows the right counts
    assert value(samples, "cio_fleet_events_enqueued_total", workspace="wsa") == 50
    assert value(samples, "cio_fleet_events_enqueued_total", workspace="wsa", type="track") == 32
    assert value(samples, "cio_fleet_events_enqueued_total", workspace="wsa", type="identify") == 15
    assert value(samples, "cio_fleet_events_enqueued_total", workspace="wsa", type="page") == 3
    assert value(samples, "cio_fleet_events_delivered_total", workspace="wsa", type="track") == 30
    assert value(samples, "cio_fleet_events_delivered_total", workspace="wsa", type="identify") == 10
    assert value(samples, "cio_fleet_events_skipped_total", workspace="wsa", type="identify") == 5
    assert value(samples, "cio_fleet_events_rejected_total", workspace="wsa", type="page") == 3
    assert value(samples, "cio_fleet_events_dead_lettered_total", workspace="wsa", outcome="rejected") == 3
    assert value(samples, "cio_fleet_events_dead_lettered_total", workspace="wsa", outcome="item_rejected") == 2
    assert value(samples, "cio_fleet_requests_total", workspace="wsa") == len(requests)
    assert value(samples, "cio_fleet_requests_total", workspace="wsa", status="207") == sum(
        1 for r in requests if r["status"] == 207
    )
    assert value(samples, "cio_fleet_batch_events_count", workspace="wsa") == len(requests)
    assert value(samples, "cio_fleet_batch_events_sum", workspace="wsa") == 42
    assert value(samples, "cio_fleet_batch_bytes_sum", workspace="wsa") == sum(r["body_bytes"] for r in requests)
    assert value(samples, "cio_fleet_request_duration_seconds_count", workspace="wsa") == len(requests)
    assert value(samples, "cio_fleet_end_to_end_latency_seconds_count", workspace="wsa") == 40
    assert value(samples, "cio_fleet_backlog_events", workspace="wsa") == 0
    assert value(samples, "cio_fleet_dead_letter_entries", workspace="wsa") == 5
    assert value(samples, "cio_fleet_workspace_paused", workspace="wsa") == 0
    assert value(samples, "cio_fleet_dead_letter_alarm", workspace="wsa") == 0


def test_logs_of_a_real_run_are_json_lines_without_secrets(stand_in, make_fleet):
    # Given a worker logging JSON, and a run with deliveries, retries and dead letters
    stand_in.set_faults([{"reject_items_matching": "refuse-me", "error_rate": 0.3}])
    fleet = make_fleet(standin_workspaces(stand_in.url, "a"), CIO_RETRY__BASE_S="0.05", CIO_RETRY__CAP_S="0.2")
    fleet.start(1)
    with fleet.producer("wsa") as producer:
        producer.enqueue_many(mixed_events())
    wait_for(lambda: len(stand_in.accepted("site-a")) >= 40, 30, "deliveries")
    fleet.stop()
    # Then every line is a JSON object, batches are logged with their fields, and the key is nowhere
    lines = [line for line in fleet.logs().splitlines() if line.strip()]
    records = [orjson.loads(line) for line in lines]
    assert all(isinstance(record, dict) and {"ts", "level", "message"} <= record.keys() for record in records)
    batches = [r for r in records if r["message"] == "batch sent"]
    assert batches
    assert {"workspace", "partition", "batch_size", "status", "duration_ms"} <= batches[0].keys()
    assert "key-a" not in fleet.logs()
    assert "a2V5LWE" not in fleet.logs()  # base64 of the key, as in an Authorization header
    assert not any("Bought" in line for line in lines if '"level": "INFO"' in line)


def test_a_metrics_port_clash_never_disables_delivery(stand_in, make_fleet, redis_client, key_prefix):
    # Given a worker serving metrics on a port, and a second worker on the same host told to use the same port
    port = free_port()
    fleet = make_fleet(standin_workspaces(stand_in.url, "a"), CIO_METRICS_PORT=str(port), CIO_SWEEP_INTERVAL_S="0.3")
    fleet.start(1)
    # Then the second one still starts its sweeper (its heartbeat is how `start` knows it is up) ...
    (second,) = fleet.start(1)
    fleet.processes[0].kill()
    fleet.processes[0].wait(timeout=10)
    # ... and with the first one gone, it alone delivers an event that no producer kicked (only its sweeper can)
    redis_client.xadd(
        stream_key(key_prefix, "wsa", 0),
        {"v": "1", "event": '{"type":"track","anonymousId":"x","event":"E","messageId":"m"}'},
    )
    wait_for(lambda: len(stand_in.requests()) == 1, 30, "the raw XADD event delivered by the second worker")
    assert second.poll() is None
    # And its log says what happened and which setting to change
    assert f"port {port} cannot be bound" in fleet.logs()
    assert "CIO_METRICS_PORT" in fleet.logs()
