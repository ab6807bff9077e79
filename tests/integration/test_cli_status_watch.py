"""`cio-fleet status --watch`: a real CLI process on a terminal (a pty), real Redis, a real /metrics endpoint."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from producers.keys import dlq_key, stream_key
from tests.integration.test_cli_dlq import API_KEY, CLI, cli_environment, run
from tests.integration.test_cli_status import seed_fleet
from tests.integration.test_deadletter_store import letter, put
from worker.cli.status_rates import Counts
from worker.cli.status_watch import read_snapshot, scrape_requests
from worker.local.demo import free_port

#: Cursor shown again: what rich's Live writes when it stops (the terminal is restored).
SHOW_CURSOR = "\x1b[?25h"
HIDE_CURSOR = "\x1b[?25l"


class GrowingRequests(Collector):
    """A worker's requests counter that grows by 10 on each scrape, so every refresh sees new requests."""

    def __init__(self) -> None:
        self.scrapes = 0

    def collect(self) -> Iterable[CounterMetricFamily]:
        self.scrapes += 1
        family = CounterMetricFamily("cio_fleet_requests", "Track API requests.", labels=["workspace", "status"])
        family.add_metric(["acme", "200"], 10.0 * self.scrapes)
        yield family


@pytest.fixture
def metrics_url() -> Iterator[str]:
    registry = CollectorRegistry()
    registry.register(GrowingRequests())
    port = free_port()
    server, thread = start_http_server(port, "127.0.0.1", registry=registry)
    yield f"http://127.0.0.1:{port}/metrics"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def start_on_a_terminal(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``cio-fleet`` with a 160x40 pty as its terminal; returns the process and the pty's reading end."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    env = {**env, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen([CLI, *args], env=env, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    return process, leader


def read_until(leader: int, seen: bytearray, wanted: str, timeout_s: float = 30) -> str:
    """Read the terminal until ``wanted`` appears in what it showed; the text so far."""
    deadline = time.monotonic() + timeout_s
    while wanted not in seen.decode("utf-8", "replace"):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {wanted!r}; the terminal showed:\n{seen.decode(errors='replace')}"
        ready, _, _ = select.select([leader], [], [], min(left, 1.0))
        if ready:
            try:
                seen += os.read(leader, 65_536)
            except OSError:  # the process is gone and the pty closed
                break
    return seen.decode("utf-8", "replace")


def drain(leader: int, seen: bytearray) -> str:
    """Everything the terminal still holds once the process has exited."""
    while select.select([leader], [], [], 0.5)[0]:
        try:
            chunk = os.read(leader, 65_536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    return seen.decode("utf-8", "replace")


def test_watch_refreshes_with_rates_and_exits_0_on_ctrl_c(
    tmp_path: Path, redis_url: str, key_prefix: str, redis_client: redis.Redis, metrics_url: str
) -> None:
    # Given a seeded fleet (acme: 3 waiting events, throttled; beta: unauthorized, one dead letter; a worker alive)
    env = cli_environment(tmp_path, redis_url, key_prefix)
    seed_fleet(redis_client, key_prefix, int(time.time() * 1_000))
    # When status --watch runs on a terminal, counting the requests of a worker's /metrics
    process, leader = start_on_a_terminal(env, "status", "--watch", "--interval", "0.2", "--metrics", metrics_url)
    seen = bytearray()
    try:
        # Then it refreshes in place, with rates from the second refresh on
        read_until(leader, seen, "refresh #4")
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    shown = drain(leader, seen)
    os.close(leader)
    # And Ctrl-C ends it with exit 0, the cursor shown again after it was hidden, and no traceback
    assert code == 0, shown
    assert HIDE_CURSOR in shown and shown.rindex(SHOW_CURSOR) > shown.rindex(HIDE_CURSOR)
    assert "Traceback" not in shown and "Aborted" not in shown
    # And the frames show the figures: backlog, pause, dead letters, workers, and the rates
    last = shown[shown.rindex("refresh #3") :]
    for text in ("acme", "throttled", "unauthorized (401)", "Workers alive: 1 (host-a:11)", "requests/s", "budget"):
        assert text in shown, text
    assert "out/s" in shown and "dead/min" in shown
    assert "%" in last  # acme's share of its budget, from the scraped requests
    assert API_KEY not in shown


def test_watch_refuses_json(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    """--json prints one snapshot: combined with --watch it is a usage error (exit 2)."""
    done = run(cli_environment(tmp_path, redis_url, key_prefix), "status", "--watch", "--json", code=2)
    assert "--watch cannot be combined with --json" in done.stderr


def test_watch_to_a_pipe_prints_one_frame_per_refresh(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    """Output to a file or a pipe: frames follow one another, so a log of the run stays readable."""
    env = cli_environment(tmp_path, redis_url, key_prefix)
    command = [CLI, "status", "--watch", "--interval", "0.2"]
    lines: list[str] = []
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as process:
        assert process.stdout is not None
        for raw in process.stdout:
            lines.append(raw.decode())
            if "refresh #2" in lines[-1]:
                break
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    text = "".join(lines)
    assert text.count("Workspaces") == 2 and "refresh #1" in text and "\x1b[" not in text


def test_a_snapshot_reads_the_counters_the_rates_are_made_of(redis_client: redis.Redis, key_prefix: str) -> None:
    # Given 8 events in two of acme's streams and one dead letter
    ids = [redis_client.xadd(stream_key(key_prefix, "acme", n % 2), {"v": "1", "event": "{}"}) for n in range(8)]
    first_letter = put(redis_client, key_prefix, letter("acme"))
    before = read_snapshot(redis_client, key_prefix, {"acme": 2, "beta": 1}, {"acme": 7.0})
    # When 3 events are settled, one more event is dead-lettered and the first dead letter is purged
    redis_client.xdel(stream_key(key_prefix, "acme", 0), *ids[0:6:2])  # three events of partition 0
    put(redis_client, key_prefix, letter("acme", n=1))
    redis_client.xdel(dlq_key(key_prefix, "acme"), first_letter)
    after = read_snapshot(redis_client, key_prefix, {"acme": 2, "beta": 1}, None)
    # Then the counters only grow (entries ever added), while the backlog is what waits now
    assert before.workspaces == {"acme": Counts(8, 8, 1, 7.0), "beta": Counts(0, 0, 0, 0.0)}
    assert after.workspaces["acme"] == Counts(enqueued=8, backlog=5, dead_lettered=2, requests=None)
    assert after.at_ms >= before.at_ms


def test_requests_are_summed_per_workspace_over_the_scraped_workers(metrics_url: str) -> None:
    """Two scrapes of the same worker count twice; an unreachable worker makes the sum unknown, and says so."""
    assert scrape_requests([metrics_url, metrics_url]) == ({"acme": 30.0}, ())
    unreachable = f"http://127.0.0.1:{free_port()}/metrics"
    totals, problems = scrape_requests([metrics_url, unreachable])
    assert totals is None
    assert problems == (f"cannot scrape {unreachable} (URLError)",)
