"""The main job end to end on this machine: a stand-in (unless real credentials), a worker, sample events, a summary."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import redis
from prometheus_client.parser import text_string_to_metric_families

from producers import Producer
from producers.connect import sync_client
from producers.keys import drain_queue, prefix_pattern, stream_key
from worker.local.examples import edge_cases, origin_examples, synthetic_events
from worker.local.localfleet import start_worker, stop_worker, wait_until_registered
from worker.settings import ConfigError, Settings, WorkspaceConfig

#: Credentials of the stand-in's demo workspace.
DEMO_SITE_ID, DEMO_API_KEY = "demo-site", "demo-api-key"

Say = Callable[[str], None]
#: Where the demo sends: a local stand-in, or Customer.io with a configured workspace.
Target = Literal["standin", "configured"]
#: What ``--target`` accepts: ``auto`` picks ``configured`` when workspaces are configured.
DemoTarget = Literal["auto", "standin", "configured"]


@dataclass
class DemoSummary:
    """What one demo run sent and what became of it."""

    target: str
    sent: int = 0
    refused_by_producer: int = 0
    delivered: int = 0
    skipped: int = 0
    rejected: int = 0
    dead_lettered: int = 0
    requests: int = 0
    elapsed_s: float = 0.0
    accepted_by_standin: int | None = None
    requests_by_status: dict[str, int] = field(default_factory=dict)

    @property
    def settled(self) -> int:
        """Events with an outcome (rejected events are dead-lettered, so they count once)."""
        return self.delivered + self.skipped + self.dead_lettered


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int, workspace: str) -> dict[str, Any]:
    """Sum the worker's counters for one workspace from its ``/metrics`` endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    totals: dict[str, Any] = {"by_status": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("workspace") != workspace or not sample.name.endswith("_total"):
                continue
            totals[sample.name] = totals.get(sample.name, 0) + sample.value
            if sample.name == "cio_fleet_requests_total":
                status = sample.labels.get("status", "?")
                totals["by_status"][status] = totals["by_status"].get(status, 0) + int(sample.value)
    return totals


def fill_summary(summary: DemoSummary, totals: dict[str, Any]) -> None:
    """Copy scraped counters into the summary."""
    summary.delivered = int(totals.get("cio_fleet_events_delivered_total", 0))
    summary.skipped = int(totals.get("cio_fleet_events_skipped_total", 0))
    summary.rejected = int(totals.get("cio_fleet_events_rejected_total", 0))
    summary.dead_lettered = int(totals.get("cio_fleet_events_dead_lettered_total", 0))
    summary.requests = int(totals.get("cio_fleet_requests_total", 0))
    summary.requests_by_status = dict(totals["by_status"])


@contextmanager
def standin_workspace(say: Say) -> Iterator[tuple[WorkspaceConfig, Any]]:
    """A local Customer.io stand-in and a workspace that points at it."""
    from worker.local.fake_customerio import FakeCustomerIO

    fake = FakeCustomerIO(credentials={DEMO_SITE_ID: DEMO_API_KEY}).start()
    say(f"Customer.io stand-in listening on {fake.url} (no real credentials configured)")
    try:
        yield WorkspaceConfig(name="demo", site_id=DEMO_SITE_ID, api_key=DEMO_API_KEY, track_url=fake.url), fake
    finally:
        fake.stop()


def workspaces_toml(workspace: WorkspaceConfig) -> str:
    """A workspaces file holding one workspace (the demo's own, never a real key)."""
    lines = [
        f"[workspaces.{workspace.name}]",
        f'site_id = "{workspace.site_id}"',
        f'api_key = "{workspace.api_key.get_secret_value()}"',
        f'region = "{workspace.region}"',
    ]
    if workspace.track_url:
        lines.append(f'track_url = "{workspace.track_url}"')
    return "\n".join(lines) + "\n"


def worker_env(settings: Settings, prefix: str, metrics_port: int, workspaces_file: str | None) -> dict[str, str]:
    """The environment of the demo's worker process."""
    env = {
        "CIO_REDIS_URL": settings.redis_url.get_secret_value(),
        "CIO_KEY_PREFIX": prefix,
        "CIO_METRICS_PORT": str(metrics_port),
        "CIO_LOG_FORMAT": "text",
        "CIO_LOG_LEVEL": "WARNING",
        "CIO_SWEEP_INTERVAL_S": "0.5",
    }
    if workspaces_file:
        env["CIO_WORKSPACES_FILE"] = workspaces_file
    return env


def backlog(client: redis.Redis, prefix: str, workspace: WorkspaceConfig) -> int:
    """Events still waiting in the workspace's partitions."""
    pipe = client.pipeline(transaction=False)
    for partition in range(workspace.partitions):
        pipe.xlen(stream_key(prefix, workspace.name, partition))
    return sum(int(n) for n in pipe.execute())


def enqueue(settings: Settings, prefix: str, workspace: WorkspaceConfig, events: list[dict[str, Any]]) -> int:
    """Enqueue ``events`` through the producer library; returns how many were enqueued."""
    url = settings.redis_url.get_secret_value()
    with Producer(url, workspace.name, key_prefix=prefix, partitions=workspace.partitions) as producer:
        return producer.enqueue_many(events).enqueued


