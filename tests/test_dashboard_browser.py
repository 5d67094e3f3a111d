"""The dashboard served by `newswatch dashboard` and loaded in a real headless Chromium.

Chromium is driven over the Chrome DevTools Protocol (a websocket, with the `websockets` package
Streamlit already needs): navigate, wait until the page's own text shows the story, take a
screenshot, read the rendered text. Without Chromium the test is skipped, except in CI (CI=true),
where its absence is a failure. Set NEWSWATCH_SCREENSHOT_DIR to keep the screenshots there too.
"""

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import websockets
from prefect.testing.utilities import prefect_test_harness

from flows.ingest import ingest_fixtures
from flows.pipeline import get_embedder
from flows.settings import Settings
from tests.conftest import SEEDS
from warehouse.connection import open_warehouse
from warehouse.feeds import FeedOutcome, FetchFailure, add_feed, feed_id_for, record_fetch_failures, record_feed_outcomes
from warehouse.queries import list_stories
from warehouse.runs import RunRecord, record_run

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1400,1000",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
]
STARTUP_SECONDS = 60
RENDER_SECONDS = 30


def chromium_path() -> str | None:
    """Debian's `chromium` (or another Chromium/Chrome) on PATH."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_group(process: subprocess.Popen) -> None:
    """Stop a process started in its own session, with all its children."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_until(check, seconds: float, what: str):
    """Poll `check` until it returns something true; fail the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out after {seconds:g} s waiting for {what}")


@contextmanager
def dashboard(db: Path, log: Path, while_starting=lambda: None):
    """`newswatch dashboard --db DB --port P` running until the block ends; yields its base URL.

    `while_starting` runs while the server starts (e.g. building the database meanwhile).
    """
    port = free_port()
    script = Path(sys.executable).parent / "newswatch"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "flows.cli"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            # From the database's folder, so the page shows its plain file name.
            [*command, "dashboard", "--db", db.name, "--port", str(port)],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True, cwd=db.parent,
        )
    base_url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            pytest.fail(f"the dashboard exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        while_starting()
        wait_until(healthy, STARTUP_SECONDS, "the dashboard to answer")
        yield base_url
    finally:
        stop_group(process)


class Browser:
    """One headless Chromium page, driven over the DevTools Protocol."""

    def __init__(self, connection):
        self._connection = connection
        self._next_id = 0

    async def call(self, method: str, **params) -> dict:
        """Send a command and return its result (events in between are dropped)."""
        self._next_id += 1
        message_id = self._next_id
        await self._connection.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self._connection.recv())
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    async def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def open(self, url: str, *expected: str, seconds: float = RENDER_SECONDS) -> str:
        """Load a URL, wait until it has rendered and shows every expected string; return its text.

        Rendered means: the script has finished, no placeholder is left (charts load lazily) and
        the text stayed the same over two polls. The text is what a reader sees (innerText) plus
        the data grids' cell text, which Streamlit draws on a canvas and mirrors in an
        accessible table.
        """
        await self.call("Page.navigate", url=url)
        deadline = time.monotonic() + seconds
        text = previous = ""
        while time.monotonic() < deadline:
            text = await self.evaluate(
                "document.body.innerText + '\\n' + Array.from(document.querySelectorAll('[role=gridcell], td'))"
                ".map(cell => cell.textContent).join('\\n')"
            ) or ""
            busy = await self.evaluate(
                "!!document.querySelector('[data-testid=stStatusWidget], [data-testid=stSkeleton]')"
                " || Array.from(document.querySelectorAll('[data-testid=stVegaLiteChart]'))"
                ".some(chart => !chart.querySelector('canvas, svg'))"
            )
            if not busy and text == previous and all(part in text for part in expected):
                return text
            previous = text
            await asyncio.sleep(0.3)
        missing = [part for part in expected if part not in text]
        pytest.fail(f"{url} did not finish showing {missing} within {seconds:g} s; it showed:\n{text[:3000]}")

    async def resize(self, width: int, height: int) -> None:
        """Set the viewport size (before loading a page, so it lays out for it)."""
        await self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    async def screenshot(self, path: Path) -> Path:
        """Save what the viewport shows as a PNG."""
        shot = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


@contextmanager
def chromium(executable: str, profile: Path, log: Path):
    """A headless Chromium with a fresh profile; yields its DevTools websocket URL for one page."""
    port_file = profile / "DevToolsActivePort"
    port_file.unlink(missing_ok=True)
    with log.open("wb") as output:
        process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        lines = wait_until(
            lambda: port_file.exists() and len(port_file.read_text().splitlines()) >= 2 and port_file.read_text().splitlines(),
            STARTUP_SECONDS, "Chromium's DevTools port",
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{lines[0]}/json/list", timeout=5) as response:
            targets = json.loads(response.read())
        yield next(target["webSocketDebuggerUrl"] for target in targets if target["type"] == "page")
    finally:
        stop_group(process)


def add_feed_history(db: Path) -> None:
    """Three feeds (healthy, silent, failing), a fetch failure and two runs, through the warehouse's writers."""
    now = datetime.now(UTC)
    feeds = {
        "https://news.example.org/rss.xml": ("Example News", 200, None, 4),
        "https://quiet.example.net/feed.atom": ("Quiet Gazette", 304, None, 0),
        "https://broken.example.com/feed.xml": (None, 500, "HTTP 500 Internal Server Error", 0),
    }
    with open_warehouse(db) as connection:
        for url, (name, *_) in feeds.items():
            add_feed(connection, url, name, now - timedelta(days=10))
        record_feed_outcomes(connection, [
            FeedOutcome(feed_id_for(url), now - timedelta(minutes=5), status, error, None, None, now + timedelta(minutes=10), new)
            for url, (_, status, error, new) in feeds.items()
        ])
        broken = "https://broken.example.com/feed.xml"
        record_fetch_failures(connection, [FetchFailure(broken, feed_id_for(broken), 500, feeds[broken][2], now)])
        record_run(connection, RunRecord(
            "run-2", "ingest-feeds", now - timedelta(minutes=6), now - timedelta(minutes=5), "completed",
            feeds_polled=3, not_modified=1, new_articles=0, errors=1,
        ))
        record_run(connection, RunRecord(
            "run-1", "ingest-fixtures", now - timedelta(hours=2), now - timedelta(hours=2) + timedelta(seconds=42),
            "completed", new_articles=3, duplicates=1, new_stories=1,
        ))


