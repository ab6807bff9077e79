"""JSON and text log lines, extras, and secrets masked before anything is written."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator

import pytest

from worker.ops.logs import (
    MASK,
    clear_secrets,
    configure_logging,
    redact,
    redact_value,
    register_secrets,
    settings_secrets,
)
from worker.settings import Settings

API_KEY = "sk_live_4f9a8b7c6d5e"
REDIS_PASSWORD = "r3dis-pa55word"
LOGGER = "worker.test_logs"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Each test starts without registered secrets and leaves the root logger as it found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    clear_secrets()
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    clear_secrets()


def json_lines(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    """Every line written to stderr, each parsed as one JSON object."""
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_each_record_is_one_json_object_with_the_standard_fields(capsys: pytest.CaptureFixture[str]) -> None:
    """ts, level, logger and message on every line."""
    configure_logging("json", "INFO")
    logging.getLogger(LOGGER).info("delivered %d events", 3)
    logging.getLogger(LOGGER).warning("second line")
    first, second = json_lines(capsys)
    assert first["level"] == "INFO"
    assert first["logger"] == LOGGER
    assert first["message"] == "delivered 3 events"
    assert first["ts"].endswith("Z")
    assert second["level"] == "WARNING"


def test_extras_become_fields_of_the_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    """workspace, partition, batch_size, status and duration_ms come through as typed fields."""
    configure_logging("json", "INFO")
    extra = {"workspace": "acme", "partition": 3, "batch_size": 200, "status": 200, "duration_ms": 12.5}
    logging.getLogger(LOGGER).info("batch posted", extra=extra)
    (line,) = json_lines(capsys)
    assert {key: line[key] for key in extra} == extra


def test_values_json_cannot_hold_are_written_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    """An odd extra never breaks the line."""
    configure_logging("json", "INFO")
    logging.getLogger(LOGGER).info("odd", extra={"where": {1, 2}.__class__})
    (line,) = json_lines(capsys)
    assert line["where"] == "<class 'set'>"


def test_an_exception_is_written_in_the_exc_field(capsys: pytest.CaptureFixture[str]) -> None:
    """The traceback stays inside the one JSON line."""
    configure_logging("json", "INFO")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger(LOGGER).exception("drain failed")
    (line,) = json_lines(capsys)
    assert "RuntimeError: boom" in line["exc"]


def test_records_below_the_level_are_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    """At WARNING, info lines are not written."""
    configure_logging("json", "warning")
    logging.getLogger(LOGGER).info("quiet")
    logging.getLogger(LOGGER).error("loud")
    assert [line["message"] for line in json_lines(capsys)] == ["loud"]


def test_configuring_twice_keeps_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    """A second call replaces the first handler instead of doubling every line."""
    configure_logging("text", "INFO")
    configure_logging("json", "INFO")
    logging.getLogger(LOGGER).info("once")
    assert len(json_lines(capsys)) == 1


def test_text_lines_are_readable_with_extras_as_key_value(capsys: pytest.CaptureFixture[str]) -> None:
    """Level, logger, message, then key=value pairs."""
    configure_logging("text", "DEBUG")
    logging.getLogger(LOGGER).debug("batch posted", extra={"workspace": "acme", "status": 200})
    line = capsys.readouterr().err.strip()
    assert f"DEBUG   {LOGGER}: batch posted workspace=acme status=200" in line


@pytest.mark.parametrize(("level", "fmt"), [("LOUD", "json"), ("INFO", "xml")])
def test_an_unknown_level_or_format_is_refused(level: str, fmt: str) -> None:
    """Configuration mistakes fail at start-up, not silently."""
    with pytest.raises(ValueError, match="unknown"):
        configure_logging(fmt, level)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("message", "args", "extra"),
    [
        (f"using key {API_KEY}", (), {}),
        ("using key %s", (API_KEY,), {}),
        ("connecting", (), {"url": f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0"}),
        ("posting", (), {"headers": {"Authorization": "Basic c2l0ZTprZXk=", "Accept": "json"}}),
        ("request headers: Authorization: Basic c2l0ZTprZXk=", (), {}),
        ("{'authorization': 'Bearer abcdefghijkl'}", (), {}),
    ],
)
@pytest.mark.parametrize("fmt", ["json", "text"])
def test_secrets_never_reach_the_output(
    capsys: pytest.CaptureFixture[str], fmt: str, message: str, args: tuple, extra: dict
) -> None:
    """API keys, passwords and Authorization values are masked in messages, arguments and extras."""
    register_secrets([API_KEY, REDIS_PASSWORD])
    configure_logging(fmt, "INFO")  # type: ignore[arg-type]
    logging.getLogger(LOGGER).info(message, *args, extra=extra)
    written = capsys.readouterr().err
    for secret in (API_KEY, REDIS_PASSWORD, "c2l0ZTprZXk=", "abcdefghijkl"):
        assert secret not in written
    assert MASK in written


def test_a_secret_in_an_exception_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    """Tracebacks go through the same redaction."""
    register_secrets([API_KEY])
    configure_logging("json", "INFO")
    try:
        raise ValueError(f"bad key {API_KEY}")
    except ValueError:
        logging.getLogger(LOGGER).exception("failed")
    written = capsys.readouterr().err
    assert API_KEY not in written
    assert "ValueError: bad key [redacted]" in json.loads(written)["exc"]


@pytest.mark.parametrize("value", ["", "us", "12345"])
def test_short_values_are_not_treated_as_secrets(value: str) -> None:
    """Masking 'us' or '1' everywhere would garble every line."""
    register_secrets([value])
    assert redact("region us, partition 12345") == "region us, partition 12345"


def test_the_longest_secret_is_masked_whole() -> None:
    """A secret containing another one leaves no tail behind."""
    register_secrets(["abcdef", "abcdef-ghijkl"])
    assert redact("x abcdef-ghijkl y") == f"x {MASK} y"


def test_redact_value_walks_nested_structures() -> None:
    """Lists, tuples and mappings are redacted; sensitive keys are masked whole."""
    register_secrets([API_KEY])
    value = {"a": [API_KEY, ("x", API_KEY)], "password": "short", "n": 3}
    assert redact_value(value) == {"a": [MASK, ("x", MASK)], "password": MASK, "n": 3}


def test_the_settings_secrets_include_keys_basic_auth_redis_password_and_dsn() -> None:
    """Everything secret in a configuration is collected for registration."""
    settings = Settings(
        redis_url=f"redis://user:{REDIS_PASSWORD}@127.0.0.1:6379/0",
        sentry_dsn="https://publickey1234@o1.ingest.sentry.io/42",
        workspaces={"acme": {"site_id": "site-1", "api_key": API_KEY}},
    )
    secrets = settings_secrets(settings)
    basic = base64.b64encode(f"site-1:{API_KEY}".encode()).decode()
    assert {API_KEY, basic, REDIS_PASSWORD, "publickey1234"} <= set(secrets)


def test_a_redis_url_without_password_holds_no_secret() -> None:
    """The default local URL is not masked."""
    assert settings_secrets(Settings(redis_url="redis://127.0.0.1:6379/0")) == []
