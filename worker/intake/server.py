"""Serving the intake: the app built from the environment, and uvicorn with the timeouts a public endpoint needs.

Slow clients: uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, and the app answers 408
to a body that takes over ``BODY_TIMEOUT_S``; uvicorn has no bound on the time to send the headers, so
``GuardedH11Protocol`` closes a connection whose request headers are not complete within ``header_timeout_s``
(a slow-loris client). ``limit_concurrency`` answers 503 past that many open connections.
"""

from __future__ import annotations

import asyncio
import functools
import os
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from worker.intake.asgi import IntakeApp
from worker.intake.options import IntakeOptions
from worker.ops.logs import configure_logging, register_secrets, settings_secrets
from worker.settings import Settings, load_settings
from worker.store.slots import check_startup

#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE_S = 5
#: Open connections per process before uvicorn answers 503.
CONCURRENCY_LIMIT = 1_000


def build_app(settings: Settings | None = None) -> IntakeApp:
    """The intake app of ``settings`` (default: the environment's), logging set up and every secret registered.

    Raises:
        ConfigError: The configuration is invalid.
    """
    settings = settings or load_settings()
    check_startup(settings)
    configure_logging(settings.log_format, settings.log_level)
    register_secrets([*settings_secrets(settings), *settings.write_key_owners()])
    return IntakeApp(settings, body_timeout_s=IntakeOptions().body_timeout_s)


@functools.cache
def header_timeout_s() -> float:
    """This process's header timeout (``CIO_INTAKE_HEADER_TIMEOUT_S``, which ``serve`` sets for its processes)."""
    return IntakeOptions().header_timeout_s


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request headers take over ``header_timeout_s()``.

    The class is passed to uvicorn by reference (server processes import it), so the timeout is read from the
    environment in each process rather than stored on a class made at run time.
    """

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._between_requests() and self._header_timer is None:
            self._arm()  # the first bytes of the next request: its headers are now on the clock
        super().data_received(data)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        waiting_for = self.cycle
        self._header_timer = self.loop.call_later(header_timeout_s(), self._headers_late, waiting_for)

    def _headers_late(self, waiting_for: Any) -> None:
        self._header_timer = None
        if self.cycle is waiting_for and not self.transport.is_closing():  # no new request started since armed
            self.transport.close()


def serve(host: str, port: int, *, workers: int = 1, options: IntakeOptions | None = None) -> None:
    """Run the intake under uvicorn until stopped (several processes with ``workers`` > 1)."""
    options = options or IntakeOptions()
    # Read again by each server process (uvicorn's --workers start them afresh).
    os.environ["CIO_INTAKE_BODY_TIMEOUT_S"] = str(options.body_timeout_s)
    os.environ["CIO_INTAKE_HEADER_TIMEOUT_S"] = str(options.header_timeout_s)
    header_timeout_s.cache_clear()
    build_app()  # fail fast, with one clear ConfigError, before any process is started
    uvicorn.run(
        "worker.intake:app",
        host=host,
        port=port,
        workers=workers,
        http=GuardedH11Protocol,
        timeout_keep_alive=KEEP_ALIVE_S,
        limit_concurrency=CONCURRENCY_LIMIT,
        access_log=False,
        log_config=None,
        server_header=False,
    )
