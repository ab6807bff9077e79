"""Pure parts of the intake: write-key settings, auth, decoding bounds, batch merging and clock-skew correction."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import logging

import pytest

from producers._chunk import CHUNK_BYTES, CHUNK_EVENTS
from worker.intake.auth import KeyRing, basic_user, presented_key
from worker.intake.decoding import check_content_type, decode, gunzip, parse_object
from worker.intake.errors import HttpError
from worker.intake.limits import BATCH_BYTES, BATCH_EVENTS, EVENT_BYTES
from worker.intake.segment import Clock, events_of, stamp_received
from worker.settings import ConfigError, load_settings

RECEIVED = dt.datetime(2030, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def workspace_env(monkeypatch, name: str, keys: str) -> None:
    monkeypatch.setenv(f"CIO_WORKSPACES__{name}__SITE_ID", f"site-{name}")
    monkeypatch.setenv(f"CIO_WORKSPACES__{name}__API_KEY", f"api-key-{name}")
    monkeypatch.setenv(f"CIO_WORKSPACES__{name}__WRITE_KEYS", keys)


def test_write_keys_come_from_the_environment_as_a_json_list_and_are_secrets(monkeypatch):
    workspace_env(monkeypatch, "ACME", '["wk-acme-1", "wk-acme-2"]')

    settings = load_settings()

    assert settings.write_key_owners() == {"wk-acme-1": "acme", "wk-acme-2": "acme"}
    assert "wk-acme-1" not in repr(settings.workspaces["acme"])


def test_a_write_key_of_two_workspaces_is_a_config_error_naming_both_and_not_the_key(monkeypatch):
    workspace_env(monkeypatch, "ACME", '["wk-shared-key"]')
    workspace_env(monkeypatch, "BETA", '["wk-beta", "wk-shared-key"]')

    with pytest.raises(ConfigError) as caught:
        load_settings()

    assert "'acme'" in str(caught.value) and "'beta'" in str(caught.value)
    assert "wk-shared-key" not in str(caught.value)


def test_a_blank_write_key_is_a_config_error(monkeypatch):
    workspace_env(monkeypatch, "ACME", '["  "]')

    with pytest.raises(ConfigError, match="write_keys"):
        load_settings()


def test_one_request_always_fits_one_enqueue_script_call():
    stamps_per_event = 200  # messageId, timestamp, sentAt and receivedAt added by the intake and the producer
    assert BATCH_EVENTS <= CHUNK_EVENTS
    assert BATCH_BYTES + BATCH_EVENTS * stamps_per_event <= CHUNK_BYTES
    assert EVENT_BYTES == 32_000


def test_basic_auth_user_name_is_the_key_and_wins_over_the_body():
    header = "Basic " + base64.b64encode(b"wk-1:").decode()

    assert basic_user(header) == "wk-1"
    assert basic_user("Bearer abc") is None
    assert presented_key({"authorization": "Bearer pk_us_abc"}, {"writeKey": "wk-2"}) == "pk_us_abc"
    assert basic_user("Basic !!!") is None
    assert presented_key({"authorization": header}, {"writeKey": "wk-2"}) == "wk-1"
    assert presented_key({}, {"writeKey": "wk-2"}) == "wk-2"
    assert presented_key({}, {"writeKey": 7}) is None


def test_key_ring_answers_401_for_unknown_and_missing_keys():
    ring = KeyRing({"wk-1": "acme"})

    assert ring.workspace("wk-1") == "acme"
    for key in (None, "wk-2", ""):
        with pytest.raises(HttpError) as caught:
            ring.workspace(key)
        assert caught.value.status == 401


def test_a_gzip_bomb_is_refused_without_inflating_it():
    bomb = gzip.compress(b"{" + b" " * 50_000_000 + b"}")

    with pytest.raises(HttpError) as caught:
        gunzip(bomb, 500_000)

    assert caught.value.status == 413
    assert decode(gzip.compress(b"{}"), "gzip", 10) == b"{}"


@pytest.mark.parametrize(
    ("body", "encoding", "status"),
    [(b"not gzip", "gzip", 400), (gzip.compress(b"{}")[:-6], "gzip", 400), (b"{}", "br", 415)],
)
def test_bad_encodings_are_refused(body, encoding, status):
    with pytest.raises(HttpError) as caught:
        decode(body, encoding, 1000)
    assert caught.value.status == status


def test_content_types_and_json():
    check_content_type("text/plain;charset=UTF-8")
    check_content_type("application/json")
    with pytest.raises(HttpError) as caught:
        check_content_type("application/x-www-form-urlencoded")
    assert caught.value.status == 415
    for bad in (b"{", b"[1]", b'"x"'):
        with pytest.raises(HttpError):
            parse_object(bad)


def test_a_single_call_takes_its_type_from_the_endpoint_and_drops_the_write_key():
    [event] = events_of("t", {"type": "identify", "writeKey": "wk", "event": "E"}, RECEIVED)

    assert event["type"] == "track" and "writeKey" not in event
    assert event["receivedAt"] == "2030-01-01T12:00:00.000Z"


def test_skew_correction_as_segment_computes_it():
    event = {"timestamp": "2030-01-01T13:00:00+01:00", "sentAt": "2030-01-01T12:00:30Z"}

    stamp_received(event, None, Clock(RECEIVED))

    # The client's clock is 30 s ahead: the event happened 30 s before it was sent, 30 s before the intake got it.
    assert event["timestamp"] == "2030-01-01T11:59:30.000Z"
    assert event["originalTimestamp"] == "2030-01-01T13:00:00+01:00"


@pytest.mark.parametrize(
    "event",
    [
        {"timestamp": "2030-01-01T11:00:00Z"},  # no sentAt
        {"timestamp": 1893495600, "sentAt": "2030-01-01T12:00:00Z"},  # unix seconds: as given
        {"timestamp": "2030-01-01T11:00:00", "sentAt": "2030-01-01T12:00:00Z"},  # no zone
        {"timestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T00:00:00Z"},  # beyond the calendar
    ],
)
def test_times_that_cannot_be_corrected_are_kept(event):
    original = dict(event)

    stamp_received(event, None, Clock(RECEIVED))

    assert event["timestamp"] == original["timestamp"] and "originalTimestamp" not in event


def test_batch_merging_keeps_the_events_own_keys_and_passes_non_objects_through():
    body = {
        "batch": [{"type": "track", "context": {"a": 1}}, {"type": "track", "integrations": None}, 5],
        "context": {"a": 0, "b": 2},
        "integrations": {"X": True},
        "writeKey": "wk",
    }

    first, second, third = events_of("batch", body, RECEIVED)

    assert first["context"] == {"a": 1, "b": 2} and first["integrations"] == {"X": True}
    assert second["context"] == {"a": 0, "b": 2} and second["integrations"] == {"X": True}
    assert third == 5


@pytest.mark.parametrize("body", [{}, {"batch": {}}, {"batch": [], "context": []}])
def test_malformed_batches_are_400(body):
    with pytest.raises(HttpError) as caught:
        events_of("batch", body, RECEIVED)
    assert caught.value.status == 400


def test_building_the_app_registers_the_write_keys_as_secrets(monkeypatch):
    from worker.intake import build_app
    from worker.ops.logs import MASK, clear_secrets, redact

    workspace_env(monkeypatch, "ACME", '["wk-acme-secret-1"]')
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        build_app()
        assert redact("key wk-acme-secret-1 seen") == f"key {MASK} seen"
    finally:
        clear_secrets()
        root.handlers[:] = handlers
        root.setLevel(level)
