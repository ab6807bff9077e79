"""Real Segment-spec SDKs, unmodified, send through the intake to real workers and the stand-in: every call
arrives as the mapping contract says, exactly once, in order."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import standin_workspaces, wait_for, wait_until_drained
from tests.support.intake import Intake, running_intake

pytestmark = pytest.mark.e2e

#: A key per SDK, each naming its own workspace (so each SDK's arrivals are told apart by site).
SDK_KEYS = {"wsa": "wk-segment-python", "wsb": "pk_us_customerio-python"}
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
    for name, key in SDK_KEYS.items():
        workspaces[name]["write_keys"] = [key]
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


def segment_client(url: str) -> Any:
    from segment.analytics import Client

    return Client(SDK_KEYS["wsa"], host=url, max_retries=3, upload_interval=0.1)


def customerio_client(url: str) -> Any:
    from customerio.analytics import Client

    return Client(SDK_KEYS["wsb"], host=url, max_retries=3, upload_interval=0.1)


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
    make_client: Callable[[str], Any],
    workspace: str,
    site: str,
):
    errors: list[Any] = []
    client = make_client(fleet_and_intake.url)
    client.on_error = lambda error, batch: errors.append(error)
    user = f"user-{workspace}"

    send_all(client, user)
    client.shutdown()

    assert errors == []
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
