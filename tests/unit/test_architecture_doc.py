"""docs/architecture.md's module table lists every module of ``worker`` and ``producers``, each once, in its room."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"


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
