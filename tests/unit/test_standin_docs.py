"""The stand-in's controls are documented where users look: the README and `cio-fleet fake-customerio --help`."""

from __future__ import annotations

from typer.testing import CliRunner

from tests.unit.test_compose import REPO
from worker.cli import app
from worker.local.fake_customerio.control import ROUTES
from worker.local.fake_customerio.faults import rule_keys
from worker.settings import load_settings, read_workspaces_file

README = (REPO / "README.md").read_text(encoding="utf-8")
STANDIN_SECTION = README.split("### The local stand-in", 1)[1].split("\n### ", 1)[0]


def test_every_fault_rule_key_is_explained_in_the_readme() -> None:
    table_keys = {
        cell.strip("` ")
        for line in STANDIN_SECTION.splitlines()
        if line.startswith("| `")
        for cell in line.split("|")[1].split(",")
    }
    assert set(rule_keys()) == table_keys


def test_every_control_endpoint_is_named_in_the_readme() -> None:
    for _method, path in ROUTES:
        assert path in STANDIN_SECTION


def test_the_help_lists_every_endpoint_and_rule_key() -> None:
    help_text = " ".join(CliRunner().invoke(app, ["fake-customerio", "--help"], env={"COLUMNS": "400"}).stdout.split())
    for method, path in ROUTES:
        assert f"{method} {path}" in help_text
    for key in rule_keys():
        assert key in help_text


def test_the_local_workspaces_file_points_at_the_stand_in_default_port() -> None:
    settings = load_settings(workspaces=read_workspaces_file(REPO / "deploy" / "local" / "workspaces.toml"))
    local = settings.workspace("local")
    assert local.track_url is not None and str(local.track_url).rstrip("/") == "http://127.0.0.1:8899"
    assert "--credentials local-site:local-key" in STANDIN_SECTION
    assert (local.site_id, local.api_key.get_secret_value()) == ("local-site", "local-key")
