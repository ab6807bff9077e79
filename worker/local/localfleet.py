"""Running worker processes on this machine: for the demo command, end-to-end tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import redis

from producers.keys import workers_key
from worker.store.replies import byte_strings


def worker_command(concurrency: int = 16, queue: str | None = None) -> list[str]:
    """The command line of one worker process (threads pool).

    Each process gets a node name of its own: on RabbitMQ, two workers of one name cannot both hold their remote
    control queue (``celery@host.celery.pidbox`` is exclusive), and the second one stops.
    """
    command = [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "threads"]
    command += ["--hostname", f"cio-fleet-{uuid.uuid4().hex[:8]}@%h"]
    command += ["--concurrency", str(concurrency), "--loglevel", "INFO", "--without-mingle", "--without-gossip"]
    return command + (["--queues", queue] if queue else [])


def start_worker(
    env: Mapping[str, str], *, concurrency: int = 16, queue: str | None = None, log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start one worker process with ``env`` added to this process's environment."""
    full_env = {**os.environ, **env}
    command = worker_command(concurrency, queue)
    if log_path is None:
        return subprocess.Popen(command, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    with log_path.open("ab") as output:
        return subprocess.Popen(command, env=full_env, stdout=output, stderr=subprocess.STDOUT)


def wait_until_registered(
    client: redis.Redis, prefix: str, count: int = 0, *, pids: Sequence[int] = (), timeout_s: float = 30.0
) -> None:
    """Wait until ``count`` workers, and the workers with these ``pids``, have sent a heartbeat.

    Raises:
        TimeoutError: they did not within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        fields = [field.decode() for field in byte_strings(client.hkeys(workers_key(prefix)))]
        started = {int(field.rsplit(":", 1)[1]) for field in fields if field.rsplit(":", 1)[-1].isdigit()}
        if len(fields) >= count and set(pids) <= started:
            return
        time.sleep(0.1)
    raise TimeoutError(f"worker(s) did not register within {timeout_s:.0f} s")


def stop_worker(process: subprocess.Popen[bytes], grace_s: float = 30.0) -> int:
    """SIGTERM (a warm shutdown), then SIGKILL after ``grace_s``; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()