@pytest.fixture(scope="module")
def chromium_executable() -> str:
    """Chromium's path; skipped without it, except in CI, where CI=true makes its absence a failure."""
    executable = chromium_path()
    if executable is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is not installed: CI must install Debian's `chromium` for this test")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return executable


@pytest.fixture(scope="module")
def served(chromium_executable, tmp_path_factory) -> tuple[Path, str]:
    """The dashboard serving the seeds (ingested by the real flow) plus feed health and run history.

    The server starts first and the database is built while it starts: both take seconds.
    """
    folder = tmp_path_factory.mktemp("browser")
    db = folder / "newswatch.duckdb"

    def build() -> None:
        # The model loads while Prefect's temporary server starts: both take seconds.
        threading.Thread(target=get_embedder(Settings()).load, daemon=True).start()
        with prefect_test_harness(server_startup_timeout=120):
            ingest_fixtures(SEEDS, db, Settings())
        add_feed_history(db)

    with dashboard(db, folder / "dashboard.log", while_starting=build) as base_url:
        yield db, base_url


def test_every_page_renders_in_chromium(served, chromium_executable, tmp_path):
    seeded_database, base_url = served
    with open_warehouse(seeded_database, read_only=True) as connection:
        (story,) = list_stories(connection)
    headline = story["headline"]

    async def visit(devtools_url: str) -> dict[str, str]:
        async with websockets.connect(devtools_url, max_size=64 * 1024 * 1024) as connection:
            browser = Browser(connection)
            await browser.call("Page.enable")
            # URL, what must show, and a viewport height that fits the page for the screenshot.
            pages = {
                "stories": (f"{base_url}/", ["Stories", "data as of", headline, "fixtures"], 620),
                "story": (
                    f"{base_url}/story?story={story['story_id']}",
                    [headline, "rewrite duplicate of:", "Duplicates side by side", "Original:", "Duplicate:",
                     "words in common"],
                    1700,
                ),
                "feeds": (
                    f"{base_url}/feeds",
                    ["Feeds", "Silent feeds: Quiet Gazette", "Failing feeds:", "New articles per feed", "HTTP 500"],
                    1250,
                ),
                "search": (f"{base_url}/search?q=%22Walter%20Bloomberg%22", ["Search", "1 article in 1 story", headline], 720),
                "runs": (f"{base_url}/runs", ["Runs", "ingest-feeds", "ingest-fixtures", "completed"], 560),
            }
            texts = {}
            for name, (url, expected, height) in pages.items():
                await browser.resize(1400, height)
                texts[name] = await browser.open(url, *expected)
                await browser.screenshot(tmp_path / f"dashboard-{name}.png")
            return texts

    with chromium(chromium_executable, tmp_path / "profile", tmp_path / "chromium.log") as devtools_url:
        texts = asyncio.run(visit(devtools_url))

    for name, text in texts.items():
        assert "Traceback" not in text and "data as of" in text, name
    # The duplicate's text is shown beside the original's, each with the other's title nearby.
    assert texts["story"].index("Original:") < texts["story"].index("Duplicate:")
    assert "Elon Musk has refused to visit the Gaza Strip" in texts["search"]
    for name in texts:
        shot = tmp_path / f"dashboard-{name}.png"
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    if keep := os.environ.get("NEWSWATCH_SCREENSHOT_DIR"):
        for name in texts:
            shutil.copy(tmp_path / f"dashboard-{name}.png", Path(keep) / f"dashboard-{name}.png")
