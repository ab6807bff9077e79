"""A real headless browser (Debian's chromium) loads a page that uses Segment's browser SDK (analytics-next, from
npm, unmodified) pointed at the intake: its calls cross CORS (a preflight: the SDK adds X-Retry-Count) as
text/plain with the body's writeKey, and land in Redis. Chromium comes from apt (``.ci/ensure-browser-and-node``),
the SDK from npm (``make node-clients``, part of ``make test``)."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import wait_for
from tests.integration.test_intake import KEY_A, intake_env
from tests.support.intake import free_port, running_intake, stored_events

pytestmark = pytest.mark.e2e

#: analytics-next's browser bundles, installed by ``make node-clients`` (npm ci in tests/e2e/node).
BUNDLES = Path(__file__).parent / "node" / "node_modules" / "@segment" / "analytics-next" / "dist" / "umd"

PAGE = """<!doctype html>
<html><head><title>loading</title><script src="/analytics-next/bundles/index.js"></script></head>
<body><script>
  // What Segment's CDN would answer for the source: apiKey is the write key the SDK puts in each body.
  const intake = { apiKey: "%(key)s", apiHost: "%(intake)s/v1", protocol: "http" };
  const analytics = AnalyticsNext.AnalyticsBrowser.load(
    { writeKey: "%(key)s", cdnURL: location.origin, cdnSettings: { integrations: { "Segment.io": intake } } },
    { integrations: { "Segment.io": intake } },
  );
  analytics.identify("browser-user", { email: "browser-user@example.com" });
  analytics.track("Clicked Buy", { button: "buy" });
  analytics.page("Docs", "Home");
</script></body></html>
"""


class Pages(http.server.SimpleHTTPRequestHandler):
    """The test page at ``/``, and the SDK's bundles where it loads them (``{cdnURL}/analytics-next/bundles/``)."""

    def __init__(self, *args, page: bytes, **kwargs) -> None:
        self.page = page
        super().__init__(*args, directory=str(BUNDLES), **kwargs)

    def do_GET(self) -> None:
        if self.path == "/":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(self.page)))
            self.end_headers()
            self.wfile.write(self.page)
            return
        self.path = self.path.removeprefix("/analytics-next/bundles")
        super().do_GET()

    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.terminate()
        process.wait(30)


def open_in_chromium(url: str, profile: Path, log: Path) -> subprocess.Popen[bytes]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed: apt-get install -y chromium"
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}"]
    with log.open("ab") as output:
        return subprocess.Popen([chromium, *flags, url], stdout=output, stderr=subprocess.STDOUT)


def test_a_browser_sdk_page_sends_through_the_intake(redis_url, redis_client, key_prefix, tmp_path, browser):
    assert (BUNDLES / "index.js").exists(), "run `make node-clients` (npm ci in tests/e2e/node)"
    page_port = free_port()
    env = intake_env(redis_url, key_prefix, tmp_path)
    # The workspaces file lists https://shop.example for wsa; this page's origin is added by the environment.
    env["CIO_WORKSPACES__WSA__CORS_ORIGINS"] = f'["http://127.0.0.1:{page_port}"]'
    with running_intake(env, tmp_path / "intake.log") as intake:
        page = PAGE % {"intake": intake.url.removeprefix("http://"), "key": KEY_A}
        server = http.server.ThreadingHTTPServer(("127.0.0.1", page_port), functools.partial(Pages, page=page.encode()))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            browser.append(open_in_chromium(f"http://127.0.0.1:{page_port}/", tmp_path / "profile", tmp_path / "b.log"))
            wait_for(lambda: len(stored_events(redis_client, key_prefix, "wsa")) >= 3, 90, "the browser's three calls")
        finally:
            server.shutdown()
            server.server_close()
    events = {event["type"]: event for event in stored_events(redis_client, key_prefix, "wsa")}
    assert set(events) == {"identify", "track", "page"}
    assert events["identify"]["userId"] == "browser-user"
    assert events["identify"]["traits"]["email"] == "browser-user@example.com"
    assert events["track"]["event"] == "Clicked Buy" and events["track"]["properties"] == {"button": "buy"}
    assert events["page"]["name"] == "Home" and events["page"]["properties"]["url"].startswith("http://127.0.0.1:")
    assert all("writeKey" not in event and event["receivedAt"] for event in events.values())
