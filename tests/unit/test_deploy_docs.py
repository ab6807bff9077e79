"""Links between the ops documents, alert annotations and manifests point at headings that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.unit.test_compose import REPO

#: Documents whose headings are link targets.
TARGETS = {"docs/operations.md": REPO / "docs" / "operations.md", "deploy/README.md": REPO / "deploy" / "README.md"}
#: Files that link to them: everything in deploy/, the compose file and the documents themselves.
SOURCES = sorted(
    [REPO / "docker-compose.yml", *TARGETS.values()]
    + [path for path in (REPO / "deploy").rglob("*") if path.is_file() and "secrets" not in path.parts]
)
_LINK = re.compile(r"(docs/operations\.md|deploy/README\.md|README\.md|operations\.md)?#([a-z0-9-]+)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings."""
    headings = re.findall(r"^#{1,6} (.+)$", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {slug(heading) for heading in headings}


def resolve(source: Path, target: str | None) -> Path:
    """The document a link names, relative to the linking file when no directory is given."""
    if target is None:
        return source
    by_name = {Path(key).name: value for key, value in TARGETS.items()}
    return TARGETS.get(target) or (source.parent / target if (source.parent / target).is_file() else by_name[target])


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Paused workspace (401, 403)", "paused-workspace-401-403"),
        ("Customer.io errors", "customerio-errors"),
        ("Throttling (429)", "throttling-429"),
        ("Dead-letter runbook", "dead-letter-runbook"),
    ],
)
def test_anchors_follow_github_rules(heading: str, anchor: str) -> None:
    """The slug helper matches GitHub's rendering for the heading shapes used here."""
    assert slug(heading) == anchor


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: str(path.relative_to(REPO)))
def test_every_link_to_an_ops_heading_resolves(source: Path) -> None:
    """Alert annotations and documents link to sections that exist."""
    text = source.read_text(encoding="utf-8")
    broken = [
        f"{target or ''}#{anchor}"
        for target, anchor in _LINK.findall(text)
        if (target or source.suffix == ".md") and anchor not in anchors(resolve(source, target or None))
    ]
    assert broken == []
