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
PURE += ["worker/mapping/actions.py", "worker/mapping/subscriptions.py"]
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


def module_of(path: Path) -> str:
    """``worker/pipeline/drain.py`` → ``worker.pipeline.drain``; a package's ``__init__.py`` → the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_of(path): path for path in SOURCES}


def with_parents(name: str) -> set[str]:
    """A module and the packages Python imports first to reach it."""
    parts = name.split(".")
    return {".".join(parts[:n]) for n in range(1, len(parts) + 1)} & MODULES.keys()


def runtime_nodes(path: Path) -> list[ast.AST]:
    """Every node of a module but those under ``if TYPE_CHECKING:`` (never executed)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for statement in node.body
        for inner in ast.walk(statement)
    }
    return [node for node in ast.walk(tree) if id(node) not in hidden]


def runtime_imports(path: Path) -> set[str]:
    """The modules a module imports when it runs (anywhere in it, lazily too; ``from a import b`` gives ``a.b``)."""
    names: set[str] = set()
    for node in runtime_nodes(path):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def internal_imports(module: str) -> set[str]:
    """The project modules one module imports when it runs, with their parent packages."""
    found: set[str] = set()
    for name in runtime_imports(MODULES[module]):
        found |= with_parents(name)
    return found - {module}


def reachable(start: str) -> set[str]:
    """Every project module importing ``start`` imports, directly or not."""
    seen, todo = set(), [*with_parents(start)]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(internal_imports(module) - seen)
    return seen


#: The pure mapping core, and the rooms that do I/O.
MAPPING = sorted(module for module in MODULES if module.startswith("worker.mapping"))
IO_ROOMS: tuple[str, ...] = ("worker.store", "worker.delivery", "worker.ops", "worker.pipeline", "worker.deadletter")
IO_ROOMS += ("worker.cli", "worker.local", "worker.celery", "worker.tasks", "worker.runtime", "worker.broker")
#: Off the hot path: what only the dead-letter commands do.
NOT_ON_THE_HOT_PATH = {"worker.deadletter.replay", "worker.deadletter.maintenance", "worker.deadletter.audit"}


@pytest.mark.parametrize("module", MAPPING)
def test_the_mapping_core_reaches_no_io_module_even_indirectly(module):
    modules = reachable(module)
    assert {m for m in modules if m.startswith(IO_ROOMS)} == set()
    external = set().union(*(runtime_imports(MODULES[m]) for m in modules))
    assert (external | top_levels(external)) & IMPURE == set()


@pytest.mark.parametrize("start", ["worker.tasks", "worker.celery", "worker.pipeline.drain"])
def test_the_hot_path_does_not_import_replay_maintenance_or_audit(start):
    modules = reachable(start)
    assert modules & NOT_ON_THE_HOT_PATH == set()
    # The stand-in's dependency (the optional extra ``local``) is never needed to run a worker.
    assert {m for m in modules if "jsonschema" in top_levels(runtime_imports(MODULES[m]))} == set()


def test_the_walk_follows_imports_through_packages():
    assert {"worker.pipeline.drain", "worker.store.partitions", "worker.store"} <= reachable("worker.tasks")
    assert {"worker.deadletter", "worker.deadletter.records"} <= reachable("worker.pipeline.settling")
    assert reachable("worker.deadletter.maintenance") & NOT_ON_THE_HOT_PATH
