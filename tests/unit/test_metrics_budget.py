"""``cio_fleet_rate_limit_rps``: the configured budget, exported so requests/s can be drawn against it."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker.ops.metrics import FleetMetrics


def test_the_budget_gauge_holds_each_workspace_s_rate_limit() -> None:
    """Each configured workspace gets one series whose value is its ``rate_limit_rps``."""
    metrics = FleetMetrics()
    metrics.budget({"acme": 100.0, "beta": 2.5})
    text = generate_latest(metrics.registry).decode()
    samples = {
        sample.labels["workspace"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "cio_fleet_rate_limit_rps"
        for sample in family.samples
    }
    assert samples == {"acme": 100.0, "beta": 2.5}
