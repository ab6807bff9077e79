"""Issue 13.16: a service that only produces installs `cio-fleet` without the worker extra, and it works.

A fresh virtualenv gets ``pip install <the project>`` (the base dependencies only, from pip's cache and the
configured indexes); there ``import producers`` and an enqueue with its kick work against the real Redis, and none
of the worker's dependencies can be imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import redis

from producers.keys import drain_queue, stream_key
from worker.store.replies import stream_rows

REPO = Path(__file__).resolve().parents[2]
WORKER_ONLY = ["celery", "kombu", "httpx", "sentry_sdk", "typer", "rich", "jsonschema", "prometheus_client"]

PROBE = """
import importlib.util, json, sys
import producers
with producers.Producer(sys.argv[1], "acme", key_prefix=sys.argv[2], partitions=1) as producer:
    message_id = producer.track("user-1", "Installed Lean")
missing = [name for name in sys.argv[3:] if importlib.util.find_spec(name) is None]
print(json.dumps({"message_id": message_id, "missing": missing, "loaded": sorted(sys.modules)}))
"""


def install_producer_only(tmp_path: Path) -> Path:
    """A fresh venv with the project installed without extras; returns its python."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("producers", "worker"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    command = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)]
    subprocess.run(command, check=True, env=env, cwd=tmp_path, capture_output=True, timeout=240)
    return python


def test_a_producer_only_install_enqueues_and_kicks_without_the_worker_dependencies(
    tmp_path: Path, redis_client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    python = install_producer_only(tmp_path)
    run = subprocess.run(
        [str(python), "-c", PROBE, redis_url, key_prefix, *WORKER_ONLY],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", "")},
        timeout=60,
    )
    report = json.loads(run.stdout)
    assert report["missing"] == WORKER_ONLY
    assert "worker" not in {name.split(".")[0] for name in report["loaded"]}
    [(_, fields)] = stream_rows(redis_client.xrange(stream_key(key_prefix, "acme", 0)))
    assert orjson.loads(fields[b"event"])["messageId"] == report["message_id"]
    [message] = [orjson.loads(raw) for raw in redis_client.lrange(drain_queue(key_prefix), 0, -1)]
    assert message["headers"]["task"] == "worker.drain"
