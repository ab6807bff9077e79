"""The control endpoints under ``/_fake/`` (no authentication): records, stats, faults, credentials, reset."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson

from worker.local.fake_customerio.faults import error_body, rules_from_json
from worker.local.fake_customerio.state import FakeState


@dataclass(frozen=True, slots=True)
class Reply:
    """A control endpoint's answer."""

    status: int
    body: bytes


def _ok(value: Any) -> Reply:
    return Reply(200, orjson.dumps(value))


def _bad(message: str) -> Reply:
    return Reply(400, error_body("invalid", message))


def _accepted(state: FakeState, query: dict[str, list[str]], _body: bytes) -> Reply:
    site_id = query.get("site_id", [None])[0]
    return Reply(200, state.recorder.accepted_json(site_id))


def _requests(state: FakeState, _query: dict[str, list[str]], _body: bytes) -> Reply:
    return _ok(state.recorder.requests())


def _stats(state: FakeState, _query: dict[str, list[str]], _body: bytes) -> Reply:
    return _ok(state.recorder.stats())


def _health(state: FakeState, _query: dict[str, list[str]], _body: bytes) -> Reply:
    return _ok({"status": "ok", "validate": state.validator is not None})


def _get_faults(state: FakeState, _query: dict[str, list[str]], _body: bytes) -> Reply:
    return _ok([rule.to_json() for rule in state.faults.rules])


def _reset(state: FakeState, _query: dict[str, list[str]], _body: bytes) -> Reply:
    state.recorder.reset()
    state.faults.replace(())
    return _ok({})


def _put_faults(state: FakeState, _query: dict[str, list[str]], body: bytes) -> Reply:
    try:
        rules = rules_from_json(orjson.loads(body or b"null"))
    except (orjson.JSONDecodeError, ValueError) as exc:
        return _bad(str(exc))
    state.faults.replace(rules)
    return _ok([rule.to_json() for rule in rules])


def _put_credentials(state: FakeState, _query: dict[str, list[str]], body: bytes) -> Reply:
    try:
        pairs = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        return _bad(str(exc))
    valid = isinstance(pairs, dict) and all(isinstance(v, str) and k and v for k, v in pairs.items())
    if not valid:
        return _bad("credentials must be an object of non-empty site_id: api_key strings")
    state.credentials.replace(pairs)
    return _ok({"sites": state.credentials.sites()})


_Route = Callable[[FakeState, dict[str, list[str]], bytes], Reply]

#: (method, path) → handler.
ROUTES: dict[tuple[str, str], _Route] = {
    ("GET", "/_fake/accepted"): _accepted,
    ("GET", "/_fake/requests"): _requests,
    ("GET", "/_fake/stats"): _stats,
    ("GET", "/_fake/health"): _health,
    ("GET", "/_fake/faults"): _get_faults,
    ("PUT", "/_fake/faults"): _put_faults,
    ("PUT", "/_fake/credentials"): _put_credentials,
    ("POST", "/_fake/reset"): _reset,
}


def handle_control(state: FakeState, method: str, path: str, query: str, body: bytes) -> Reply:
    """Answer a control request.

    Args:
        state: the server's state.
        method: the HTTP method.
        path: the path, without the query.
        query: the raw query string.
        body: the request body.

    Returns:
        The answer: 404 for an unknown path, 405 for a known path with another method.
    """
    route = ROUTES.get((method, path))
    if route is not None:
        return route(state, parse_qs(query), body)
    if any(known == path for _, known in ROUTES):
        return Reply(405, error_body("method_not_allowed", f"{method} is not allowed on {path}"))
    return Reply(404, error_body("not_found", f"no control endpoint {path}"))