#: How often a long wait says how far it got.
PROGRESS_EVERY_S = 10.0


def wait_for_outcomes(port: int, summary: DemoSummary, workspace: str, timeout_s: float, say: Say) -> bool:
    """Poll the worker's metrics until every enqueued event has an outcome; False (and a message) on timeout."""
    started = time.monotonic()
    next_progress = started + PROGRESS_EVERY_S
    while True:
        with contextlib.suppress(OSError):
            fill_summary(summary, scrape(port, workspace))
        if summary.settled >= summary.sent:
            return True
        now = time.monotonic()
        if now - started >= timeout_s:
            say(f"timed out after {timeout_s:.0f} s: {summary.settled} of {summary.sent} events have an outcome")
            return False
        if now >= next_progress:
            say(f"waiting: {summary.settled} of {summary.sent} events have an outcome")
            next_progress = now + PROGRESS_EVERY_S
        time.sleep(0.2)


def describe_target(settings: Settings, target: Target, workspace_name: str | None) -> str:
    """One line that says where the demo's events go, and how to choose otherwise."""
    if target == "configured":
        name = workspace_name or sorted(settings.workspaces)[0]
        return (
            f"target: Customer.io, configured workspace {name!r} ({settings.workspace(name).base_url}); "
            "`--target standin` sends to a local stand-in instead"
        )
    ignored = f"; {len(settings.workspaces)} configured workspace(s) ignored" if settings.workspaces else ""
    return f"target: a local Customer.io stand-in{ignored} (`--target configured` sends to Customer.io)"


def choose_target(settings: Settings, target: DemoTarget) -> Target:
    """``auto``: Customer.io when workspaces are configured, else the stand-in.

    Raises:
        ConfigError: ``configured`` was asked for and no workspace is configured.
    """
    if target == "auto":
        return "configured" if settings.workspaces else "standin"
    if target == "configured" and not settings.workspaces:
        raise ConfigError("--target configured: no workspace is configured (CIO_WORKSPACES_FILE or CIO_WORKSPACES__*)")
    return target


def run_demo(
    settings: Settings, *, target: Target, workspace_name: str | None, synthetic: int, timeout_s: float, say: Say
) -> DemoSummary:
    """Run the whole job once, under a key prefix of its own, and return its summary.

    The prefix of its own means no other worker on the same Redis takes the demo's events (or waits for them). With
    the stand-in its keys are deleted afterwards; with Customer.io they are deleted only once every event has an
    outcome, and otherwise kept (and named) so that nothing is lost.
    """
    prefix = f"cio-demo-{uuid.uuid4().hex[:8]}"
    if target == "configured":
        workspace = settings.workspace(workspace_name or sorted(settings.workspaces)[0])
        summary = _run(settings, prefix, workspace, None, synthetic, timeout_s, say, None)
        if summary.settled >= summary.sent:
            _forget(settings, prefix)
        else:
            say(
                f"events still waiting are kept under the key prefix {prefix!r}: see them with "
                f"`CIO_KEY_PREFIX={prefix} cio-fleet status`, finish them with a worker started with that prefix"
            )
        return summary
    with standin_workspace(say) as (workspace, fake), tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "workspaces.toml"
        path.write_text(workspaces_toml(workspace), encoding="utf-8")
        try:
            return _run(settings, prefix, workspace, fake, synthetic, timeout_s, say, str(path))
        finally:
            _forget(settings, prefix)


def _forget(settings: Settings, prefix: str) -> None:
    client = sync_client(settings.redis_url.get_secret_value())
    keys = list(client.scan_iter(match=prefix_pattern(prefix), count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _run(
    settings: Settings,
    prefix: str,
    workspace: WorkspaceConfig,
    fake: Any,
    synthetic: int,
    timeout_s: float,
    say: Say,
    workspaces_file: str | None,
) -> DemoSummary:
    summary = DemoSummary(target=fake.url if fake else workspace.base_url)
    port = free_port()
    env = worker_env(settings, prefix, port, workspaces_file or os.environ.get("CIO_WORKSPACES_FILE"))
    client = sync_client(settings.redis_url.get_secret_value())
    process = start_worker(env, concurrency=16, queue=drain_queue(prefix))
    try:
        wait_until_registered(client, prefix, 1)
        say("worker started; enqueueing the origin document's examples and synthetic events")
        events = origin_examples() + edge_cases() + synthetic_events(synthetic)
        started = time.monotonic()
        summary.sent = enqueue(settings, prefix, workspace, events)
        summary.refused_by_producer = len(events) - summary.sent
        wait_for_outcomes(port, summary, workspace.name, timeout_s, say)
        summary.elapsed_s = time.monotonic() - started
        if fake is not None:
            summary.accepted_by_standin = len(fake.accepted(DEMO_SITE_ID))
        waiting = backlog(client, prefix, workspace)
        if waiting:
            say(f"{waiting} event(s) still wait in their partitions")
    finally:
        stop_worker(process)
        client.close()
    return summary
