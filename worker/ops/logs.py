"""Logging for worker processes: JSON lines or readable text, with secrets masked on the way out.

``configure_logging("json", "INFO")`` installs one handler on the root logger. Each record becomes one JSON
object per line with ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, every field passed through
``extra={...}`` (``workspace``, ``partition``, ``batch_size``, ``status``, ``duration_ms`` ...) and ``exc``
when there is a traceback. ``"text"`` prints the same facts on one readable line.

Secrets: ``register_secrets`` records every configured secret value (API keys, the Redis and broker passwords,
the Sentry DSN); ``SecretFilter`` masks any of them, the value of any ``Authorization`` header or
``Basic``/``Bearer`` credential and the password of any URL, in the message, its arguments, the extras and the
traceback.
``redact`` is the same step for other outputs (dead-letter response excerpts, CLI errors, Sentry events).

Policy for callers: never log whole event payloads at info level or above - they carry personal data. Log
ids (``message_id``, stream entry ids), counts and statuses; a payload may go to debug only, truncated.

The worker runs Celery with ``worker_hijack_root_logger=False`` (or calls this from the ``setup_logging``
signal) so that Celery does not replace this handler.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from worker.settings import Settings

__all__ = [
    "MASK",
    "JsonFormatter",
    "SecretFilter",
    "TextFormatter",
    "clear_secrets",
    "configure_logging",
    "redact",
    "redact_value",
    "register_secrets",
    "settings_secrets",
]

#: What a masked secret looks like.
MASK: Final = "[redacted]"
#: Shorter values are not treated as secrets: masking "1" or "us" everywhere would garble every line.
MIN_SECRET_CHARS: Final = 6
#: Mapping keys whose values are always masked, whatever they hold.
SENSITIVE_KEYS: Final = frozenset({"authorization", "proxy-authorization", "api_key", "password", "x-api-key"})

_AUTH_HEADER = re.compile(r"(?i)(\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,;}]+")
_CREDENTIAL = re.compile(r"(?i)\b(basic|bearer)\s+[A-Za-z0-9+/=._~\-]{8,}")
#: The password of any URL (``amqp://user:password@host``, ``redis://:password@host``), registered or not.
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]*:)[^\s@/]+@")
#: LogRecord attributes that are not extras.
_RESERVED: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
#: Marks the handler ``configure_logging`` installed, so that calling it again replaces it.
_OURS: Final = "_cio_fleet_handler"

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register_secrets(values: Iterable[str]) -> None:
    """Remember secret values so that every later log line, and ``redact``, masks them.

    Args:
        values: Secret values; empty or very short ones (< ``MIN_SECRET_CHARS``) are ignored.
    """
    global _pattern
    with _lock:
        _secrets.update(v for v in values if isinstance(v, str) and len(v.strip()) >= MIN_SECRET_CHARS)
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None


def clear_secrets() -> None:
    """Forget every registered secret (tests, or a reload of the configuration)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def redact(text: str) -> str:
    """Mask registered secrets, ``Authorization`` header values and bearer/basic credentials in a text."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + MASK, text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    return _CREDENTIAL.sub(lambda m: f"{m.group(1)} {MASK}", text)


def redact_value(value: Any) -> Any:
    """``redact`` applied through strings, mappings, lists and tuples; sensitive keys are masked whole."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {
            k: MASK if str(k).lower() in SENSITIVE_KEYS else redact_value(v)  # header dicts, kwargs
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret value a configuration holds, for ``register_secrets``.

    Args:
        settings: The worker's or CLI's configuration.

    Returns:
        API keys and their Basic-auth encodings, the Redis and broker URLs' passwords, and the Sentry DSN and its key.
    """
    values: list[str] = []
    for workspace in settings.workspaces.values():
        api_key = workspace.api_key.get_secret_value()
        basic = base64.b64encode(f"{workspace.site_id}:{api_key}".encode()).decode("ascii")
        values += [api_key, basic]
    values += _url_secrets(settings.redis_url.get_secret_value())
    if settings.broker_url is not None:
        values += _url_secrets(settings.broker_url.get_secret_value())
    if settings.sentry_dsn is not None:
        values += _url_secrets(settings.sentry_dsn.get_secret_value())
    return values


def _url_secrets(url: str) -> list[str]:
    parsed = urllib.parse.urlsplit(url)
    found = [url] if parsed.password or parsed.username else []
    return found + [part for part in (parsed.password, parsed.username) if part]


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller passed with ``extra={...}``."""
    return {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}


class SecretFilter(logging.Filter):
    """Masks secrets in a record's message, extras and traceback before any formatter sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format must not lose the line; logging would report it anyway
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = redact(message), None
        for key, value in extras(record).items():
            setattr(record, key, redact_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _traceback(record: logging.LogRecord) -> str | None:
    text = record.exc_text
    if not text and record.exc_info:
        text = logging.Formatter().formatException(record.exc_info)
    if record.stack_info:
        text = f"{text}\n{record.stack_info}" if text else record.stack_info
    return text or None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, extras, and exc when there is a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """Serialise the record; values JSON cannot hold are written with ``str``."""
        document: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extras(record).items():
            document.setdefault(key, value)
        trace = _traceback(record)
        if trace:
            document["exc"] = trace
        return redact(json.dumps(document, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger: message key=value ...`` and the traceback on the following lines."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record on one line (plus its traceback, if any)."""
        fields = " ".join(f"{k}={v}" for k, v in extras(record).items())
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        line = f"{line} {fields}" if fields else line
        trace = _traceback(record)
        return redact(f"{line}\n{trace}" if trace else line)


def configure_logging(format: Literal["json", "text"], level: str) -> None:
    """Send the process's logs to stderr as JSON lines or text, secrets masked; safe to call again.

    Args:
        format: ``"json"`` for log shippers, ``"text"`` for people.
        level: A level name such as ``"INFO"`` (any case) or a number as text.

    Raises:
        ValueError: The level or the format is unknown.
    """
    resolved = logging.getLevelName(level.strip().upper()) if not level.strip().isdigit() else int(level)
    if not isinstance(resolved, int):
        raise ValueError(f"unknown log level {level!r}")
    formatters: dict[str, logging.Formatter] = {"json": JsonFormatter(), "text": TextFormatter()}
    if format not in formatters:
        raise ValueError(f"unknown log format {format!r} (use json or text)")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatters[format])
    handler.addFilter(SecretFilter())
    setattr(handler, _OURS, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(resolved)
