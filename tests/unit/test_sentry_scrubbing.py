"""Sentry events leave the process without secrets, emails, Authorization values, payloads or task args."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from celery import Celery
from sentry_sdk.envelope import Envelope
from sentry_sdk.scope import should_send_default_pii
from sentry_sdk.transport import Transport

from worker.ops.logs import clear_secrets
from worker.ops.observability import FILTERED, init_sentry, scrub_event
from worker.settings import Settings

API_KEY = "sk_live_9d8c7b6a5f4e"
EMAIL = "jane.doe@example.com"
BASIC = "Basic c2l0ZS0xOnNrX2xpdmU="
DSN = "http://public@127.0.0.1:9/1"


class CapturingTransport(Transport):
    """Keeps envelopes in memory instead of sending them anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def events(self) -> list[dict[str, Any]]:
        return [dict(event) for e in self.envelopes if (event := e.get_event()) is not None]


@pytest.fixture(autouse=True)
def reset_sentry_and_secrets() -> Iterator[None]:
    """No Sentry client or registered secret outlives a test."""
    clear_secrets()
    yield
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)
    clear_secrets()


@pytest.fixture
def transport() -> CapturingTransport:
    settings = Settings(
        sentry_dsn=DSN,
        sentry_release="cio-fleet@1.2.3",
        sentry_environment="staging",
        workspaces={"acme": {"site_id": "site-1", "api_key": API_KEY}},
    )
    capturing = CapturingTransport()
    assert init_sentry(settings, ["another-secret-value"], transport=capturing)
    return capturing


def capture_failure(**tags: str) -> None:
    """Raise and capture an exception whose message, extras and contexts carry everything forbidden."""
    with sentry_sdk.isolation_scope() as scope:
        for key, value in tags.items():
            scope.set_tag(key, value)
        scope.set_extra("payload", {"userId": "u1", "traits": {"email": EMAIL}})
        scope.set_extra("note", f"key {API_KEY} of {EMAIL}")
        scope.set_extra("headers", {"Authorization": BASIC, "Accept": "application/json"})
        scope.set_context("delivery", {"workspace": "acme", "body": '{"type":"identify"}', "status": 500})
        scope.set_context("http", {"request": f"Authorization: {BASIC}", "secret": "another-secret-value"})
        try:
            raise RuntimeError(f"POST failed for {EMAIL} with key {API_KEY}; Authorization: {BASIC}")
        except RuntimeError:
            sentry_sdk.capture_exception()


def test_init_sentry_does_nothing_without_a_dsn() -> None:
    """No DSN, no client, and the caller learns it."""
    assert init_sentry(Settings(), []) is False
    assert not sentry_sdk.get_client().is_active()


def test_the_captured_event_holds_no_secret_email_authorization_or_payload(transport: CapturingTransport) -> None:
    """Everything forbidden is gone from the whole serialised event."""
    capture_failure()
    (event,) = transport.events()
    text = json.dumps(event)
    for forbidden in (API_KEY, EMAIL, BASIC, "c2l0ZS0xOnNrX2xpdmU=", "another-secret-value", '"type":"identify"'):
        assert forbidden not in text
    assert event["extra"]["payload"] == FILTERED
    assert event["contexts"]["delivery"]["body"] == FILTERED
    assert event["contexts"]["delivery"]["workspace"] == "acme"
    assert "RuntimeError" in text


def test_the_event_carries_release_and_environment(transport: CapturingTransport) -> None:
    """Release and environment come from the settings."""
    capture_failure()
    (event,) = transport.events()
    assert (event["release"], event["environment"]) == ("cio-fleet@1.2.3", "staging")


def test_permanent_failures_are_grouped_by_reason(transport: CapturingTransport) -> None:
    """The failure_reason tag becomes the fingerprint."""
    capture_failure(failure_reason="rejected_400")
    capture_failure()
    grouped, plain = transport.events()
    assert grouped["fingerprint"] == ["permanent-failure", "rejected_400"]
    assert "fingerprint" not in plain or plain["fingerprint"] != grouped["fingerprint"]


