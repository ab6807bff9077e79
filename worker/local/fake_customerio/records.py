"""What the fake accepted and every API request it answered: in memory, and optionally in a JSON Lines file."""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

#: Records kept in memory per list when no limit is given (older ones are dropped first; stats keep counting).
DEFAULT_MAX_RECORDS = 1_000_000


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One answered API request (never its credentials).

    Attributes:
        request_id: sequence number, from 1.
        time: when it arrived (unix seconds).
        site_id: the site id it claimed, or None.
        method: the HTTP method.
        path: the path, without the query.
        status: the status answered (0: the connection was closed without an answer).
        body_bytes: the size of the body.
        items: operations in the body (0 when it could not be read).
        accepted: operations accepted.
        duration_s: seconds from arrival to answer.
        authorization_ok: whether the credentials were accepted.
        fault: the fault that shaped the answer ("" for none).
    """

    request_id: int
    time: float
    site_id: str | None
    method: str
    path: str
    status: int
    body_bytes: int
    items: int
    accepted: int
    duration_s: float
    authorization_ok: bool
    fault: str


class Recorder:
    """Thread-safe store of accepted operations, request records and counters."""

    def __init__(self, record_path: Path | None = None, max_records: int | None = DEFAULT_MAX_RECORDS) -> None:
        """Open the record file (appending) when one is given.

        Args:
            record_path: the JSON Lines file accepted operations are appended to, or None.
            max_records: how many accepted operations and request records to keep in memory (None: all).
        """
        self._lock = threading.Lock()
        # Each accepted operation is kept encoded with its site id: a (str, bytes) pair, which the garbage collector
        # stops tracking. Kept as parsed dicts, a benchmark's hundreds of thousands of operations were millions of
        # objects that every full collection walked, and the stand-in stopped answering for up to a second each time.
        self._accepted: deque[tuple[str, bytes]] = deque(maxlen=max_records)
        self._requests: deque[RequestRecord] = deque(maxlen=max_records)
        self._by_status: Counter[str] = Counter()
        self._by_site: Counter[str] = Counter()
        self._next_id = 1
        self._in_flight = 0
        self._max_in_flight = 0
        self._file: BinaryIO | None = None
        if record_path is not None:
            record_path.parent.mkdir(parents=True, exist_ok=True)
            self._file = record_path.open("ab")

    def next_request_id(self) -> int:
        """Reserve the next request sequence number."""
        with self._lock:
            request_id = self._next_id
            self._next_id += 1
            return request_id

    def request_started(self) -> None:
        """Count an API request being answered now (``stats()`` keeps the most ever answered at once)."""
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def request_ended(self) -> None:
        """Count an API request answered (or abandoned)."""
        with self._lock:
            self._in_flight -= 1

    def add(self, request: RequestRecord, operations: list[Any]) -> None:
        """Store a request record and the operations it got accepted (with its site id and arrival time)."""
        site = request.site_id or ""
        records = [
            {"site_id": site, "received_at": request.time, "request_id": request.request_id, "operation": op}
            for op in operations
        ]
        encoded = [orjson.dumps(record) for record in records]
        with self._lock:
            self._requests.append(request)
            self._by_status[str(request.status or "closed")] += 1
            if records:
                self._accepted.extend((site, line) for line in encoded)
                self._by_site[site] += len(records)
                if self._file is not None:
                    self._file.write(b"".join(line + b"\n" for line in encoded))
                    self._file.flush()

    def accepted(self, site_id: str | None = None) -> list[dict[str, Any]]:
        """The accepted operations in arrival order, optionally only those of ``site_id``."""
        return [orjson.loads(line) for line in self._lines(site_id)]

    def accepted_json(self, site_id: str | None = None) -> bytes:
        """``accepted(site_id)`` as a JSON array, joined from the stored encodings without decoding them."""
        return b"[" + b",".join(self._lines(site_id)) + b"]"

    def _lines(self, site_id: str | None) -> list[bytes]:
        with self._lock:
            records = list(self._accepted)
        return [line for site, line in records if site_id is None or site == site_id]

    def requests(self) -> list[dict[str, Any]]:
        """The request records in arrival order."""
        with self._lock:
            records = list(self._requests)
        return [asdict(record) for record in records]

    def stats(self) -> dict[str, Any]:
        """Counts since the last reset: requests by status, accepted operations by site, totals, and the API requests
        being answered now (``in_flight``) and the most ever answered at once (``max_in_flight``)."""
        with self._lock:
            return {
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "requests": sum(self._by_status.values()),
                "requests_by_status": dict(self._by_status),
                "accepted": sum(self._by_site.values()),
                "accepted_by_site": dict(self._by_site),
            }

    def reset(self) -> None:
        """Forget every record and count (the record file is left as it is)."""
        with self._lock:
            self._accepted.clear()
            self._requests.clear()
            self._by_status.clear()
            self._by_site.clear()
            self._max_in_flight = self._in_flight

    def close(self) -> None:
        """Close the record file."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
