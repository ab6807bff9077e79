"""Start and drive the fake Customer.io from tests.

Two ways to run it:

* in-thread, cheap: ``FakeCustomerIO(...).start()`` (the ``fake_cio`` fixture);
* as a real ``cio-fleet fake-customerio`` subprocess, as the demo, e2e and chaos tests do:
  ``start_fake_cio_process(...)`` (the ``fake_cio_process`` fixture), driven over HTTP with ``FakeCioClient``.

To use the fixtures in a test module, list this module as a plugin: ``pytest_plugins = ["tests.support.fake_cio"]``
(in the root conftest.py).
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from worker.local.fake_customerio import FakeCustomerIO

#: The line the command prints once it listens.
_URL_LINE = re.compile(r"listening on (http://\S+)")


class FakeCioClient:
    """The control endpoints of a running fake (in-thread or subprocess), over HTTP."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    def health(self) -> dict[str, Any]:
        return cast("dict[str, Any]", self._json("GET", "/_fake/health"))

    def accepted(self, site_id: str | None = None) -> list[dict[str, Any]]:
        params = {"site_id": site_id} if site_id is not None else None
        return cast("list[dict[str, Any]]", self._json("GET", "/_fake/accepted", params=params))

    def requests(self) -> list[dict[str, Any]]:
        return cast("list[dict[str, Any]]", self._json("GET", "/_fake/requests"))

    def stats(self) -> dict[str, Any]:
        return cast("dict[str, Any]", self._json("GET", "/_fake/stats"))

    def set_faults(self, rules: Any) -> list[dict[str, Any]]:
        """Replace the fault rules (list of rule dicts, one rule dict, or None); returns them as applied."""
        return cast("list[dict[str, Any]]", self._json("PUT", "/_fake/faults", json=rules))

    def set_credentials(self, credentials: Mapping[str, str]) -> dict[str, Any]:
        return cast("dict[str, Any]", self._json("PUT", "/_fake/credentials", json=dict(credentials)))

    def reset(self) -> None:
        self._json("POST", "/_fake/reset")

    def wait_for_accepted(self, n: int, timeout: float = 10.0, site_id: str | None = None) -> list[dict[str, Any]]:
        """Poll until at least ``n`` operations are accepted (of ``site_id``, if given); return them all.

        Raises:
            TimeoutError: fewer than ``n`` arrived within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            count = stats["accepted"] if site_id is None else stats["accepted_by_site"].get(site_id, 0)
            if count >= n:
                return self.accepted(site_id)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} operations accepted after {timeout}s, expected {n}")
            time.sleep(0.02)


class FakeCioProcess:
    """A ``cio-fleet fake-customerio`` subprocess."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url
        self.client = FakeCioClient(url)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the process and wait for it; kill it if it does not exit in time. Returns its exit code."""
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> FakeCioProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def console_script() -> Path:
    """The ``cio-fleet`` console script installed next to the running interpreter."""
    return Path(sys.executable).parent / "cio-fleet"


def fake_cio_command(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    credentials: Mapping[str, str] | None = None,
    record: Path | str | None = None,
    validate: bool = True,
    latency_ms: float | None = None,
    error_rate: float | None = None,
) -> list[str]:
    """The command line of ``cio-fleet fake-customerio`` with these options."""
    command = [str(console_script()), "fake-customerio", "--host", host, "--port", str(port)]
    for site_id, api_key in (credentials or {}).items():
        command += ["--credentials", f"{site_id}:{api_key}"]
    if record is not None:
        command += ["--record", str(record)]
    if not validate:
        command.append("--no-validate")
    if latency_ms is not None:
        command += ["--latency-ms", str(latency_ms)]
    if error_rate is not None:
        command += ["--error-rate", str(error_rate)]
    return command


def _read_url(process: subprocess.Popen[str], timeout: float) -> str:
    """Wait for the process's "listening on URL" line."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if not selector.select(remaining):
                break
            line = process.stdout.readline()
            if not line:
                break
            match = _URL_LINE.search(line)
            if match:
                return match.group(1)
    process.kill()
    process.wait()
    raise RuntimeError(f"cio-fleet fake-customerio did not print its URL within {timeout}s")


def start_fake_cio_process(*, startup_timeout: float = 20.0, **options: Any) -> FakeCioProcess:
    """Start ``cio-fleet fake-customerio --port 0 ...`` and wait until it listens.

    Args:
        startup_timeout: seconds to wait for its URL line.
        **options: keyword arguments of ``fake_cio_command`` (credentials, record, validate, latency_ms, ...).

    Returns:
        The running process, with ``.url`` and ``.client``; call ``.stop()`` (or use it as a context manager).
    """
    env = {name: value for name, value in os.environ.items() if not name.startswith("CIO_")}
    env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(fake_cio_command(**options), stdout=subprocess.PIPE, stderr=None, text=True, env=env)
    return FakeCioProcess(process, _read_url(process, startup_timeout))


@pytest.fixture
def fake_cio() -> Iterator[FakeCustomerIO]:
    """An in-thread fake Customer.io accepting any credentials, stopped after the test."""
    with FakeCustomerIO().start() as fake:
        yield fake


@pytest.fixture
def fake_cio_process() -> Iterator[FakeCioProcess]:
    """A ``cio-fleet fake-customerio`` subprocess accepting any credentials, stopped after the test."""
    with start_fake_cio_process() as process:
        yield process
