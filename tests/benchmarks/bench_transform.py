"""Transform throughput on one core, on a mix of typical events. Prints figures; asserts nothing about time.

Run: ``/work/venv/bin/pytest tests/benchmarks/bench_transform.py -s -o addopts=""``
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

from worker.mapping.actions import compile_actions
from worker.mapping.transform import Deliver, TransformOptions, transform, transform_raw

CONTEXT = {
    "ip": "203.0.113.7",
    "library": {"name": "analytics-python", "version": "2.3.0"},
    "locale": "en-US",
    "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15",
}
TYPICAL: list[dict[str, Any]] = [
    {
        "type": "identify",
        "userId": "97980cfea0067",
        "anonymousId": "0b4c7a3e-8a41-4d0b-9a5e-5f0f1c1f5e11",
        "messageId": "e1b6a3f2-1f0e-4c8e-9d3b-1f5a2c7d9e01",
        "timestamp": "2024-05-01T12:34:56.789Z",
        "traits": {
            "email": "cool.person@example.com",
            "first_name": "Cool",
            "last_name": "Person",
            "plan": "premium",
            "createdAt": "2023-03-21T14:09:57Z",
            "address": {"city": "Lisbon", "country": "PT"},
            "logins": 42,
        },
        "context": CONTEXT,
    },
    {
        "type": "track",
        "event": "Order Completed",
        "userId": "97980cfea0067",
        "messageId": "6c1e0c4e-3a5b-4b8e-8f0d-2d9c7a1b3e55",
        "timestamp": "2024-05-01T12:35:01.002Z",
        "properties": {
            "order_id": "50314b8e9bcf000000000000",
            "total": 27.5,
            "currency": "USD",
            "coupon": "hasbros",
            "products": [{"product_id": "507f1f77", "sku": "45790-32", "price": 19, "quantity": 1}],
            "shipped_at": "2024-05-02",
        },
        "context": CONTEXT,
    },
    {
        "type": "page",
        "userId": "97980cfea0067",
        "messageId": "a7c3e9d1-52b4-4e0f-9d88-0c1f3b5a7e22",
        "timestamp": "2024-05-01T12:35:10Z",
        "name": "Pricing",
        "properties": {
            "url": "https://www.example.com/pricing",
            "path": "/pricing",
            "title": "Pricing",
            "referrer": "",
        },
        "context": CONTEXT,
    },
    {
        "type": "group",
        "userId": "97980cfea0067",
        "groupId": "example-company",
        "messageId": "4vl6zh",
        "timestamp": "2022-11-24T22:56:14.144Z",
        "traits": {"name": "Example Co, Inc.", "industry": "edtech", "plan": "enterprise", "employees": 120},
    },
    {
        "type": "track",
        "event": "Application Opened",
        "userId": "97980cfea0067",
        "messageId": "0f4a8b6c-77e2-4c1d-8b3a-9e5d2f1c0a33",
        "timestamp": "2024-05-01T12:36:00Z",
        "properties": {"from_background": True},
        "context": {
            **CONTEXT,
            "app": {"name": "Example", "version": "3.4.1", "build": "3401"},
            "device": {"token": "a" * 64, "type": "ios", "model": "iPhone15,2"},
            "os": {"name": "iOS", "version": "17.4"},
        },
    },
]


def measure(label: str, work: Callable[[], int], seconds: float = 2.0) -> float:
    """Run ``work`` (which returns how many events it did) for about ``seconds``; print and return events/s."""
    work()  # warm-up
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        done += work()
    rate = done / elapsed
    print(f"{label:<44} {rate:>12,.0f} events/s  ({elapsed / done * 1e6:.1f} µs/event)")
    return rate


def test_transform_throughput_on_a_mix_of_typical_events() -> None:
    options = TransformOptions()
    events = TYPICAL * 200
    raws = [orjson.dumps(event) for event in events]
    assert all(isinstance(transform(event, options), Deliver) for event in TYPICAL)

    def decoded() -> int:
        for event in events:
            transform(event, options)
        return len(events)

    def from_raw() -> int:
        for raw in raws:
            transform_raw(raw, options)
        return len(raws)

    print()
    measure("transform(dict), mixed typical events", decoded)
    measure("transform_raw(bytes), mixed typical events", from_raw)
    for event in TYPICAL:
        batch = [orjson.dumps(event)] * 1000

        def one_kind(batch: list[bytes] = batch) -> int:
            for raw in batch:
                transform_raw(raw, options)
            return len(batch)

        measure(f"transform_raw, {event['type']} {event.get('event', '')}".rstrip(), one_kind, seconds=0.5)


#: Ten changed or added actions: a workspace that uses the Actions tab heavily.
TEN_ACTIONS: list[dict[str, Any]] = [
    {
        "action": "Create or Update Person",
        "fields": {"user_id": "$.traits.email", "attributes": {"plan": "$.traits.plan"}},
    },
    {
        "action": "Track Event",
        "fields": {"attributes": {"total": "$.properties.total", "currency": "$.properties.currency"}},
    },
    {"action": "Track Event", "name": "Big orders", "trigger": 'type = "track" and properties.coupon exists'},
    {"action": "Track Page View", "enabled": False},
    {
        "action": "Track Screen View",
        "name": "Pages as screens",
        "trigger": 'type = "page"',
        "fields": {"name": "$.name"},
    },
    {"action": "Create or Update Device", "name": "Push token", "trigger": 'event = "Push Token Registered"'},
    {"action": "Create or Update Device", "trigger": 'type = "track" and event contains "Application"'},
    {"action": "Create or Update Object", "fields": {"object_type_id": "2"}, "unmapped": ["relationship_attributes"]},
    {"action": "Delete Device", "trigger": 'type = "track" and (event = "Device Deleted" or event = "Token Revoked")'},
    {"action": "Merge People", "enabled": False},
]


def cpu_rate(options: TransformOptions, events: list[dict[str, Any]], rounds: int = 7) -> float:
    """Events per CPU second of ``transform`` over ``events``, the median of ``rounds`` (robust on a loaded host)."""
    rates = []
    for _ in range(rounds):
        done, started = 0, time.process_time()
        while time.process_time() - started < 0.4:
            for event in events:
                transform(event, options)
            done += len(events)
        rates.append(done / (time.process_time() - started))
    return statistics.median(rates)


def test_transform_throughput_with_actions() -> None:
    events = TYPICAL * 200
    fixed = TransformOptions()
    default_actions = dataclasses.replace(fixed, actions=compile_actions(()))
    ten = dataclasses.replace(fixed, actions=compile_actions(TEN_ACTIONS))
    assert all(isinstance(transform(event, ten), Deliver) for event in TYPICAL)
    print()
    for label, options in (
        ("no actions configured (the fixed routing)", fixed),
        ("the default actions, compiled", default_actions),
        ("ten custom actions", ten),
    ):
        print(f"{label:<44} {cpu_rate(options, events):>12,.0f} events/CPU-s (median of 7)")
