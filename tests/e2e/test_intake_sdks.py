"""Real Segment-spec SDKs, unmodified, send through the intake to real workers and the stand-in: every call
arrives as the mapping contract says, exactly once, in order."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import standin_workspaces, wait_for, wait_until_drained
from tests.support.intake import Intake, running_intake

pytestmark = pytest.mark.e2e

#: The Segment SDKs send to workspace wsa, Customer.io's to wsb (a ``pk_us_`` key goes as Bearer, others as Basic).
WRITE_KEYS = {
    "wsa": ["wk-segment-python", "wk-segment-node"],
    "wsb": ["pk_us_customerio-python", "wk-customerio-node"],
}
#: Where ``make node-clients`` installs the Node.js SDKs (``npm ci``) and the script that sends with them.
NODE_DIR = Path(__file__).parent / "node"
DEVICE_TOKEN = "fcm-token-0123456789"
#: The operations the seven calls of ``send_all`` become (mapping.md), in the order they were made.
EXPECTED = [
    ("person", "identify"),
    ("person", "event"),
    ("person", "page"),
    ("person", "screen"),
    ("object", "identify"),
    ("person", "merge"),
    ("person", "add_device"),
]


@pytest.fixture
def fleet_and_intake(stand_in, make_fleet, tmp_path: Path) -> Iterator[Intake]:
    workspaces = standin_workspaces(stand_in.url, "ab")
    for name, keys in WRITE_KEYS.items():
        workspaces[name]["write_keys"] = keys
    fleet = make_fleet(workspaces)
    fleet.start(1)
    with running_intake(fleet.worker_env(), tmp_path / "intake.log") as intake:
        yield intake


def send_all(client: Any, user: str) -> None:
    """identify, track, page, screen, group, alias and an Application Installed with a device token."""
    client.identify(user, {"email": f"{user}@example.com", "plan": "pro"})
    client.track(user, "Ordered", {"total": 42})
    client.page(user, "Docs", "Home", {"url": "https://example.com/home"})
    client.screen(user, "App", "Main", {"seq": 3})
    client.group(user, "acme-co", {"name": "Acme"})
    client.alias("anon-previous-id", user)
    client.track(
        user, "Application Installed", {"version": "1.0"}, context={"device": {"token": DEVICE_TOKEN, "type": "ios"}}
    )
    client.flush()


def segment_client(url: str, on_error: Callable[..., None]) -> Any:
    from segment.analytics import Client

    return Client(WRITE_KEYS["wsa"][0], host=url, max_retries=3, upload_interval=0.1, on_error=on_error)


def customerio_client(url: str, on_error: Callable[..., None]) -> Any:
    from customerio.analytics import Client

    return Client(WRITE_KEYS["wsb"][0], host=url, max_retries=3, upload_interval=0.1, on_error=on_error)


@pytest.mark.parametrize(
    ("make_client", "workspace", "site"),
    [(segment_client, "wsa", "site-a"), (customerio_client, "wsb", "site-b")],
    ids=["segment-analytics-python", "customerio-cdp-analytics"],
)
def test_python_sdks_deliver_through_the_intake(
    fleet_and_intake: Intake,
    stand_in,
    redis_client,
    key_prefix,
    make_client: Callable[[str, Callable[..., None]], Any],
    workspace: str,
    site: str,
):
    errors: list[Any] = []
    client = make_client(fleet_and_intake.url, lambda error, batch: errors.append(error))
    user = f"user-{workspace}"

    send_all(client, user)
    client.shutdown()

    assert errors == []
    assert_delivered(stand_in, redis_client, key_prefix, workspace, site, user)


@pytest.mark.parametrize(
    ("sdk", "workspace", "site"),
    [("segment", "wsa", "site-a"), ("customerio", "wsb", "site-b")],
    ids=["@segment/analytics-node", "@customerio/cdp-analytics-node"],
)
def test_node_sdks_deliver_through_the_intake(
    fleet_and_intake: Intake, stand_in, redis_client, key_prefix, sdk: str, workspace: str, site: str
):
    assert (NODE_DIR / "node_modules" / ".package-lock.json").exists(), "run `make node-clients` (npm ci there)"
    user = f"user-{workspace}"

    sent = subprocess.run(
        ["node", str(NODE_DIR / "send.js"), sdk, fleet_and_intake.url, WRITE_KEYS[workspace][1], user],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert sent.returncode == 0, sent.stderr
    assert_delivered(stand_in, redis_client, key_prefix, workspace, site, user)


def assert_delivered(stand_in, redis_client, key_prefix: str, workspace: str, site: str, user: str) -> None:
    """The seven calls arrived at the workspace's site only, as the mapping says, each once, in order."""
    wait_for(lambda: len(stand_in.accepted(site)) >= len(EXPECTED), 60, "the seven operations")
    wait_until_drained(redis_client, key_prefix, workspace)
    operations = [record["operation"] for record in stand_in.accepted(site)]
    assert [(op["type"], op["action"]) for op in operations] == EXPECTED  # exactly once each, in order
    identify, event, page, screen, group, merge, device = operations
    assert identify["identifiers"] == {"id": user} and identify["attributes"]["plan"] == "pro"
    assert event["name"] == "Ordered" and event["attributes"]["total"] == 42
    assert page["name"] == "https://example.com/home"
    assert screen["name"] == "Main"
    assert group["identifiers"] == {"object_type_id": "1", "object_id": "acme-co"}
    assert group["cio_relationships"][0]["identifiers"] == {"id": user}
    assert merge["primary"] == {"id": user} and merge["secondary"] == {"id": "anon-previous-id"}
    assert device["identifiers"] == {"id": user}
    assert device["device"]["token"] == DEVICE_TOKEN and device["device"]["platform"] == "ios"
    assert stand_in.accepted("site-a" if site == "site-b" else "site-b") == []
