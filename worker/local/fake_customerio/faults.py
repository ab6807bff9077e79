"""Switchable faults: rules as data, and the decision each rule makes for one request.

A fault configuration is a list of rules (a single rule object is a list of one). A rule may be scoped to a
``site_id`` and to a ``path``; the first rule whose scope matches a request is the one applied, and it may
combine several faults, which act in this order:

1. ``latency_ms``: answer after this delay (the request is still processed and recorded).
2. ``hang_rate`` + ``hang_s`` (+ ``hang_close``): hold the connection ``hang_s`` seconds, then answer 503, or
   close the connection without an answer when ``hang_close`` is true. Nothing is recorded.
3. ``force_status`` (+ ``body``): answer this status.
4. ``rate_limit_rps``: answer 429 beyond this many requests per second for the site (a token bucket whose
   burst is one second's worth).
5. ``error_rate`` + ``error_statuses``: answer one of these statuses (default 500 and 503) at this rate.
6. ``reject_batch_containing``: a body containing this substring is answered 400 as a whole.
7. ``reject_items_matching``: operations whose JSON contains this substring are refused one by one (207).
8. ``fail_batch_containing`` (+ ``fail_status``, default 500): a body containing this substring is answered 5xx
   (a server error that follows one event, however often the batch is retried), and nothing is accepted.

``retry_after`` adds a ``Retry-After`` header to every answer the rule makes up (3 to 5).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

#: Statuses picked from by ``error_rate`` when the rule names none.
DEFAULT_ERROR_STATUSES = (500, 503)

#: Seconds a hang lasts when the rule gives ``hang_rate`` without ``hang_s``.
DEFAULT_HANG_S = 30.0

#: Rule keys and the JSON types each accepts.
_KEY_TYPES: dict[str, tuple[type, ...]] = {
    "site_id": (str,),
    "path": (str,),
    "latency_ms": (int, float),
    "error_rate": (int, float),
    "error_statuses": (list,),
    "hang_rate": (int, float),
    "hang_s": (int, float),
    "hang_close": (bool,),
    "force_status": (int,),
    "body": (str, int, float, bool, list, dict),
    "retry_after": (str, int),
    "rate_limit_rps": (int, float),
    "reject_items_matching": (str,),
    "reject_batch_containing": (str,),
    "fail_batch_containing": (str,),
    "fail_status": (int,),
}


def rule_keys() -> tuple[str, ...]:
    """Every key a fault rule may have, in documentation order."""
    return tuple(_KEY_TYPES)


@dataclass(frozen=True, slots=True)
class FaultRule:
    """One fault rule; every field is optional and the default does nothing."""

    site_id: str | None = None
    path: str | None = None
    latency_ms: float = 0.0
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = DEFAULT_ERROR_STATUSES
    hang_rate: float = 0.0
    hang_s: float = DEFAULT_HANG_S
    hang_close: bool = False
    force_status: int | None = None
    body: Any = None
    retry_after: str | None = None
    rate_limit_rps: float | None = None
    reject_items_matching: str | None = None
    reject_batch_containing: str | None = None
    fail_batch_containing: str | None = None
    fail_status: int = 500

    def matches(self, site_id: str | None, path: str) -> bool:
        """Whether this rule's scope covers a request of ``site_id`` to ``path``."""
        return (self.site_id is None or self.site_id == site_id) and (self.path is None or self.path == path)

    def to_json(self) -> dict[str, Any]:
        """The rule as JSON-ready data, without the fields left at their defaults."""
        defaults = asdict(FaultRule())
        return {key: value for key, value in asdict(self).items() if value != defaults[key]}


