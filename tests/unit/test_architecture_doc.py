"""docs/architecture.md's tables match the code: every module in its room, and every key of ``producers/keys.py``."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from producers import keys

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
KEYS_HEADING = "Redis keys (prefix `cio` by default, `CIO_KEY_PREFIX`)"


def table_rows(heading: str) -> list[list[str]]:
    """The cells of each body row of the table under a ``## heading`` of the architecture page."""
    section = DOC.read_text(encoding="utf-8").split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]


def listed_modules() -> list[str]:
    return [re.fullmatch(r"`([^`]+)`", row[0]).group(1) for row in table_rows("Modules and their one job")]  # type: ignore[union-attr]


def existing_modules() -> set[str]:
    sources = [*ROOT.joinpath("worker").rglob("*.py"), *ROOT.joinpath("producers").rglob("*.py")]
    return {str(path.relative_to(ROOT)) for path in sources}


def test_the_module_table_lists_exactly_the_modules_that_exist():
    listed = listed_modules()
    assert len(listed) == len(set(listed))
    assert set(listed) == existing_modules()


def test_each_module_sits_in_the_room_its_folder_names():
    for row in table_rows("Modules and their one job"):
        parts = Path(row[0].strip("`")).parts
        room = parts[0] if parts[0] == "producers" else ("root" if len(parts) == 2 else parts[1])
        assert row[1] == room, row
        assert row[2], row


def key_patterns() -> dict[str, str]:
    """Each key function of ``producers/keys.py`` → the pattern its docstring starts with."""
    tree = ast.parse((ROOT / "producers" / "keys.py").read_text(encoding="utf-8"))
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    key_functions = [node for node in functions if node.name.endswith(("_key", "_queue")) and "parse" not in node.name]
    return {node.name: re.match(r"``([^`]+)``: ", ast.get_docstring(node) or "").group(1) for node in key_functions}  # type: ignore[union-attr]


def test_the_key_table_lists_exactly_the_patterns_of_the_key_schema():
    documented = [re.fullmatch(r"`([^`]+)`", row[0]).group(1) for row in table_rows(KEYS_HEADING)]  # type: ignore[union-attr]
    patterns = key_patterns()
    assert len(documented) == len(set(documented))
    assert set(documented) == set(patterns.values())


def test_each_key_function_builds_the_key_its_docstring_names():
    values = {"prefix": "{p}", "workspace": "{ws}", "partition": "{n}"}
    for name, pattern in key_patterns().items():
        function = getattr(keys, name)
        arguments = [values[parameter] for parameter in inspect.signature(function).parameters]
        assert function(*arguments) == pattern, name


def key_building_f_strings(path: Path) -> list[int]:
    """Lines of f-strings that put a key prefix before ``:`` or ``.``: a key built outside ``producers/keys.py``."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.JoinedStr) or len(node.values) < 2:
            continue
        first, second = node.values[0], node.values[1]
        prefixed = isinstance(first, ast.FormattedValue) and "prefix" in ast.unparse(first.value)
        if prefixed and isinstance(second, ast.Constant) and str(second.value).startswith((":", ".drain", ".unacked")):
            lines.append(node.lineno)
    return lines


def test_no_module_but_the_key_schema_builds_a_key():
    sources = [*ROOT.joinpath("worker").rglob("*.py"), *ROOT.joinpath("producers").rglob("*.py")]
    builders = {str(path.relative_to(ROOT)): key_building_f_strings(path) for path in sources}
    assert builders.pop("producers/keys.py")
    assert {path: lines for path, lines in builders.items() if lines} == {}
