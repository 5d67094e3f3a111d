"""The dashboard served by `newswatch dashboard` and loaded in a real headless Chromium.

Chromium is driven over the Chrome DevTools Protocol (a websocket, with the `websockets` package
Streamlit already needs): navigate, wait until the page's own text shows the story, take a
screenshot, read the rendered text. Without Chromium the tests are skipped, except in CI (CI=true),
where its absence is a failure. Set NEWSWATCH_SCREENSHOT_DIR to keep the screenshots there too.

The database also holds a watch whose alert could not be delivered (its notification URL carries
a secret the page must never show), and a story, a feed, a run and a watch whose strings are
Markdown and HTML pointing at a local HTTP server: the browser must show them as text and never
ask that server for anything.
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

from flows.alerts import record_alerts
from flows.ingest import ingest_fixtures
from flows.embedding import get_embedder
from flows.search import sync_search_index
from flows.settings import Settings
from tests.seed_site import SEEDS
from tests.http_server import LocalServer, make_server_fixture, static
from warehouse.connection import open_warehouse
from warehouse.feeds import FeedOutcome, FetchFailure, add_feed, feed_id_for, record_fetch_failures, record_feed_outcomes
from warehouse.queries import list_stories
from warehouse.runs import RunRecord, record_run
from warehouse.sql import execute, transaction
from warehouse.watches import ArticleMatch, add_watch

pytestmark = pytest.mark.slow  # drives the dashboard in a browser

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1400,1000",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
]
STARTUP_SECONDS = 60
RENDER_SECONDS = 30
# A 1×1 PNG: what a tracking pixel would be.
PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
HOSTILE_STORY = "hostile-story"
# In the watches' notification URLs: shown masked, never as they are.
NOTIFY_SECRET = "browser-s3cret-Zq8xKp3m"
SEEDS_NOTIFY_URL = f"json://newswatch:{NOTIFY_SECRET}@127.0.0.1:9/hook"
SEEDS_NOTIFY_MASKED = "json://newswatch:****@127.0.0.1:9/hook"
# Streamlit keeps bare URLs, shortcodes, arrows and dashes as text by a word joiner inside them
# (dashboards/plain_text.py); it is invisible, so the text a reader sees is read without it.
WORD_JOINER = "\u2060"

http_server = make_server_fixture({"/*": static(PIXEL_PNG, "image/png")}, scope="module")


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
        accessible table, without invisible word joiners.
        """
        await self.call("Page.navigate", url=url)
        deadline = time.monotonic() + seconds
        text = previous = ""
        while time.monotonic() < deadline:
            text = await self.evaluate(
                "document.body.innerText + '\\n' + Array.from(document.querySelectorAll('[role=gridcell], td'))"
                ".map(cell => cell.textContent).join('\\n')"
            ) or ""
            text = text.replace(WORD_JOINER, "")
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


def add_feed_health_and_runs(db: Path) -> None:
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


def hostile_text(server: str, name: str) -> str:
    """Markdown and HTML that would load an image from the server, link to it and style itself."""
    return (
        f"{name} Quokkagate ![x]({server}/{name}.png) [click]({server}/attack) :red[red] $x^2$ <b>bold</b> "
        "https://example.org/bare www.example.net press@example.com :material/home: -> --"
    )


def add_seeds_watch(db: Path) -> None:
    """A watch on the seeds, added before they are ingested: the run alerts it and fails to deliver (private address)."""
    with open_warehouse(db) as connection, transaction(connection):
        add_watch(
            connection, "seeds-watch", query="musk", like_text=None, like_vector=None, like_model=None,
            min_articles=1, min_sources=1, notify_urls=[SEEDS_NOTIFY_URL], now=datetime.now(UTC),
        )


