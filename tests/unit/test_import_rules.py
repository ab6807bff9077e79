"""The three rings keep their import direction: pure core, orchestration with ports, thin edges."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*ROOT.joinpath("worker").rglob("*.py"), *ROOT.joinpath("producers").rglob("*.py")])

#: Who may import what (modules named by their path from the repository root).
ALLOWED = {
    "httpx": {"worker/delivery.py"},
    # The optional extra ``local``: only the stand-in, never the worker's path.
    "jsonschema": {"worker/local/fake_customerio/schema.py"},
    "celery": {
        "worker/celery.py",
        "worker/tasks.py",
        "worker/ops/celery_output.py",
        "worker/cli/dlq_cmd.py",  # lazily, to queue drain tasks after a replay
        "producers/_kick.py",  # lazily, to queue drain tasks after an enqueue
    },
}
#: The pure core: no I/O, no clock, no environment, no logging.
PURE = [
    "worker/mapping/transform.py",
    "worker/mapping/fields.py",
    "worker/mapping/identifiers.py",
    "worker/mapping/timestamps.py",
    "worker/mapping/devices.py",
]
PURE += ["worker/pipeline/planning.py", "worker/pipeline/batching.py", "worker/pipeline/retry.py"]
IMPURE = {"redis", "httpx", "celery", "kombu", "logging", "os", "time", "socket", "sentry_sdk"}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def top_levels(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_only_the_edge_modules_import_the_frameworks(package):
    importers = {str(path.relative_to(ROOT)) for path in SOURCES if package in top_levels(imported(path))}
    assert importers <= ALLOWED[package]


def test_producers_never_import_the_worker():
    producers = [path for path in SOURCES if path.relative_to(ROOT).parts[0] == "producers"]
    assert producers
    assert [str(p) for p in producers if "worker" in top_levels(imported(p))] == []


@pytest.mark.parametrize("module", PURE)
def test_the_pure_core_does_no_io(module):
    names = imported(ROOT / module)
    assert (names | top_levels(names)) & IMPURE == set()
