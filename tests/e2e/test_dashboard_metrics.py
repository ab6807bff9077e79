"""The dashboard and the alert rules read only what a real worker exports: checked against a real scrape."""

from __future__ import annotations

import pytest
import redis

from producers.keys import rate_key
from tests.e2e.conftest import standin_workspaces, wait_for
from tests.e2e.test_observability import mixed_events, scrape, value
from tests.support.promql import alert_exprs, dashboard_exprs, load_dashboard, missing, uses, variable_uses
from worker.local.demo import free_port

pytestmark = pytest.mark.e2e


def exported_labels(samples: dict[tuple[str, frozenset], float]) -> dict[str, set[str]]:
    """Series name → every label name its samples carry (histograms as ``_bucket``, ``_sum``, ``_count``)."""
    exported: dict[str, set[str]] = {}
    for name, labels in samples:
        exported.setdefault(name, set()).update(label for label, _ in labels)
    return exported


def hold_the_limiter(client: redis.Redis, prefix: str, workspace: str, seconds: float) -> None:
    """Move the workspace's GCRA arrival time ``seconds`` ahead, so its next request waits for the limiter."""
    now_s, now_us = client.time()
    tat_us = int(now_s) * 1_000_000 + int(now_us) + int(seconds * 1_000_000)
    client.set(rate_key(prefix, workspace), str(tat_us), px=int(seconds * 1_000) + 1_000)


def test_every_metric_and_label_the_dashboard_and_alerts_read_is_in_a_real_scrape(
    stand_in, make_fleet, redis_client, key_prefix
):
    # Given a worker serving metrics, whose limiter makes the first request wait, and a run with deliveries,
    # a dead letter of each kind the stand-in can cause, and skipped events (so every labelled series exists)
    stand_in.set_faults([{"reject_items_matching": "refuse-me"}])
    port = free_port()
    fleet = make_fleet(standin_workspaces(stand_in.url, "a", rate_limit_rps=40.0), CIO_METRICS_PORT=str(port))
    fleet.start(1)
    hold_the_limiter(redis_client, key_prefix, "wsa", 3.0)
    with fleet.producer("wsa") as producer:
        assert producer.enqueue_many(mixed_events()).enqueued == 50
    # When everything is settled
    wait_for(
        lambda: (
            value(scrape(port), "cio_fleet_events_delivered_total", workspace="wsa") == 40
            and value(scrape(port), "cio_fleet_events_dead_lettered_total", workspace="wsa") == 5
        ),
        30,
        "every outcome counted",
    )
    samples = scrape(port)
    exported = exported_labels(samples)
    # Then the limiter's wait was observed, and the budget gauge holds the configured rate_limit_rps
    assert value(samples, "cio_fleet_rate_limiter_wait_seconds_count", workspace="wsa") >= 1
    assert value(samples, "cio_fleet_rate_limit_rps", workspace="wsa") == 40.0
    # And every metric and label read by a panel, the workspace variable or an alert rule is in the scrape
    used = [use for expr in [*dashboard_exprs(load_dashboard()), *alert_exprs()] for use in uses(expr)]
    used += variable_uses(load_dashboard())
    assert len({use.metric for use in used}) >= 15
    assert missing(used, exported) == []


def test_the_scrape_check_sees_a_label_a_metric_does_not_carry(stand_in, make_fleet):
    # Given a worker's real scrape
    port = free_port()
    fleet = make_fleet(standin_workspaces(stand_in.url, "a"), CIO_METRICS_PORT=str(port))
    fleet.start(1)
    wait_for(lambda: value(scrape(port), "cio_fleet_redis_up") == 1, 30, "a scrape that read Redis")
    exported = exported_labels(scrape(port))
    # Then a misspelt metric and a label the metric lacks are both reported: the check above can fail
    wrong = uses("sum by (status) (cio_fleet_backlog_events) + max by (workspace) (cio_fleet_backlog_event)")
    assert missing(wrong, exported) == [
        "metric cio_fleet_backlog_event is not exported",
        "label status is not on cio_fleet_backlog_events",
    ]