def _check_types(data: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` for an unknown key or a value of the wrong JSON type."""
    for key, value in data.items():
        if key not in _KEY_TYPES:
            raise ValueError(f"unknown fault key {key!r}; known keys: {sorted(_KEY_TYPES)}")
        expected = _KEY_TYPES[key]
        if value is not None and (
            not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected)
        ):
            raise ValueError(f"fault key {key!r} has the wrong type: {type(value).__name__}")


def _check_ranges(rule: FaultRule) -> None:
    """Raise ``ValueError`` for a value outside its range."""
    for name in ("error_rate", "hang_rate"):
        if not 0.0 <= getattr(rule, name) <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1")
    for name in ("latency_ms", "hang_s"):
        if getattr(rule, name) < 0:
            raise ValueError(f"{name} must not be negative")
    forced = [rule.force_status] if rule.force_status is not None else []
    statuses = [*rule.error_statuses, rule.fail_status, *forced]
    if any(not isinstance(status, int) or not 100 <= status <= 599 for status in statuses):
        raise ValueError("statuses must be integers between 100 and 599")
    if not rule.error_statuses:
        raise ValueError("error_statuses must not be empty")
    if rule.rate_limit_rps is not None and rule.rate_limit_rps <= 0:
        raise ValueError("rate_limit_rps must be positive")


def rule_from_json(data: Any) -> FaultRule:
    """Build one rule from its JSON object.

    Args:
        data: the decoded JSON object of the rule.

    Returns:
        The rule.

    Raises:
        ValueError: the object has an unknown key, a value of the wrong type or out of range.
    """
    if not isinstance(data, Mapping):
        raise ValueError("a fault rule must be a JSON object")
    _check_types(data)
    values = {key: value for key, value in data.items() if value is not None}
    if "error_statuses" in values:
        values["error_statuses"] = tuple(values["error_statuses"])
    if "retry_after" in values:
        values["retry_after"] = str(values["retry_after"])
    for name in ("latency_ms", "error_rate", "hang_rate", "hang_s", "rate_limit_rps"):
        if name in values:
            values[name] = float(values[name])
    rule = FaultRule(**values)
    _check_ranges(rule)
    return rule


def rules_from_json(config: Any) -> tuple[FaultRule, ...]:
    """Build the rule list from a fault configuration.

    Args:
        config: a list of rule objects, one rule object, ``{"rules": [...]}``, or null (no faults).

    Returns:
        The rules, in order.

    Raises:
        ValueError: the configuration or one of its rules is invalid.
    """
    if config is None:
        return ()
    if isinstance(config, Mapping) and set(config) == {"rules"}:
        config = config["rules"]
    if isinstance(config, Mapping):
        config = [config]
    if not isinstance(config, list):
        raise ValueError("faults must be a list of rules or one rule object")
    return tuple(rule_from_json(item) for item in config)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a rule decides before the request is processed.

    Attributes:
        rule: the rule that applies (None: no rule matched).
        delay_s: seconds to wait before answering.
        hang_s: seconds to hold the connection (then ``status`` or a close), or None.
        close: close the connection without answering (after ``hang_s``).
        status: answer this status instead of processing the request, or None to process it.
        body: the body of that answer.
        headers: extra headers of that answer.
        fault: the name of the fault applied, for the request log ("" for none).
    """

    rule: FaultRule | None = None
    delay_s: float = 0.0
    hang_s: float | None = None
    close: bool = False
    status: int | None = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    fault: str = ""


def error_body(reason: str, message: str) -> bytes:
    """Customer.io's error body: ``{"errors": [{"reason": ..., "message": ...}]}``."""
    return orjson.dumps({"errors": [{"reason": reason, "message": message}]})


def _answer(rule: FaultRule, delay_s: float, status: int, fault: str, body: bytes | None = None) -> Verdict:
    """A verdict that answers ``status`` with the rule's ``Retry-After`` header, if any."""
    headers = {"Retry-After": rule.retry_after} if rule.retry_after is not None else {}
    if body is None:
        body = error_body(fault, f"fake Customer.io fault {fault}: {status}")
    return Verdict(rule, delay_s, None, False, status, body, headers, fault)


def _forced_body(rule: FaultRule) -> bytes | None:
    """The body of a ``force_status`` answer: a string as is, other JSON values encoded, None for the default."""
    if rule.body is None:
        return None
    return rule.body.encode() if isinstance(rule.body, str) else orjson.dumps(rule.body)


class RateLimiter:
    """Token buckets per (rule, site): ``rps`` tokens a second, a burst of ``max(1, rps)``; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """Start with no buckets.

        Args:
            clock: monotonic seconds (injected by tests).
        """
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[int, str | None], tuple[float, float]] = {}

    def allow(self, rule: FaultRule, site_id: str | None, rps: float) -> bool:
        """Take one token from the bucket of ``rule`` and ``site_id``; False when it is empty."""
        key = (id(rule), site_id)
        burst = max(1.0, rps)
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - last) * rps)
            allowed = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        return allowed

    def clear(self) -> None:
        """Forget every bucket."""
        with self._lock:
            self._buckets.clear()


class FaultBook:
    """The current fault rules of one server and their shared state (random source, rate buckets)."""

    def __init__(self, rules: tuple[FaultRule, ...] = (), seed: int | None = None) -> None:
        """Start with ``rules``.

        Args:
            rules: the initial rules.
            seed: seed of the random source deciding rates (None: unpredictable).
        """
        self._rules = rules
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()
        self.limiter = RateLimiter()

    @property
    def rules(self) -> tuple[FaultRule, ...]:
        """The rules in force."""
        return self._rules

    def replace(self, rules: tuple[FaultRule, ...]) -> None:
        """Put ``rules`` in force, with fresh rate buckets."""
        self._rules = rules
        self.limiter.clear()

    def rule_for(self, site_id: str | None, path: str) -> FaultRule | None:
        """The first rule whose scope covers the request, or None."""
        return next((rule for rule in self._rules if rule.matches(site_id, path)), None)

    def _draw(self) -> float:
        with self._random_lock:
            return self._random.random()

    def _pick(self, statuses: tuple[int, ...]) -> int:
        with self._random_lock:
            return self._random.choice(statuses)

    def decide(self, site_id: str | None, path: str) -> Verdict:
        """Decide what the matching rule (if any) does to this request, before its body is looked at."""
        rule = self.rule_for(site_id, path)
        if rule is None:
            return Verdict()
        delay_s = rule.latency_ms / 1000.0
        if rule.hang_rate and self._draw() < rule.hang_rate:
            verdict = _answer(rule, delay_s, 503, "hang")
            return Verdict(rule, delay_s, rule.hang_s, rule.hang_close, 503, verdict.body, verdict.headers, "hang")
        if rule.force_status is not None:
            return _answer(rule, delay_s, rule.force_status, "force_status", _forced_body(rule))
        if rule.rate_limit_rps is not None and not self.limiter.allow(rule, site_id, rule.rate_limit_rps):
            return _answer(rule, delay_s, 429, "rate_limit")
        if rule.error_rate and self._draw() < rule.error_rate:
            return _answer(rule, delay_s, self._pick(rule.error_statuses), "error_rate")
        return Verdict(rule, delay_s, fault="latency" if delay_s else "")
