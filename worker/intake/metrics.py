"""The intake's Prometheus metrics: requests by status, events accepted and refused, request latency."""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

#: Request latency buckets, in seconds.
_LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class IntakeMetrics:
    """The intake's metrics on ``registry`` (a fresh one by default).

    Args:
        registry: Where the metrics are registered.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "cio_fleet_intake_requests", "Tracking API requests (/v1/...) answered, by status.", ["status"], registry=r
        )
        self.events = Counter(
            "cio_fleet_intake_events",
            "Events received by the intake, by workspace and outcome (accepted, refused, full).",
            ["workspace", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "cio_fleet_intake_request_seconds", "Intake request latency.", buckets=_LATENCY_BUCKETS, registry=r
        )

    def request(self, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(str(status)).inc()
        self.latency.observe(seconds)

    def outcome(self, workspace: str, accepted: int, refused: int, not_enqueued: int) -> None:
        """Count a request's events: enqueued, refused for a reason, and left out by a full backlog."""
        for outcome, count in (("accepted", accepted), ("refused", refused), ("full", not_enqueued)):
            if count:
                self.events.labels(workspace, outcome).inc(count)

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)
