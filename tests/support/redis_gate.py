"""A TCP relay in front of Redis that holds a client at a chosen command: a deterministic freeze point for tests.

A worker process pointed at ``gate.url`` talks to Redis through the relay. ``hold_at(markers, on_hold)`` makes
the relay stop the first client→Redis chunk that contains one of ``markers`` (for example the SHA1 that ``EVALSHA`` of a
Lua script sends), call ``on_hold`` (for example ``os.kill(pid, SIGSTOP)``) and keep the chunk until
``release()``. The worker is then known to be blocked exactly before that command runs, and the command runs only
when released; ``replied`` is set once Redis's answer to it has been passed on. ``black_hole()`` makes Redis
unreachable without closing anything: every byte either way is dropped from then on, as on a partitioned network.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
from collections.abc import Callable
from urllib.parse import urlparse


def script_sha(script: str) -> bytes:
    """The SHA1 that redis-py sends with ``EVALSHA`` for a registered Lua script."""
    return hashlib.sha1(script.encode()).hexdigest().encode()


class RedisGate:
    """Relays every connection to ``upstream_url``; holds the first chunk carrying the armed marker."""

    def __init__(self, upstream_url: str) -> None:
        parsed = urlparse(upstream_url)
        self._upstream = (parsed.hostname or "127.0.0.1", parsed.port or 6379)
        self._database = parsed.path.lstrip("/") or "0"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._markers: tuple[bytes, ...] = ()
        self._on_hold: Callable[[], None] = lambda: None
        self._released = threading.Event()
        self._sockets: list[socket.socket] = []
        self._held: socket.socket | None = None
        self._holed = False
        #: Connections accepted so far.
        self.connections = 0
        self.caught = threading.Event()
        self.replied = threading.Event()
        threading.Thread(target=self._accept, name="redis-gate", daemon=True).start()

    @property
    def url(self) -> str:
        """The Redis URL clients use to go through the relay."""
        return f"redis://127.0.0.1:{self._listener.getsockname()[1]}/{self._database}"

    def hold_at(self, markers: tuple[bytes, ...], on_hold: Callable[[], None]) -> None:
        """Hold the next chunk a client sends that contains one of ``markers``; call ``on_hold`` first thing."""
        with self._lock:
            self._markers, self._on_hold = markers, on_hold
            self._released.clear()
            self.caught.clear()
            self.replied.clear()

    def release(self) -> None:
        """Forward the held chunk (and everything after it)."""
        self._released.set()

    def black_hole(self) -> None:
        """Drop every byte either way from now on, keeping the connections open (and accepting new ones)."""
        self._holed = True

    def close(self) -> None:
        """Stop relaying and close every connection."""
        self._released.set()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self._upstream)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if self._holed:
                    continue
                if from_client:
                    self._maybe_hold(source, chunk)
                target.sendall(chunk)
                if not from_client and target is self._held and self._released.is_set():
                    self.replied.set()
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _maybe_hold(self, client: socket.socket, chunk: bytes) -> None:
        with self._lock:
            hit = any(marker in chunk for marker in self._markers)
            if hit:
                self._markers, self._held = (), client
                self._on_hold()
                self.caught.set()
        if hit:
            self._released.wait()