def add_hostile_rows(db: Path, server: str) -> None:
    """A story of an article and its duplicate, a failing feed, a run and a watch that alerted it, every string hostile."""
    now = datetime.now(UTC)
    feed_url = "https://hostile.invalid/feed.xml"
    feed_id = feed_id_for(feed_url)
    with open_warehouse(db) as connection:
        add_feed(connection, feed_url, hostile_text(server, "feed"), now - timedelta(days=10))
        error = hostile_text(server, "error")
        record_feed_outcomes(connection, [
            FeedOutcome(feed_id, now - timedelta(minutes=5), 500, error, None, None, now + timedelta(minutes=10), 0)
        ])
        record_fetch_failures(connection, [FetchFailure(feed_url, feed_id, 500, error, now)])
        for article_id, url, hour, duplicate_of in (
            ("hostile-1", "javascript:alert(document.domain)//", 6, None),
            ("hostile-2", "https://hostile.invalid/2", 7, "hostile-1"),
        ):
            text = f"{hostile_text(server, 'text')} <img src=\"{server}/{article_id}.png\"> {article_id}"
            execute(
                connection,
                "INSERT INTO articles (article_id, url, canonical_url, title, published_at, ingested_at, text,"
                " text_hash, language, site_name, source, duplicate_of, duplicate_kind, duplicate_similarity,"
                " story_id, feed_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'en', ?, 'feed', ?, ?, ?, ?, ?)",
                [
                    article_id, url, url, hostile_text(server, "title"), datetime(2023, 11, 29, hour, tzinfo=UTC),
                    now, text, f"hash-{article_id}", hostile_text(server, "site"), duplicate_of,
                    "copy" if duplicate_of else None, 0.9 if duplicate_of else None, HOSTILE_STORY, feed_id,
                ],
            )
        # Started last (after the seeds' run), so the page's "latest" caption names it.
        record_run(connection, RunRecord(
            hostile_text(server, "run"), "ingest-feeds", now, now, "completed", feeds_polled=1, errors=1,
            message=hostile_text(server, "message"),
        ))
        with transaction(connection):
            watch_id = add_watch(
                connection, hostile_text(server, "watch"), query="quokkagate", like_text=None, like_vector=None,
                like_model=None, min_articles=1, min_sources=1,
                notify_urls=[f"json://user:{NOTIFY_SECRET}@hostile.invalid/hook"], now=now,
            )
            # As a run would have decided it: the hostile story's alert, its delivery pending.
            record_alerts(connection, [ArticleMatch(watch_id, "hostile-1", HOSTILE_STORY)], [HOSTILE_STORY], now, 2.0)


@pytest.fixture(scope="module")
def served(chromium_executable, http_server, tmp_path_factory) -> tuple[Path, str]:
    """The dashboard serving the seeds (ingested by the real flow, which alerts a watch) plus feed health and runs.

    It also serves a hostile story, feed, run and watch (`add_hostile_rows`) pointing at `http_server`.

    The server starts first and the database is built while it starts: both take seconds.
    """
    folder = tmp_path_factory.mktemp("browser")
    db = folder / "newswatch.duckdb"

    def build() -> None:
        # The model loads while Prefect's temporary server starts: both take seconds.
        threading.Thread(target=get_embedder(Settings()).load, daemon=True).start()
        add_seeds_watch(db)
        if os.environ.get("PREFECT_API_URL"):  # the test process's shared server (conftest)
            ingest_fixtures(SEEDS, db, Settings())
        else:
            with prefect_test_harness(server_startup_timeout=120):
                ingest_fixtures(SEEDS, db, Settings())
        add_feed_health_and_runs(db)
        add_hostile_rows(db, http_server.base_url)
        sync_search_index(db, Settings())  # the next run's job: the hostile rows were written directly

    with dashboard(db, folder / "dashboard.log", while_starting=build) as base_url:
        yield db, base_url


def test_every_page_renders_in_chromium(served, chromium_executable, tmp_path):
    seeded_database, base_url = served
    with open_warehouse(seeded_database, read_only=True) as connection:
        (story,) = [story for story in list_stories(connection) if story["story_id"] != HOSTILE_STORY]
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
                "watches": (
                    f"{base_url}/watches",
                    ["Watches", "seeds-watch", "query: musk", SEEDS_NOTIFY_MASKED, "Recent alerts", headline,
                     "watch seeds-watch", "pending", "next attempt"],
                    1000,
                ),
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
    assert "1 delivery failed and will be retried by a later run." in texts["watches"]
    assert not [name for name, text in texts.items() if NOTIFY_SECRET in text]
    for name in texts:
        shot = tmp_path / f"dashboard-{name}.png"
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    if keep := os.environ.get("NEWSWATCH_SCREENSHOT_DIR"):
        for name in texts:
            shutil.copy(tmp_path / f"dashboard-{name}.png", Path(keep) / f"dashboard-{name}.png")