def test_celery_task_arguments_are_removed() -> None:
    """extra['celery-job'] keeps the task name, never its args or kwargs."""
    event: Any = {"extra": {"celery-job": {"task_name": "worker.drain", "args": ["acme", 3], "kwargs": {"x": EMAIL}}}}
    scrubbed: Any = scrub_event(event, {})
    assert scrubbed["extra"]["celery-job"] == {"task_name": "worker.drain", "args": FILTERED, "kwargs": FILTERED}


@pytest.mark.parametrize(
    ("event", "path", "expected"),
    [
        ({"request": {"headers": {"Authorization": BASIC}}}, ("request", "headers", "Authorization"), "[redacted]"),
        ({"request": {"data": {"userId": "u1"}}}, ("request", "data"), FILTERED),
        ({"contexts": {"job": {"inner": {"event": {"a": 1}}}}}, ("contexts", "job", "inner", "event"), FILTERED),
        ({"breadcrumbs": {"values": [{"message": EMAIL}]}}, ("breadcrumbs", "values", 0, "message"), "[email]"),
        ({"tags": [["failure_reason", "invalid_event"]]}, ("fingerprint",), ["permanent-failure", "invalid_event"]),
    ],
)
def test_scrub_event_table(event: dict[str, Any], path: tuple[Any, ...], expected: Any) -> None:
    """Headers, request bodies, nested payloads, breadcrumbs and tag pairs are handled."""
    node: Any = scrub_event(event, {})  # type: ignore[arg-type]
    for step in path:
        node = node[step]
    assert node == expected


def test_ordinary_text_is_left_alone() -> None:
    """Scrubbing keeps the facts that make an event useful."""
    event: Any = {"message": "drain of acme/3 failed with 503", "extra": {"partition": 3}}
    assert scrub_event(event, {}) == {"message": "drain of acme/3 failed with 503", "extra": {"partition": 3}}


def test_a_failing_celery_task_is_reported_without_its_arguments(transport: CapturingTransport) -> None:
    """The Celery integration reports the task; its args and kwargs never leave the process."""
    app = Celery("scrub-test", broker="memory://", set_as_current=False)

    @app.task(name="worker.drain")
    def drain(workspace: str, partition: int, *, note: str = "") -> None:
        raise RuntimeError("drain failed")

    result = drain.apply(args=("acme", 3), kwargs={"note": EMAIL})
    assert result.state == "FAILURE"
    (event,) = transport.events()
    assert event["extra"]["celery-job"] == {"task_name": "worker.drain", "args": FILTERED, "kwargs": FILTERED}
    assert EMAIL not in json.dumps(event)


def test_the_client_runs_without_personal_data_bodies_or_local_variables(transport: CapturingTransport) -> None:
    """The options that keep data in: no PII, no request bodies, no frame locals, the scrubber installed."""
    options = sentry_sdk.get_client().options
    assert not should_send_default_pii()
    assert options["max_request_body_size"] == "never"
    assert options["include_local_variables"] is False
    assert options["before_send"] is scrub_event


def test_dead_lettered_events_are_reported_grouped_by_a_bounded_reason(transport: CapturingTransport) -> None:
    from worker.ops.observability import report_permanent_failure

    # When two batches of one kind and one of another are dead-lettered
    report_permanent_failure("acme", "item_rejected", 207, 3)
    report_permanent_failure("acme", "item_rejected", 207, 1)
    report_permanent_failure("acme", "rejected", None, 2)
    sentry_sdk.flush()
    # Then Sentry gets one event each, fingerprinted by outcome and status only, with no payload
    events = transport.events()
    assert [event["fingerprint"] for event in events] == [
        ["permanent-failure", "item_rejected:207"],
        ["permanent-failure", "item_rejected:207"],
        ["permanent-failure", "rejected"],
    ]
    assert all(event["tags"]["workspace"] == "acme" for event in events)
    assert API_KEY not in json.dumps(events)
