"""Classifying Customer.io's answers, and the HTTP client, over httpx.MockTransport (no network)."""

from __future__ import annotations

import base64

import httpx
import orjson
import pytest

from worker.delivery import (
    Accepted,
    BatchResponse,
    CustomerIOClient,
    PauseCredentials,
    Reject,
    Retry,
    SplitNeeded,
    classify,
    item_errors,
    parse_retry_after,
)
from worker.errors import Rejected, Throttled, TransportFailure, Unauthorized, UpstreamUnavailable
from worker.settings import HttpSettings, WorkspaceConfig


def response(status: int, body: object = b"{}", retry_after: float | None = None) -> BatchResponse:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return BatchResponse(status=status, body=raw, retry_after=retry_after, elapsed_s=0.01)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_accepts_every_item(status):
    assert classify(response(status), 3) == Accepted({})


def test_207_fails_only_the_listed_items():
    body = {"errors": [{"batch_index": 1, "reason": "invalid", "field": "identifiers", "message": "bad id"}]}
    answer = response(207, body)
    assert classify(answer, 3) == Accepted({1: "identifiers: bad id: invalid"}, answer.excerpt)
    assert "bad id" in answer.excerpt


@pytest.mark.parametrize(
    "errors",
    [[{"batch_index": 9, "reason": "x"}], [{"reason": "no index"}], [{"batch_index": "1"}], "nonsense"],
)
def test_207_entries_without_a_valid_index_are_ignored(errors):
    assert item_errors(orjson.dumps({"errors": errors}), 3) == {}


@pytest.mark.parametrize("status", [400, 413])
def test_whole_batch_refusals_ask_for_a_split(status):
    verdict = classify(response(status, {"errors": [{"reason": "malformed", "message": "bad batch"}]}), 4)
    assert verdict == SplitNeeded(status, f"HTTP {status}: bad batch")


def test_429_is_throttled_with_its_retry_after():
    verdict = classify(response(429, retry_after=7.0), 1)
    assert isinstance(verdict, Retry) and isinstance(verdict.error, Throttled)
    assert verdict.error.retry_after == 7.0


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504, 522])
def test_408_and_5xx_are_retryable(status):
    verdict = classify(response(status), 1)
    assert isinstance(verdict, Retry) and isinstance(verdict.error, UpstreamUnavailable)


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_unauthorized(status):
    verdict = classify(response(status), 1)
    assert isinstance(verdict, PauseCredentials) and isinstance(verdict.error, Unauthorized)


@pytest.mark.parametrize("status", [301, 404, 422])
def test_other_statuses_are_permanent(status):
    verdict = classify(response(status), 1)
    assert isinstance(verdict, Reject) and isinstance(verdict.error, Rejected)
    assert verdict.error.status == status


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, None), ("", None), ("3", 3.0), ("2.5", 2.5), ("-4", 0.0), ("soon", None), ("999999", 3600.0)],
)
def test_retry_after_delta_seconds(header, seconds):
    assert parse_retry_after(header) == seconds


def test_retry_after_http_date():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0


WORKSPACE = WorkspaceConfig(name="acme", site_id="site-1", api_key="key-1", track_url="http://cio.test")


def test_post_batch_sends_basic_auth_json_to_the_workspace_host():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={}, headers={"Retry-After": "2"})

    client = CustomerIOClient(HttpSettings(), transport=httpx.MockTransport(handler))
    result = client.post_batch(WORKSPACE, b'{"batch":[]}')
    assert (result.status, result.retry_after) == (200, 2.0)
    request = seen[0]
    assert str(request.url) == "http://cio.test/api/v2/batch"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"site-1:key-1").decode()
    assert request.headers["content-type"] == "application/json"
    assert request.content == b'{"batch":[]}'


def test_eu_region_goes_to_the_eu_host():
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={})

    workspace = WorkspaceConfig(name="eu", site_id="s", api_key="k", region="eu")
    CustomerIOClient(HttpSettings(), transport=httpx.MockTransport(handler)).post_batch(workspace, b"{}")
    assert seen == ["https://track-eu.customer.io/api/v2/batch"]


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
def test_transport_errors_become_transport_failures(error):
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    client = CustomerIOClient(HttpSettings(), transport=httpx.MockTransport(handler))
    with pytest.raises(TransportFailure) as caught:
        client.post_batch(WORKSPACE, b"{}")
    assert "key-1" not in str(caught.value)