# What of a hostile string Streamlit would have turned into markup, found in the rendered page
# (TEST_SERVER: the local server's host and port).
MARKUP_FOUND = """(() => {
    const own = value => value.includes('TEST_SERVER');
    const exact = (selector, text) => Array.from(document.querySelectorAll(selector))
        .filter(element => element.textContent.trim() === text).length;
    return {
        images: Array.from(document.querySelectorAll('img, image, source, video, audio, iframe, object, embed'))
            .map(element => ['src', 'href', 'data'].map(name => element.getAttribute(name) || '').join(' '))
            .filter(own),
        links: Array.from(document.querySelectorAll('a[href]')).map(link => link.href)
            .filter(href => own(href) || /example[.](org|net|com)|^mailto:|^javascript:/i.test(href)),
        math: document.querySelectorAll('.katex, math').length,
        bold: exact('b, strong', 'bold'),
        red: exact('span[class*=Colored], span[style*=color]', 'red'),
        icons: exact('[role=img]', 'home'),
    };
})()"""


def test_hostile_text_shows_as_plain_text_in_chromium(served, chromium_executable, http_server: LocalServer, tmp_path):
    _, base_url = served
    server = http_server.base_url
    title, site = hostile_text(server, "title"), hostile_text(server, "site")
    # URL, what shows once the page has rendered (with what its tables show, as their cells fill in
    # last), and the hostile strings it must show as they are.
    pages = {
        "story": (
            f"{base_url}/story?story={HOSTILE_STORY}",
            ["Duplicates side by side", "Original:", "Duplicate:", "2023-11-29 07:00"],
            [title, site, hostile_text(server, "text")],
        ),
        "stories": (f"{base_url}/", ["Stories", "2 stories", "fixtures", title, site], [title, site]),
        "search": (f"{base_url}/search?q=quokkagate", ["2 articles in 1 story"], [title, site]),
        "watches": (
            f"{base_url}/watches",
            ["Recent alerts", "seeds-watch", "json://user:****@hostile.invalid/hook", hostile_text(server, "watch"), title],
            [hostile_text(server, "watch"), title],
        ),
        "feeds": (
            f"{base_url}/feeds",
            ["Failing feeds:", "Latest fetch failures", "Quiet Gazette", "HTTP 500 Internal", hostile_text(server, "error")],
            [hostile_text(server, "feed"), hostile_text(server, "error")],
        ),
        "runs": (
            f"{base_url}/runs", ["Runs", "data as of", "ingest-fixtures", "0:42", hostile_text(server, "message")],
            [hostile_text(server, "run"), hostile_text(server, "message")],
        ),
    }

    async def visit(devtools_url: str) -> dict[str, tuple[str, str, dict]]:
        async with websockets.connect(devtools_url, max_size=64 * 1024 * 1024) as connection:
            browser = Browser(connection)
            await browser.call("Page.enable")
            await browser.resize(1400, 1400)
            seen = {}
            for name, (url, ready, _) in pages.items():
                text = await browser.open(url, *ready)
                # The headline itself (the heading, the search result's link), not a table cell or a select box.
                headings = await browser.evaluate(
                    "Array.from(document.querySelectorAll('h1, h2, h3, [data-testid=stPageLink]'))"
                    ".map(element => element.innerText).join('\\n')"
                )
                markup = await browser.evaluate(MARKUP_FOUND.replace("TEST_SERVER", f"127.0.0.1:{http_server.port}"))
                seen[name] = (text, headings.replace(WORD_JOINER, ""), markup)
                await browser.screenshot(tmp_path / f"hostile-{name}.png")
            await asyncio.sleep(1)  # an image the last page asked for would have been requested by now
            return seen

    with chromium(chromium_executable, tmp_path / "profile", tmp_path / "chromium.log") as devtools_url:
        seen = asyncio.run(visit(devtools_url))

    if keep := os.environ.get("NEWSWATCH_SCREENSHOT_DIR"):
        for name in pages:
            shutil.copy(tmp_path / f"hostile-{name}.png", Path(keep) / f"hostile-{name}.png")
    nothing = {"images": [], "links": [], "math": 0, "bold": 0, "red": 0, "icons": 0}
    assert {name: markup for name, (_, _, markup) in seen.items()} == {name: nothing for name in pages}
    assert http_server.paths_seen() == []  # no pixel, no link followed, nothing prefetched
    for name, (_, _, literals) in pages.items():
        text = seen[name][0]
        assert "Traceback" not in text, name
        assert [literal for literal in literals if literal not in text] == [], name
    assert title in seen["story"][1] and title in seen["search"][1] and title in seen["watches"][1]
    assert not [name for name, (text, _, _) in seen.items() if NOTIFY_SECRET in text]
