"""Everything one running fake shares between its handler threads."""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field

from worker.local.fake_customerio.auth import Credentials
from worker.local.fake_customerio.faults import FaultBook
from worker.local.fake_customerio.records import Recorder
from worker.local.fake_customerio.schema import OperationValidator


@dataclass
class FakeState:
    """The shared state of one fake server.

    Attributes:
        credentials: the accepted site id / API key pairs.
        faults: the fault rules in force.
        recorder: accepted operations, request records and counts.
        validator: the schema validator, or None when validation is off.
        stopping: set when the server stops; waits (latency, hangs) end early.
        base_url: the server's own URL (for the region endpoint).
        connections: the open client connections (shut down when the server stops).
    """

    credentials: Credentials
    faults: FaultBook
    recorder: Recorder
    validator: OperationValidator | None
    stopping: threading.Event = field(default_factory=threading.Event)
    base_url: str = ""
    connections: set[socket.socket] = field(default_factory=set)
    connections_lock: threading.Lock = field(default_factory=threading.Lock)

    def close_connections(self) -> None:
        """Shut down every open client connection, so their handler threads end."""
        with self.connections_lock:
            open_connections = list(self.connections)
        for connection in open_connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
