"""Celery's own terminal output (the start-up banner, shutdown notices) in the log format of the worker.

Celery prints these directly, outside logging. With JSON logs every line on the worker's output must be a JSON
object, so they are turned into log-shaped JSON lines; shutdown notices are written with one ``os.write`` because
Celery emits them from a signal handler, where taking the logging lock could deadlock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Any

import celery.apps.worker as celery_worker
import orjson

#: Third-party loggers that log every request or task at INFO; quiet unless the level is DEBUG.
CHATTY_LOGGERS = ("httpx", "httpcore", "celery.worker.strategy", "celery.app.trace")


def _json_line(level: str, logger: str, message: str) -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
    record = {"ts": stamp, "level": level, "logger": logger, "message": message}
    return orjson.dumps(record) + b"\n"


def _say_json(message: str, stream: Any = sys.__stderr__) -> None:
    with contextlib.suppress(OSError, AttributeError, ValueError):
        os.write(stream.fileno(), _json_line("WARNING", "celery.apps.worker", message.strip()))


def _banner_as_log(self: Any) -> None:
    logging.getLogger("celery.apps.worker").info(
        "worker starting", extra={"hostname": getattr(self, "hostname", ""), "concurrency": self.concurrency}
    )


def install(log_format: str, level: str) -> None:
    """Match Celery's direct output and chatty loggers to the configured logs."""
    logging.captureWarnings(True)
    if level.strip().upper() != "DEBUG":
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    if log_format == "json":
        celery_worker.safe_say = _say_json
        celery_worker.Worker.emit_banner = _banner_as_log
