"""One CLI layer: one exit-code table for every command, one ``fail()``, no command that mutates the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import typer

from worker.cli import common
from worker.cli.common import EXIT_CODES_HELP, Exit, load

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = sorted(ROOT.joinpath("worker", "cli").glob("*.py"))


def test_each_exit_code_has_one_meaning_in_the_one_table():
    codes = [int(code) for code in Exit]
    assert len(codes) == len(set(codes))
    for code in Exit:
        assert f"; {int(code)} " in f"; {EXIT_CODES_HELP.split(': ', 1)[1]}", code.name


def mutations_of_the_environment(path: Path) -> list[int]:
    """Lines that write ``os.environ`` (assignment, ``del``, ``pop``, ``update``, ``putenv``…)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store | ast.Del):
            target = ast.unparse(node.value)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            mutators = {"pop", "update", "setdefault", "clear", "popitem", "putenv", "unsetenv"}
            target = ast.unparse(node.func.value) if node.func.attr in mutators else ""
            target = "os.environ" if ast.unparse(node.func) in ("os.putenv", "os.unsetenv") else target
        else:
            continue
        if target == "os.environ":
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: path.name)
def test_no_command_mutates_the_environment(path: Path):
    assert mutations_of_the_environment(path) == []


def test_the_environment_check_finds_a_mutation(tmp_path: Path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nos.environ['A'] = '1'\nos.environ.pop('B', None)\ndel os.environ['C']\n")
    assert mutations_of_the_environment(sample) == [2, 3, 4]


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: path.name)
def test_only_the_common_module_defines_fail_and_exit_codes(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    assigned = {t.id for node in tree.body if isinstance(node, ast.Assign | ast.AnnAssign) for t in _targets(node)}
    if path.name != "common.py":
        assert defined & {"fail", "_fail", "Exit"} == set()
        assert {name for name in assigned if name.startswith("EXIT")} == set()


def _targets(node: ast.Assign | ast.AnnAssign) -> list[ast.Name]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return [target for target in targets if isinstance(target, ast.Name)]


def write_workspace(path: Path, name: str) -> Path:
    path.write_text(f'[workspaces.{name}]\nsite_id = "s"\napi_key = "k"\n', encoding="utf-8")
    return path


def test_workspaces_option_replaces_the_environment_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CIO_WORKSPACES_FILE", str(write_workspace(tmp_path / "env.toml", "beta")))
    settings = load(write_workspace(tmp_path / "flag.toml", "acme"))
    assert sorted(settings.workspaces) == ["acme"]


def test_a_bad_workspaces_file_exits_with_the_usage_code(tmp_path: Path):
    with pytest.raises(typer.Exit) as exited:
        common.load(tmp_path / "missing.toml")
    assert exited.value.exit_code == Exit.USAGE
