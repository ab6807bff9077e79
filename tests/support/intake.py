"""A real intake server for tests: ``cio-fleet intake`` in its own process on 127.0.0.1, and readers of what it
enqueued."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis

from producers.keys import stream_key
from worker.settings import MAX_DEFAULT_PARTITIONS
from worker.store.replies import stream_rows


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Intake:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def workspaces_toml(workspaces: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, options in workspaces.items():
        lines.append(f"[workspaces.{name}]")
        lines += [f"{key} = {orjson.dumps(value).decode()}" for key, value in options.items()]
    return "\n".join(lines) + "\n"


def wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"intake exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"intake not healthy after {timeout_s} s:\n{log_path.read_text(errors='replace')}")


@contextmanager
def running_intake(env: dict[str, str], log_path: Path, *extra_args: str) -> Iterator[Intake]:
    """``cio-fleet intake`` on a free port of 127.0.0.1 with ``env`` (plus PATH), until the block ends."""
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "cio-fleet"),
        "intake",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra_args,
    ]
    base = {key: value for key, value in os.environ.items() if not key.startswith("CIO_")}
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, env={**base, **env}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log_path)
        yield Intake(url, process, log_path)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stored_events(
    client: redis.Redis, prefix: str, workspace: str, partitions: int = MAX_DEFAULT_PARTITIONS
) -> list[dict[str, Any]]:
    """Every event waiting in the workspace's streams (partition order, then stream order; by default in any stream
    a default partition count may have)."""
    pipe = client.pipeline(transaction=False)
    for partition in range(partitions):
        pipe.xrange(stream_key(prefix, workspace, partition))
    return [orjson.loads(fields[b"event"]) for rows in pipe.execute() for _, fields in stream_rows(rows)]
