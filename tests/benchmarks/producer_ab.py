"""Producer figures of two code trees, back to back: ``python tests/benchmarks/producer_ab.py --before <tree>``.

A loaded machine swings by tens of percent from one minute to the next, so the trees are measured alternately
(before, after, before, after…), each run in a fresh process that imports ``producers`` from its tree
(``PYTHONPATH``), and the medians are printed. ``<tree>`` is a checkout of the code to compare with, for example
``git worktree add /tmp/before c44a518``. Needs the real Redis (``--redis``, default 127.0.0.1:6379/0); each run
uses its own key prefix and deletes its keys.

The events are the benchmark's (``bench_producer.py`` imports them from here): Segment-shaped, a type mix, a full
context, ISO timestamps, 5,000 people.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

AFTER = Path(__file__).resolve().parents[2]


def context(n: int) -> dict[str, Any]:
    return {
        "ip": f"10.0.{n % 256}.{n % 200}",
        "library": {"name": "analytics-python", "version": "2.3.0"},
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
        "locale": "en-US",
        "timezone": "Europe/Paris",
        "page": {"path": "/checkout", "url": "https://shop.example.com/checkout", "referrer": "https://google.com"},
    }


def realistic_event(n: int, user: str) -> dict[str, Any]:
    """One event of the mix (``n`` picks the type)."""
    common = {"timestamp": f"2026-11-29T12:{n % 60:02d}:{n % 60:02d}.{n % 1000:03d}Z", "context": context(n)}
    kind = n % 10
    if kind < 6:
        products = [{"sku": f"sku-{n % 97}", "price": 9.99, "quantity": 2}]
        properties = {"order_id": f"o-{n}", "total": n % 500 + 0.99, "currency": "EUR", "products": products}
        return {"type": "track", "userId": user, "event": "Order Completed", **common, "properties": properties}
    if kind < 8:
        properties = {"url": "https://shop.example.com/checkout", "title": "Checkout", "path": "/checkout"}
        return {"type": "page", "userId": user, "name": "Checkout", **common, "properties": properties}
    if kind == 8:
        traits = {"email": f"{user}@example.com", "plan": "pro", "created_at": "2025-01-01T00:00:00Z"}
        return {"type": "identify", "userId": user, **common, "traits": traits}
    anonymous = f"anon-{n % 3_000}"
    return {"type": "track", "anonymousId": anonymous, "event": "Product Viewed", **common, "properties": {"sku": "x"}}


def realistic_events(count: int, people: int = 5_000, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` events of the mix over ``people`` people, in a random but repeatable order of people."""
    pick = random.Random(seed)
    return [realistic_event(n, f"user-{pick.randrange(people)}") for n in range(count)]


def simple_events(count: int) -> list[dict[str, Any]]:
    """The events ``bench_producer.py`` used before issue 17: small track events of 10,000 people (~200 bytes)."""
    return [
        {
            "type": "track",
            "userId": f"user-{n % 10_000}",
            "event": "Order Completed",
            "properties": {"order_id": f"o-{n}", "total": n % 500 + 0.99, "currency": "EUR", "items": 3},
            "context": {"ip": "10.0.0.1", "library": {"name": "bench", "version": "1"}},
        }
        for n in range(count)
    ]


def timed(run: Any, count: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return count / (time.perf_counter() - wall), (time.process_time() - cpu) / count * 1e6


def measure(url: str, events: int, calls: int) -> dict[str, float]:
    """One run's figures with the ``producers`` this process imports."""
    import asyncio

    import redis

    from producers import AsyncProducer, Producer

    prefix = f"ab-{uuid.uuid4().hex[:10]}"
    realistic, simple = realistic_events(events), simple_events(events)
    out: dict[str, float] = {}
    try:
        with Producer(url, "bench", key_prefix=prefix, partitions=16, backlog_cap=10_000_000) as producer:
            producer.enqueue_many(realistic[:2_000])
            out["many_eps"], out["many_cpu_us"] = timed(lambda: producer.enqueue_many(realistic), events)
            out["simple_eps"], out["simple_cpu_us"] = timed(lambda: producer.enqueue_many(simple), events)
            latencies = []
            cpu = time.process_time()
            for event in realistic[:calls]:
                user, properties = event.get("userId") or "u", event.get("properties")
                started = time.perf_counter()
                producer.track(
                    user, "Order Completed", properties, context=event["context"], timestamp=event["timestamp"]
                )
                latencies.append((time.perf_counter() - started) * 1e3)
            out["track_cpu_us"] = (time.process_time() - cpu) / calls * 1e6
            latencies.sort()
            out["track_p50_ms"], out["track_p99_ms"] = latencies[calls // 2], latencies[int(calls * 0.99)]

        async def many() -> tuple[float, float]:
            async with AsyncProducer(url, "bench", key_prefix=prefix, partitions=16, backlog_cap=None) as producer:
                await producer.enqueue_many(realistic[:2_000])
                wall, cpu = time.perf_counter(), time.process_time()
                await producer.enqueue_many(realistic)
                return events / (time.perf_counter() - wall), (time.process_time() - cpu) / events * 1e6

        out["async_eps"], out["async_cpu_us"] = asyncio.run(many())
    finally:
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(match=f"{prefix}:*", count=1_000):
            client.delete(key)
        client.delete(f"{prefix}.drain")
        client.close()
    return out


def run_tree(tree: Path, args: argparse.Namespace) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, __file__, "--child", "--redis", args.redis]
    command += ["--events", str(args.events), "--calls", str(args.calls)]
    done = subprocess.run(command, env=env, cwd=tree, check=True, capture_output=True, text=True)
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="the code tree to compare with")
    parser.add_argument("--after", type=Path, default=AFTER, help="the code tree measured after (this one)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.redis, args.events, args.calls)))
        return
    trees = {"before": args.before, "after": args.after} if args.before else {"after": args.after}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            runs[name].append(run_tree(tree, args))
    print(f"medians of {args.rounds} alternating rounds ({args.events:,} events, {args.calls:,} track calls per round)")
    for figure in runs["after"][0]:
        row = "  ".join(f"{name} {statistics.median(run[figure] for run in runs[name]):>12,.3f}" for name in trees)
        print(f"  {figure:<14} {row}")


if __name__ == "__main__":
    main()
