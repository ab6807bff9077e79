"""`cio-fleet actions`, and `cio-fleet transform` / `dlq show`'s re-map using a workspace's actions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from worker.deadletter.remap import map_now
from worker.settings import load_settings, read_workspaces_file

CLI = str(Path(sys.executable).with_name("cio-fleet"))
API_KEY = "sekret-api-key-77aa0c"
WORKSPACES = f"""
[workspaces.acme]
site_id = "site-1"
api_key = "{API_KEY}"

[[workspaces.acme.actions]]
action = "Create or Update Device"
name = "Push token"
trigger = 'type = "track" and event = "Push Token Registered"'

[[workspaces.acme.actions]]
action = "Track Page View"
enabled = false

[[workspaces.acme.actions]]
action = "Create or Update Person"
convert_timestamps = false
fields = {{ user_id = "$.traits.customer_id", attributes = {{ plan = "$.traits.plan" }} }}

[workspaces.plain]
site_id = "site-2"
api_key = "{API_KEY}"
"""
PAGE = b'{"type":"page","userId":"u","properties":{"url":"https://x.io/"}}'
IDENTIFY = b'{"type":"identify","userId":"u","traits":{"customer_id":"C1","plan":"pro","ssn":"1"}}'


@pytest.fixture
def workspaces_file(tmp_path: Path) -> Path:
    path = tmp_path / "workspaces.toml"
    path.write_text(WORKSPACES, encoding="utf-8")
    return path


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([CLI, *args], input=stdin, capture_output=True, timeout=60, check=False)


def test_actions_lists_the_tab_marking_what_differs(workspaces_file: Path) -> None:
    result = run("actions", "--workspaces", str(workspaces_file), "-w", "acme")
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert "  Track Page View  [off *]  -> person page" in text
    assert "  Push token (Create or Update Device, added)  [on]  -> person add_device" in text
    assert '    trigger: type = "track" and event = "Push Token Registered" *' in text
    assert "    user_id: $.traits.customer_id *" in text
    assert "    convert_timestamps: false *" in text
    assert "    anonymous_id: $.anonymousId\n" in text
    assert API_KEY not in text


def test_actions_json_lists_every_workspace(workspaces_file: Path) -> None:
    result = run("actions", "--workspaces", str(workspaces_file), "--json")
    assert result.returncode == 0, result.stderr
    document = orjson.loads(result.stdout)
    by_name = {ws["workspace"]: {a["name"]: a for a in ws["actions"]} for ws in document["workspaces"]}
    assert sorted(by_name) == ["acme", "plain"]
    assert by_name["acme"]["Track Page View"]["enabled"] is False
    assert by_name["acme"]["Push token"]["added"] is True
    assert by_name["acme"]["Create or Update Person"]["fields"]["user_id"] == {
        "mapping": "$.traits.customer_id",
        "changed": True,
    }
    plain: dict[str, Any] = by_name["plain"]
    assert len(plain) == 13
    assert all(a["enabled"] and not a["trigger"]["changed"] for a in plain.values())
    assert not any(f["changed"] for a in plain.values() for f in a["fields"].values())


def test_actions_names_a_bad_configuration_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        f'[workspaces.w]\nsite_id = "s"\napi_key = "{API_KEY}"\n'
        '[[workspaces.w.actions]]\naction = "Track Event"\nfields = { colour = "$.x" }\n',
        encoding="utf-8",
    )
    result = run("actions", "--workspaces", str(path))
    assert result.returncode == 2
    message = result.stderr.decode()
    assert "workspace 'w'" in message
    assert "action 'Track Event', field 'colour': unknown field" in message
    assert API_KEY not in message


def test_transform_uses_the_workspaces_actions(workspaces_file: Path) -> None:
    for workspace, expected_page in (("acme", "skip"), ("plain", "deliver")):
        result = run("transform", "--workspaces", str(workspaces_file), "-w", workspace, stdin=PAGE + b"\n" + IDENTIFY)
        page, identify = (orjson.loads(line) for line in result.stdout.splitlines())
        assert page["outcome"] == expected_page
        if workspace == "acme":
            assert page["reason"] == "no action subscribed"
            assert identify["operations"][0]["identifiers"] == {"id": "C1"}
            assert identify["operations"][0]["attributes"] == {"plan": "pro"}
        else:
            assert identify["operations"][0]["identifiers"] == {"id": "u"}


def test_dlq_show_remaps_with_the_workspaces_actions(workspaces_file: Path) -> None:
    settings = load_settings(workspaces=read_workspaces_file(workspaces_file))
    assert map_now(PAGE, settings.workspace("acme")) == {"outcome": "skip", "reason": "no action subscribed"}
    assert map_now(PAGE, settings.workspace("plain"))["outcome"] == "deliver"
    identify = map_now(IDENTIFY, settings.workspace("acme"))
    assert identify["operations"][0]["identifiers"] == {"id": "C1"}
