"""``FakeCustomerIO``: the stand-in server, run in a background thread or in the foreground (the CLI)."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Mapping
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

from worker.local.fake_customerio.auth import Credentials
from worker.local.fake_customerio.faults import FaultBook, rules_from_json
from worker.local.fake_customerio.handler import FakeHandler
from worker.local.fake_customerio.records import DEFAULT_MAX_RECORDS, Recorder
from worker.local.fake_customerio.schema import shared_validator
from worker.local.fake_customerio.state import FakeState

#: Seconds between the serving loop's checks for a stop request.
_POLL_INTERVAL_S = 0.05


class _Server(ThreadingHTTPServer):
    """A threading HTTP server whose handlers reach the fake's state as ``self.server.state``."""

    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: FakeState) -> None:
        self.state = state
        super().__init__(address, FakeHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that went away; report anything else as the base class does."""
        if self.state.stopping.is_set() or isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)


class FakeCustomerIO:
    """A local stand-in for Customer.io's Track API v2 (see ``worker.local.fake_customerio``).

    Use it as ``with FakeCustomerIO().start() as fake: ... fake.url ...``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: Mapping[str, str] | None = None,
        validate: bool = True,
        record_path: Path | str | None = None,
        *,
        faults: Any = None,
        seed: int | None = None,
        max_records: int | None = DEFAULT_MAX_RECORDS,
    ) -> None:
        """Configure the server; nothing listens until ``start()``.

        Args:
            host: the address to listen on.
            port: the port (0 picks a free one; read ``url`` after ``start()``).
            credentials: accepted ``site_id → api_key`` pairs (None or empty: any non-empty pair passes).
            validate: check each operation against Customer.io's schema.
            record_path: a JSON Lines file every accepted operation is appended to.
            faults: the initial fault configuration (see ``worker.local.fake_customerio.faults``).
            seed: seed of the random source of fault rates.
            max_records: accepted operations and request records kept in memory (None: all).

        Raises:
            ValueError: the fault configuration is invalid.
        """
        self._address = (host, port)
        self._state = FakeState(
            credentials=Credentials(credentials),
            faults=FaultBook(rules_from_json(faults), seed),
            recorder=Recorder(Path(record_path) if record_path is not None else None, max_records),
            validator=shared_validator() if validate else None,
        )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, such as ``http://127.0.0.1:8899`` (the server must be started)."""
        if self._server is None:
            raise RuntimeError("the fake Customer.io is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        """Listen and serve in a daemon thread.

        Returns:
            The server itself.
        """
        if self._server is not None:
            raise RuntimeError("the fake Customer.io is already started")
        self._server = _Server(self._address, self._state)
        self._state.base_url = self.url
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(_POLL_INTERVAL_S,), name="fake-customerio", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end pending waits and hangs, close open connections and the record file."""
        server, self._server = self._server, None
        if server is None:
            return
        self._state.stopping.set()
        server.shutdown()
        server.server_close()
        self._state.close_connections()
        if self._thread is not None:
            self._thread.join()
        self._state.recorder.close()

    def __enter__(self) -> Self:
        return self if self._server is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def accepted(self, site_id: str | None = None) -> list[dict[str, Any]]:
        """Accepted operations (``site_id``, ``received_at``, ``request_id``, ``operation``), oldest first."""
        return self._state.recorder.accepted(site_id)

    def requests(self) -> list[dict[str, Any]]:
        """Records of the API requests answered, oldest first."""
        return self._state.recorder.requests()

    def stats(self) -> dict[str, Any]:
        """Requests by status and accepted operations by site, since the last reset."""
        return self._state.recorder.stats()

    def set_faults(self, rules: Any) -> None:
        """Replace the fault rules (a list of rule dicts, one rule dict, or None for none).

        Raises:
            ValueError: the configuration is invalid.
        """
        self._state.faults.replace(rules_from_json(rules))

    def set_credentials(self, credentials: Mapping[str, str]) -> None:
        """Replace the accepted ``site_id → api_key`` pairs (empty: any non-empty pair passes)."""
        self._state.credentials.replace(credentials)

    def reset(self) -> None:
        """Forget records and counts, and clear the faults."""
        self._state.recorder.reset()
        self._state.faults.replace(())


def serve_forever(fake: FakeCustomerIO, on_ready: Callable[[str], None]) -> None:
    """Run ``fake`` in the foreground until SIGINT or SIGTERM.

    Args:
        fake: the server (not started).
        on_ready: called with the URL once the server listens.
    """
    stop = threading.Event()

    def _request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        fake.start()
        on_ready(fake.url)
        while not stop.wait(0.2):
            pass
    finally:
        fake.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
