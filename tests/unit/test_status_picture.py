"""The README's picture of ``cio-fleet status --watch`` is what the current code renders for the fixed seed."""

from __future__ import annotations

import re

from tests.support.status_picture import PICTURE, REPO, render_svg, seeded_view


def test_the_committed_picture_is_what_the_view_renders_now() -> None:
    """Change the view, then run ``make picture``: a stale docs/status-watch.svg fails here."""
    assert PICTURE.read_text(encoding="utf-8") == render_svg(), "docs/status-watch.svg is stale: run `make picture`"


def test_the_picture_shows_every_figure_of_the_view() -> None:
    """The seed exercises each column: rates, budget, trend, pauses, workers."""
    svg = PICTURE.read_text(encoding="utf-8")
    text = re.sub(r"&#160;", " ", svg)
    for shown in ("acme", "97%", "1,834.0", "throttled", "unauthorized", "Workers", "refresh", "▇"):
        assert shown in text, shown
    assert {ws.name for ws in seeded_view().status.workspaces} <= set(re.findall(r"acme|globex|initech", text))


def test_the_readme_shows_the_picture() -> None:
    """The README links the file the test above keeps up to date."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"]({PICTURE.relative_to(REPO).as_posix()})" in readme
