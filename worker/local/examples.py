"""Sample events: the origin document's examples, and synthetic traffic for the demo, tests and benchmarks."""

from __future__ import annotations

import random
from typing import Any, Final

_DEVICE_TOKEN: Final = (
    "cEFolG5uRDGPizsaUh4X4m:APA91bFsKwjW9zUaiuJMCGqa3fLRiJ8fv1riQ6U-1iI72aSFZx5wxiqGnqbL-S2g3kZ5RrRUUo3AAVh_"
    "LhpFbjDlSqEoC4rqHmH8Z1BGgqaD9jStahy63cGXueW-vOr6mTOekmXgWSww"
)
_COMMON: Final = {"email": "cool.person@example.com", "projectId": "sqsv42VjV1e2d8ha2SHxM6", "userId": "97980cfea0067"}


def origin_examples() -> list[dict[str, Any]]:
    """The example events of the Customer.io destination document, in its order (fresh copies)."""
    return [
        {
            "type": "identify",
            "traits": {
                "first_name": "cool",
                "last_name": "person",
                "email": "cool.person@example.com",
                "plan": "premium",
            },
            "userId": "97980cfea0067",
            "created_at": "1679407797",
        },
        {
            "messageId": "4vl6zh",
            "timestamp": "2022-11-24T22:56:14.144Z",
            "type": "group",
            "projectId": "sqsv42VjV1e2d8ha2SHxM6",
            "traits": {"name": "Example Co, Inc.", "industry": "edtech", "plan": "enterprise"},
            "groupId": "example-company",
            "userId": "97980cfea0067",
        },
        {
            "messageId": "i6yatl",
            "timestamp": "2022-11-24T22:48:17.593Z",
            "type": "track",
            **_COMMON,
            "properties": {"device_id": _DEVICE_TOKEN},
            "event": "Application Installed",
        },
        {
            "messageId": "i6yatl",
            "timestamp": "2022-11-24T22:48:17.593Z",
            "type": "track",
            **_COMMON,
            "properties": {"device_id": _DEVICE_TOKEN},
            "event": "Application Uninstalled",
        },
        {
            "messageId": "i6yatl",
            "timestamp": "2022-11-24T22:48:17.593Z",
            "type": "track",
            **_COMMON,
            "properties": {"class_name": "Customer.io Basics", "class_code": "cio101", "start_date": 1679410730},
            "event": "enrolled",
        },
        {
            "messageId": "efxqsi",
            "timestamp": "2022-11-24T22:55:59.498Z",
            "type": "page",
            **_COMMON,
            "properties": {"session_started": 1679410730, "url": "http://www.example.com"},
            "name": "home",
        },
        {
            "messageId": "9zk6c",
            "timestamp": "2023-03-20T22:56:06.259Z",
            "type": "screen",
            **_COMMON,
            "properties": {"session_started": 1679410730},
            "name": "home",
        },
    ]


_PLANS: Final = ("free", "starter", "premium", "enterprise")
_EVENTS: Final = ("Signed Up", "Order Completed", "Product Viewed", "Checkout Started", "Coupon Applied")


def synthetic_event(rng: random.Random, index: int, people: int = 500) -> dict[str, Any]:
    """One plausible event of a synthetic person; index-stamped so it is unique."""
    user = f"user-{rng.randrange(people)}"
    stamp = f"2026-11-{1 + index % 28:02d}T{index % 24:02d}:{index % 60:02d}:00.000Z"
    kind = rng.choices(("track", "identify", "page", "screen", "group"), weights=(60, 15, 15, 5, 5))[0]
    event: dict[str, Any] = {"type": kind, "userId": user, "messageId": f"syn-{index}", "timestamp": stamp}
    if kind == "track":
        event.update(event=rng.choice(_EVENTS), properties={"amount": rng.randrange(1, 500), "seq": index})
    elif kind == "identify":
        event["traits"] = {"email": f"{user}@example.com", "plan": rng.choice(_PLANS), "seq": index}
    elif kind == "page":
        event.update(name="pricing", properties={"url": f"https://example.com/p/{index % 40}", "seq": index})
    elif kind == "screen":
        event.update(name="Home", properties={"seq": index})
    else:
        event.update(groupId=f"company-{rng.randrange(50)}", traits={"name": "Example", "seq": index})
    return event


def synthetic_events(count: int, *, seed: int = 7, people: int = 500) -> list[dict[str, Any]]:
    """``count`` synthetic events over ``people`` persons, reproducible for a given seed."""
    rng = random.Random(seed)
    return [synthetic_event(rng, index, people) for index in range(count)]


def edge_cases() -> list[dict[str, Any]]:
    """Events that show the other outcomes: skipped by the mapping's rules, or rejected to the dead-letter queue."""
    return [
        {"type": "identify", "anonymousId": "visitor-1", "traits": {"plan": "trial"}, "messageId": "edge-skip-1"},
        {"type": "identify", "anonymousId": "visitor-2", "traits": {"plan": "trial"}, "messageId": "edge-skip-2"},
        {"type": "page", "userId": "97980cfea0067", "name": "No URL", "messageId": "edge-reject-1"},
    ]
