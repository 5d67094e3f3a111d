"""The read-only HTTP API, its Atom feeds and the exports: a real server on 127.0.0.1 over warehouses the real pipeline made.

The module's warehouses come from two `newswatch run --fixtures` runs with a watch: the first
stores one seed article (the watch alerts, "new"), the second the other seeds and an unrelated
article (the story grows to three articles and alerts again, "developing"). The warehouse as the
first run left it is kept as a copy, so the same story can be read from both through two servers.
"""

import base64
import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import httpx
import pyarrow.parquet as pq
import pytest
from lxml import etree

from extract import atom
from flows.api import create_app, is_loopback, token_accepted
from flows.settings import Settings
from tests.seed_site import ORIGINAL, OTHER, REWRITE, SEEDS

ROOT = Path(__file__).parent.parent
ATOM_SCHEMA = etree.RelaxNG(etree.parse(str(ROOT / "tests" / "fixtures" / "atom.rng")))
TOKEN = "test-token-0123456789abcdef"
FLOODS = """Floods cut off villages in the Ebro valley

Heavy rain over three days swelled the Ebro and its tributaries, and rescue teams in Aragon
evacuated four hundred residents from villages near Zaragoza on Sunday, the regional government said.

Farmers reported fields of maize and alfalfa under a metre of water, and the regional railway
suspended services between Zaragoza and Logroño until the tracks can be inspected.
"""


def newswatch(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("newswatch: error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ApiServer:
    """`newswatch api` in its own process on a free loopback port, its log in a file."""

    def __init__(self, db: Path, log: Path, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "api", "--db", str(db), "--port", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + 120
        while True:
            assert self.process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code in (200, 503):
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def copy_warehouse(db: Path, target: Path) -> Path:
    """The database with its indexes beside it (search, vectors), as they are now."""
    target.mkdir()
    for path in db.parent.glob(db.name + "*"):
        if path.name.endswith(".run.lock"):
            continue
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, target / path.name)
    return target / db.name


@pytest.fixture(scope="module")
def warehouses(tmp_path_factory):
    """(db after the first run, db after the second run); the watch `musk` alerted in both."""
    folder = tmp_path_factory.mktemp("api")
    db = folder / "live" / "nw.duckdb"
    db.parent.mkdir()
    articles = folder / "articles"
    articles.mkdir()
    shutil.copy(SEEDS / ORIGINAL, articles / ORIGINAL)
    added = newswatch("add-watch", "musk", "--query", "musk AND gaza", "--db", str(db))
    assert added.returncode == 0, added.stderr
    first = newswatch("run", "--fixtures", str(articles), "--db", str(db))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "alerts: 1 new" in first.stdout, first.stdout
    first_db = copy_warehouse(db, folder / "first")
    for name in (REWRITE, OTHER):
        shutil.copy(SEEDS / name, articles / name)
    (articles / "floods.txt").write_text(FLOODS, encoding="utf-8")
    second = newswatch("run", "--fixtures", str(articles), "--db", str(db))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "alerts: 1 new" in second.stdout, second.stdout  # the developing alert
    return first_db, db


@pytest.fixture(scope="module")
def servers(warehouses, tmp_path_factory):
    """(server of the first warehouse, server of the second); the second asks for a token and waits 1 s for a writer."""
    first_db, db = warehouses
    logs = tmp_path_factory.mktemp("logs")
    first = ApiServer(first_db, logs / "first.log")
    try:
        second = ApiServer(db, logs / "second.log", {"NEWSWATCH_API_TOKEN": TOKEN, "NEWSWATCH_API_LOCK_WAIT_SECONDS": "1"})
    except BaseException:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture(scope="module")
def api(servers):
    """A client of the second server, sending its token."""
    with httpx.Client(base_url=servers[1].url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as client:
        yield client


def assert_zoned(value: str) -> None:
    assert datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None, value


def musk_story(client: httpx.Client) -> dict:
    (story,) = client.get("/stories", params={"q": "musk AND gaza"}).json()["stories"]
    return story


# --- Stories, search, watches, feeds, digests -------------------------------------------------


@pytest.mark.slow
def test_health_needs_no_token_and_the_openapi_page_is_served(servers):
    url = servers[1].url
    assert httpx.get(f"{url}/health").json() == {"status": "ok", "database": "ok"}
    assert httpx.get(f"{url}/stories").status_code == 401
    schema = httpx.get(f"{url}/openapi.json").json()
    for path in ("/stories", "/stories/{story_id}", "/search", "/watches", "/watches/{name}/alerts", "/watches/{name}.atom",
                 "/stories.atom", "/feeds", "/digest", "/export", "/health"):
        assert path in schema["paths"], path
    docs = httpx.get(f"{url}/docs")
    assert docs.status_code == 200 and "openapi.json" in docs.text


@pytest.mark.slow
def test_stories_filter_and_page_with_a_cursor(api):
    everything = api.get("/stories").json()
    assert everything["next_cursor"] is None
    assert len(everything["stories"]) == 2
    seen, cursor, pages = [], None, 0
    while True:
        page = api.get("/stories", params={"limit": 1, **({"cursor": cursor} if cursor else {})}).json()
        seen += [story["story_id"] for story in page["stories"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert page["next"].startswith(str(api.base_url)) and "cursor=" in page["next"]
    assert pages == 2 and seen == [story["story_id"] for story in everything["stories"]]

    story = musk_story(api)
    assert story["article_count"] == 3 and story["duplicate_count"] == 1 and story["source_count"] == 1
    assert story["links"]["self"].endswith(f"/stories/{story['story_id']}")
    for key in ("first_published_at", "last_published_at", "first_ingested_at", "last_ingested_at", "first_seen_at", "last_seen_at"):
        assert_zoned(story[key])
    ids = lambda **params: [s["story_id"] for s in api.get("/stories", params=params).json()["stories"]]  # noqa: E731
    assert ids(watch="musk") == [story["story_id"]]
    assert ids(watch="1") == [story["story_id"]]  # a watch by id too
    assert ids(min_articles=3) == [story["story_id"]]
    assert ids(min_sources=2) == []
    assert ids(language="xx") == []
    assert ids(q="ebro") != [story["story_id"]] and len(ids(q="ebro")) == 1
    assert ids(q="musk", watch="musk", since="2023-11-28", until="2023-11-30") == [story["story_id"]]
    assert ids(since="2023-11-30", q="musk") == []


@pytest.mark.slow
def test_a_story_lists_its_articles_and_what_each_duplicate_duplicates(api):
    story_id = musk_story(api)["story_id"]
    body = api.get(f"/stories/{story_id}").json()
    assert body["story"]["story_id"] == story_id
    articles = {article["article_id"]: article for article in body["articles"]}
    assert len(articles) == 3
    (duplicate,) = [article for article in articles.values() if article["duplicate_of"]]
    assert duplicate["duplicate_kind"] == "rewrite" and 0 < duplicate["duplicate_similarity"] <= 1  # its score
    assert duplicate["duplicate_of"] in articles and articles[duplicate["duplicate_of"]]["duplicate_of"] is None
    assert_zoned(duplicate["seen_at"])
    assert api.get("/stories/0000000000000000").status_code == 404


@pytest.mark.slow
def test_search_by_keywords_and_by_meaning_grouped_by_story(api):
    keyword = api.get("/search", params={"q": '"Elon Musk" AND gaza'}).json()
    assert keyword["article_count"] == 3 and len(keyword["stories"]) == 1
    assert all(article["score"] > 0 for article in keyword["stories"][0]["articles"])
    assert api.get("/search", params={"q": "tesla"}).json() == {"q": "tesla", "semantic": False, "article_count": 0, "stories": []}
    meaning = api.get("/search", params={"q": "rivers flood villages in Spain", "semantic": "true", "limit": 5}).json()
    assert meaning["semantic"] is True
    top = meaning["stories"][0]["articles"][0]
    assert "Ebro" in top["title"] and 0 < top["similarity"] <= 1


@pytest.mark.slow
def test_watches_alerts_feeds_and_digest(api):
    (watch,) = api.get("/watches").json()["watches"]
    assert watch["name"] == "musk" and watch["query"] == "musk AND gaza" and watch["alerts"] == 2
    alerts = api.get("/watches/musk/alerts").json()["alerts"]
    assert [alert["kind"] for alert in alerts] == ["developing", "new"]
    assert [alert["article_count"] for alert in alerts] == [3, 1]
    assert api.get("/feeds").json() == {"feeds": []}
    digest = api.get("/digest", params={"since": "2023-11-28", "until": "2023-12-01"}).json()
    assert [story["headline"] for story in digest["stories"]] == [musk_story(api)["headline"]]
    assert_zoned(digest["since"])
    markdown = api.get("/digest", params={"since": "2023-11-28", "until": "2023-12-01", "format": "markdown"})
    assert markdown.headers["content-type"].startswith("text/markdown") and markdown.text.startswith("# newswatch digest")
    assert api.get("/digest", params={"watch": "nobody"}).status_code == 404


@pytest.mark.slow
def test_bad_parameters_are_one_line_4xx(api):
    for path, params, status in (
        ("/stories", {"limit": 0}, 400),
        ("/stories", {"limit": 100_000}, 400),
        ("/stories", {"since": "last tuesday"}, 400),
        ("/stories", {"until": "99999999999d"}, 400),
        ("/stories", {"q": "musk AND ("}, 400),
        ("/stories", {"q": "NOT musk"}, 400),
        ("/stories", {"q": "x" * 5000}, 400),
        ("/stories", {"cursor": "not-a-cursor"}, 400),
        ("/stories", {"cursor": base64.urlsafe_b64encode(b'["2023-01-01", 5]').decode()}, 400),
        ("/stories", {"min_articles": "many"}, 400),
        ("/stories", {"watch": "nobody"}, 404),
        ("/search", {}, 400),
        ("/search", {"q": "   "}, 400),
        ("/search", {"q": "a", "semantic": "perhaps"}, 400),
        ("/digest", {"format": "pdf"}, 400),
        ("/digest", {"since": "1d", "until": "2d"}, 400),
        ("/export", {"format": "xlsx"}, 400),
        ("/watches/nobody/alerts", {}, 404),
        ("/watches/nobody.atom", {}, 404),
        ("/no-such-page", {}, 404),
    ):
        response = api.get(path, params=params)
        assert response.status_code == status, (path, params, response.text)
        detail = response.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in response.text, (path, params, detail)


# --- Atom feeds ----------------------------------------------------------------------------------


def valid_atom(response: httpx.Response) -> feedparser.FeedParserDict:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/atom+xml")
    document = etree.fromstring(response.content)
    assert ATOM_SCHEMA.validate(document), ATOM_SCHEMA.error_log
    parsed = feedparser.parse(response.content)
    assert not parsed.bozo, parsed.bozo_exception
    return parsed


@pytest.mark.slow
def test_a_watch_feed_keeps_one_entry_per_story_and_updates_it_when_it_grows(servers, api):
    first_url, _ = servers[0].url, servers[1].url
    before = valid_atom(httpx.get(f"{first_url}/watches/musk.atom"))
    again = valid_atom(httpx.get(f"{first_url}/watches/musk.atom"))
    after = valid_atom(api.get("/watches/musk.atom"))
    story_id = musk_story(api)["story_id"]
    for feed in (before, again, after):
        assert feed.feed.id == "urn:newswatch:watch:1"
        assert [entry.id for entry in feed.entries] == [f"urn:newswatch:story:{story_id}"]
    assert before.entries[0].updated == again.entries[0].updated
    # A reader that has the document gets 304 Not Modified (feeds are polled often).
    first = httpx.get(f"{first_url}/watches/musk.atom")
    unchanged = httpx.get(f"{first_url}/watches/musk.atom", headers={"If-None-Match": first.headers["etag"]})
    assert unchanged.status_code == 304 and unchanged.content == b""
    # The story grew (a developing alert): the same entry, updated later, published unchanged.
    assert after.entries[0].updated_parsed > before.entries[0].updated_parsed
    assert after.entries[0].published == before.entries[0].published
    assert [tag.term for tag in before.entries[0].tags] == ["new"]
    assert [tag.term for tag in after.entries[0].tags] == ["developing"]
    assert "3 articles" in after.entries[0].summary and "1 article " in before.entries[0].summary + " "
    links = {(link.rel, link.type): link.href for link in after.entries[0].links}
    assert links[("alternate", "application/json")].endswith(f"/stories/{story_id}")
    content = after.entries[0].content[0].value
    assert "rewrite duplicate" in content and "Elon Musk" in content
    # By id as well as by name.
    assert [entry.id for entry in valid_atom(api.get("/watches/1.atom")).entries] == [entry.id for entry in after.entries]


@pytest.mark.slow
def test_a_saved_search_as_a_feed(servers, api):
    params = {"q": "musk AND gaza"}
    before = valid_atom(httpx.get(f"{servers[0].url}/stories.atom", params=params))
    after = valid_atom(api.get("/stories.atom", params=params))
    assert before.feed.id == after.feed.id and before.feed.id.startswith("urn:newswatch:search:")
    assert [entry.id for entry in before.entries] == [entry.id for entry in after.entries]
    assert after.entries[0].updated_parsed > before.entries[0].updated_parsed
    other = valid_atom(api.get("/stories.atom", params={"q": "ebro"}))
    assert other.feed.id != after.feed.id and len(other.entries) == 1
    assert valid_atom(api.get("/stories.atom", params={"q": "tesla"})).entries == []
    assert len(valid_atom(api.get("/stories.atom")).entries) == 2


def test_feed_text_from_feeds_is_data_escaped_and_never_a_script_link():
    hostile = 'Breaking <script>alert("x")</script> & co \x00\x1b\ufffe'
    feed = atom.Feed(
        id="urn:newswatch:search:test", title=hostile, updated=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        entries=[atom.Entry(
            id=atom.story_entry_id("abc"), title=hostile, updated=datetime(2026, 1, 2, tzinfo=UTC),
            links=[atom.Link("https://news.example/a?x=1&y=<2>", "alternate", "text/html", hostile)],
            summary=hostile, categories=["new"],
            articles=[
                atom.ListedArticle(hostile, "javascript:alert(1)", "Evil <b>Source</b>", datetime(2026, 1, 1, tzinfo=UTC)),
                atom.ListedArticle("Fine", "https://news.example/fine", None, None, "copy duplicate 0.97 of: <Fine>"),
            ],
        )],
    )
    document = atom.render_feed(feed)
    assert ATOM_SCHEMA.validate(etree.fromstring(document)), ATOM_SCHEMA.error_log
    assert b"<script>" not in document and b"&lt;script&gt;" in document
    parsed = feedparser.parse(document)
    assert not parsed.bozo, parsed.bozo_exception
    clean = 'Breaking <script>alert("x")</script> & co'
    assert parsed.feed.title == clean and parsed.entries[0].title == clean
    assert parsed.entries[0].link == "https://news.example/a?x=1&y=<2>"
    tree = etree.fromstring(document)
    hrefs = [element.get("href") for element in tree.iter() if element.get("href") is not None]
    assert "javascript:alert(1)" not in hrefs and "https://news.example/fine" in hrefs
    assert parsed.entries[0].id == "urn:newswatch:story:abc"


# --- Exports -------------------------------------------------------------------------------------


def _rows(format: str, content: bytes) -> list[dict]:
    if format == "csv":
        return list(csv.DictReader(io.StringIO(content.decode("utf-8"))))
    if format == "jsonl":
        return [json.loads(line) for line in content.decode("utf-8").splitlines()]
    return pq.read_table(io.BytesIO(content)).to_pylist()


@pytest.mark.slow
def test_exports_through_the_api_and_the_command_line(api, warehouses, tmp_path):
    _, db = warehouses
    for format in ("csv", "jsonl", "parquet"):
        response = api.get("/export", params={"format": format})
        assert response.status_code == 200, response.text
        assert f"newswatch-articles.{format}" in response.headers["content-disposition"]
        rows = _rows(format, response.content)
        assert len(rows) == 4
        kinds = sorted(str(row["duplicate_kind"] or "") for row in rows)
        assert kinds == ["", "", "", "rewrite"]
        for row in rows:
            assert row["story_id"] and row["source_name"] == "fixtures" and row["language"] == "en"
            if format != "parquet":
                assert_zoned(row["ingested_at"])
        written = tmp_path / f"articles.{format}"
        result = newswatch("export", "--format", format, "--query", "musk AND gaza", "-o", str(written), "--db", str(db))
        assert result.returncode == 0, result.stderr
        assert len(_rows(format, written.read_bytes())) == 3
    assert len(_rows("jsonl", api.get("/export", params={"format": "jsonl", "q": "ebro"}).content)) == 1
    assert len(_rows("csv", api.get("/export", params={"since": "2023-11-28", "limit": 2}).content)) == 2
    printed = newswatch("export", "--format", "jsonl", "--since", "2023-11-28", "--db", str(db))
    assert printed.returncode == 0 and len(_rows("jsonl", printed.stdout.encode())) == 4
    one_line_error(newswatch("export", "--format", "xlsx", "--db", str(db)), "unknown format")
    one_line_error(newswatch("export", "--query", "a AND (", "--db", str(db)), "invalid query")
    one_line_error(newswatch("export", "--db", str(tmp_path / "none.duckdb")), "does not exist")


# --- Beside a writer -----------------------------------------------------------------------------

HOLD = """
import sys, time, duckdb
deadline = time.monotonic() + 10
while True:  # the API lets the file go shortly after its last request
    try:
        connection = duckdb.connect(sys.argv[1])
        break
    except duckdb.Error:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
connection.close()
"""


@pytest.mark.slow
def test_while_a_writer_holds_the_database_the_api_answers_503_with_retry_after(api, warehouses):
    _, db = warehouses
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db), "8"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        busy = api.get("/stories")
        waited = time.monotonic() - started
        assert busy.status_code == 503, busy.text
        assert busy.headers["retry-after"] == "1"
        assert "writing to the database" in busy.json()["detail"]
        assert 0.5 <= waited < 5, waited  # the bounded wait (NEWSWATCH_API_LOCK_WAIT_SECONDS=1), then no longer
        assert api.get("/watches/musk.atom").status_code == 503
        assert httpx.get(str(api.base_url).rstrip("/") + "/health").json() == {"status": "ok", "database": "busy"}
    finally:
        holder.wait(30)
    assert api.get("/stories").status_code == 200


def _varied_warehouse(db: Path) -> None:
    """A warehouse of 240 articles in 60 stories: three feeds (one named, one not), some with a site name, some
    from files; English, German and unknown languages; seen over 30 days, some at the very same time."""
    import random
    from datetime import timedelta

    from warehouse.connection import open_warehouse
    from warehouse.feeds import add_feed, feed_id_for
    from warehouse.load import ArticleRow, LoadBatch, load_batch

    rng = random.Random(5)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    feeds = ["https://one.example/feed", "https://two.example/rss", "https://www.three.example/atom"]
    rows = []
    for number in range(240):
        story = rng.randrange(60)
        seen = start + timedelta(hours=rng.choice([rng.randrange(720), 100]))  # hour 100: ties in the order
        feed = rng.choice([*feeds, None])
        url = f"https://{'www.' if number % 7 == 0 else ''}host{number % 5}.example/{number}" if feed else f"file:///seeds/{number}.txt"
        rows.append(ArticleRow(
            article_id=f"{number:016x}", url=url, canonical_url=url, title=f"title {number}",
            published_at=seen if number % 3 else None, ingested_at=seen + timedelta(minutes=5), text=f"text {number}",
            text_hash=f"hash{number}", author=None, language=rng.choice(["en", "de", None]),
            site_name=rng.choice([None, None, "", "Site A", "Site B"]), source="feed" if feed else "fixtures",
            duplicate_of=None, duplicate_kind=None, duplicate_similarity=None, story_id=f"story{story:04d}",
            story_similarity=None, feed_id=feed_id_for(feed) if feed else None,
        ))
    with open_warehouse(db) as connection:
        add_feed(connection, feeds[0], "Feed One", start)
        add_feed(connection, feeds[1], None, start)
        add_feed(connection, feeds[2], "", start)
        load_batch(connection, LoadBatch(articles=rows))


def _expected_page(connection, limit, since=None, until=None, languages=None, story_ids=None, min_articles=1,
                   min_sources=1, after=None) -> list[tuple]:
    """What `story_page` should return, worked out in Python from every article: (story_id, last_seen_at, sources)."""
    import re

    names = dict(connection.execute("SELECT feed_id, name FROM feeds").fetchall())
    members: dict[str, list] = {}
    for story_id, seen, language, site, feed_id, url, source in connection.execute(
        "SELECT story_id, coalesce(published_at, ingested_at), coalesce(language, ''), site_name, feed_id, canonical_url, source"
        " FROM articles"
    ).fetchall():
        host = re.match(r"^[a-z]+://(?:www\.)?([^/:?#]+)", url)
        name = site or names.get(feed_id) or (host.group(1) if host else None) or source
        members.setdefault(story_id, []).append((seen, language, name))
    page = []
    for story_id, articles in members.items():
        last_seen = max(seen for seen, _, _ in articles)
        sources = sorted({name for _, _, name in articles})
        if story_ids is not None and story_id not in story_ids:
            continue
        if not any((since is None or seen >= since) and (until is None or seen < until)
                   and (languages is None or language in languages) for seen, language, _ in articles):
            continue
        if len(articles) < min_articles or len(sources) < min_sources:
            continue
        if after is not None and (last_seen, story_id) >= after:
            continue
        page.append((story_id, last_seen, sources))
    page.sort(key=lambda row: (row[1], row[0]), reverse=True)
    return page[:limit]


def test_a_page_of_stories_is_what_its_filters_and_order_say(tmp_path):
    """`story_page` (chosen first, detailed after) against the documented rules, worked out from every article."""
    from datetime import timedelta

    from warehouse.connection import open_warehouse
    from warehouse.queries import story_page

    db = tmp_path / "varied.duckdb"
    _varied_warehouse(db)
    moment = datetime(2026, 11, 1, tzinfo=UTC)
    with open_warehouse(db, read_only=True) as connection:
        sample = sorted({row[0] for row in connection.execute("SELECT story_id FROM articles").fetchall()})[::3]
        cases = 0
        for limit in (1, 5, 100):
            for since, until in ((None, None), (moment + timedelta(days=10), None), (None, moment + timedelta(hours=100)),
                                 (moment + timedelta(days=4), moment + timedelta(days=20))):
                for languages in (None, ["en"], [""], ["de", ""], ["xx"]):
                    for story_ids in (None, sample, [], sample[:1]):
                        for min_articles, min_sources in ((1, 1), (5, 1), (1, 3), (4, 2)):
                            filters = {"since": since, "until": until, "languages": languages, "story_ids": story_ids,
                                       "min_articles": min_articles, "min_sources": min_sources}
                            found = story_page(connection, limit, **filters)
                            expected = _expected_page(connection, limit, **filters)
                            assert [(s["story_id"], s["last_seen_at"], s["sources"]) for s in found] == expected, filters
                            assert all(s["source_count"] == len(s["sources"]) for s in found)
                            if found:  # the next page, after the last story of this one
                                after = (found[-1]["last_seen_at"], found[-1]["story_id"])
                                following = story_page(connection, limit, after=after, **filters)
                                assert [s["story_id"] for s in following] == [
                                    row[0] for row in _expected_page(connection, limit, after=after, **filters)]
                            cases += 1
        # Every story once when paging through all of them, in ties too.
        seen, after = [], None
        while page := story_page(connection, 7, after=after):
            seen += [story["story_id"] for story in page]
            after = (page[-1]["last_seen_at"], page[-1]["story_id"])
        assert seen == [row[0] for row in _expected_page(connection, 1000)] and len(seen) == len(set(seen))
        (one,) = story_page(connection, 1, story_ids=[sample[0]])
        assert one["article_count"] == connection.execute("SELECT count(*) FROM articles WHERE story_id = ?", [sample[0]]).fetchone()[0]
    assert cases == 960


WRITE = """
import sys, time
from warehouse.connection import open_warehouse
started = time.monotonic()
with open_warehouse(sys.argv[1], lock_wait=float(sys.argv[2])) as connection:
    waited = time.monotonic() - started
    connection.execute("INSERT INTO feeds (feed_id, url, added_at) VALUES ('w', 'https://w.example/', now())").fetchall()
    time.sleep(0.5)
print(round(waited, 2))
"""


def test_reads_share_the_file_while_they_overlap_and_let_it_go_after(tmp_path):
    from warehouse.connection import WarehouseReader, open_warehouse

    db = tmp_path / "shared.duckdb"
    with open_warehouse(db):
        pass
    write = lambda lock_wait: subprocess.run([sys.executable, "-c", WRITE, str(db), str(lock_wait)],  # noqa: E731
                                             capture_output=True, text=True, cwd=ROOT, check=False)
    reader = WarehouseReader(db)
    reader.LINGER_SECONDS = 60
    try:
        with reader.read(1) as first, reader.read(1) as second:
            assert first.execute("SELECT count(*) FROM articles").fetchone() == (0,)
            assert second.execute("SELECT count(*) FROM stories").fetchone() == (0,)
            assert first.execute("SELECT current_setting('TimeZone')").fetchone() == ("UTC",)
            # Held while reads are in progress: a writer that will not wait cannot get in.
            refused = write(0)
            assert refused.returncode != 0 and "busy" in refused.stderr
        # Held a while after them too, but let go at once for a writer that waits.
        assert write(0).returncode != 0
        written = write(10)
        assert written.returncode == 0 and float(written.stdout) < 3, written.stderr
        with reader.read(1) as connection:
            assert connection.execute("SELECT count(*) FROM feeds").fetchone() == (1,)
    finally:
        reader.close()
    # And let go by itself a short while after the last read.
    reader = WarehouseReader(db)
    reader.LINGER_SECONDS = 0.2
    opens = "import sys\nfrom warehouse.connection import open_warehouse\nwith open_warehouse(sys.argv[1], lock_wait=0): print('in')"
    try:
        with reader.read(1):
            pass
        time.sleep(1)
        opened = subprocess.run([sys.executable, "-c", opens, str(db)], capture_output=True, text=True, cwd=ROOT, check=False)
        assert opened.stdout.strip() == "in", opened.stderr
    finally:
        reader.close()


def test_reads_take_turns_and_a_read_inside_a_read_takes_none(tmp_path):
    import threading

    from warehouse.connection import WarehouseReader, open_warehouse

    db = tmp_path / "turns.duckdb"
    with open_warehouse(db):
        pass
    reader = WarehouseReader(db)
    running, most, lock = [0], [0], threading.Lock()

    def read() -> None:
        with reader.read(5), reader.read(5) as connection:  # the inner read is part of the outer one's turn
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            connection.execute("SELECT count(*) FROM articles").fetchall()
            time.sleep(0.1)
            with lock:
                running[0] -= 1

    threads = [threading.Thread(target=read) for _ in range(3 * WarehouseReader.READS_AT_ONCE)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        reader.close()
    assert most[0] == WarehouseReader.READS_AT_ONCE and running[0] == 0


def test_a_waiting_writer_gets_in_under_a_steady_stream_of_overlapping_reads(tmp_path):
    """Reads that overlap share the file; a writer that waits for it stops new ones, so it is let go."""
    import threading

    from warehouse.connection import WarehouseBusy, WarehouseReader, open_warehouse

    db = tmp_path / "busy.duckdb"
    with open_warehouse(db):
        pass
    reader = WarehouseReader(db)
    stop, answered, busy = threading.Event(), [], []

    def read_again_and_again() -> None:
        while not stop.is_set():
            try:
                with reader.read(0.5) as connection:
                    answered.append(connection.execute("SELECT count(*) FROM feeds").fetchone()[0])
                    time.sleep(0.03)  # four readers like this one keep the file open all the time
            except WarehouseBusy:
                busy.append(1)

    threads = [threading.Thread(target=read_again_and_again) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        writer = subprocess.run([sys.executable, "-c", WRITE, str(db), "10"], capture_output=True, text=True, cwd=ROOT,
                                timeout=60, check=False)
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        reader.close()
    assert writer.returncode == 0, writer.stderr
    assert float(writer.stdout) < 3  # in within a few backoff steps, not after its 10 s
    assert answered[0] == 0 and answered[-1] == 1  # reads went on after the writer
    assert len(busy) <= 4  # the writer held the file 0.5 s; a read waits 0.5 s before it gives up


# --- The token, and where the API may listen -----------------------------------------------------


def test_the_token_is_compared_as_bearer_or_basic_password():
    assert token_accepted(f"Bearer {TOKEN}", TOKEN)
    assert token_accepted(f"bearer   {TOKEN}", TOKEN)
    assert token_accepted("Basic " + base64.b64encode(f"reader:{TOKEN}".encode()).decode(), TOKEN)
    for header in (None, "", TOKEN, f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer ", f"Token {TOKEN}",
                   "Basic " + base64.b64encode(f"{TOKEN}:wrong".encode()).decode(), "Basic %%%notbase64", "Bearer é"):
        assert not token_accepted(header, TOKEN), header


def test_the_app_asks_for_the_token_on_every_endpoint_but_health(tmp_path):
    from fastapi.testclient import TestClient

    client = TestClient(create_app(Settings(db=tmp_path / "missing.duckdb", api_token=TOKEN)))
    for path in ("/stories", "/stories/abc", "/stories.atom", "/search?q=a", "/watches", "/watches/a/alerts", "/watches/a.atom",
                 "/feeds", "/digest", "/export"):
        refused = client.get(path)
        assert refused.status_code == 401 and "Bearer" in refused.headers["www-authenticate"], path
        assert client.get(path, headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401, path
        # With the token the request goes through to the (missing) database.
        accepted = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert accepted.status_code == 503 and "does not exist" in accepted.json()["detail"], (path, accepted.text)
    assert client.get("/health").json() == {"status": "unavailable", "database": "missing"}
    open_client = TestClient(create_app(Settings(db=tmp_path / "missing.duckdb")))
    assert open_client.get("/stories").status_code == 503


def test_loopback_addresses():
    for host in ("127.0.0.1", "127.1.2.3", "::1", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.4", "example.org", "10.0.0.1"):
        assert not is_loopback(host), host


def test_the_command_refuses_another_address_without_a_token_and_a_port_in_use(tmp_path):
    db = tmp_path / "nw.duckdb"
    one_line_error(newswatch("api", "--db", str(db), "--host", "0.0.0.0"), "NEWSWATCH_API_TOKEN")
    one_line_error(newswatch("api", "--db", str(db), env={"NEWSWATCH_API_HOST": "192.168.7.7"}), "not a loopback address")
    one_line_error(newswatch("api", "--db", str(db), env={"NEWSWATCH_API_TOKEN": "short"}), "NEWSWATCH_API_TOKEN")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        one_line_error(newswatch("api", "--db", str(db), "--port", str(taken.getsockname()[1])), "cannot listen")
    assert not db.exists()


# --- Beside the scheduled service ----------------------------------------------------------------


@pytest.mark.slow  # starts the service with its Prefect server
def test_serve_with_api_serves_the_api_until_stopped(warehouses, tmp_path):
    import signal

    db = copy_warehouse(warehouses[1], tmp_path / "service")
    api_port = free_port()
    environment = {**os.environ, "NEWSWATCH_PREFECT_PORT": str(free_port()), "NEWSWATCH_API_PORT": str(api_port)}
    environment.pop("PREFECT_API_URL", None)
    service = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "--api", "--db", str(db), "--interval", "3600"], cwd=ROOT,
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 300
        stories = None
        while time.monotonic() < deadline and service.poll() is None:
            try:
                response = httpx.get(f"{url}/stories", timeout=30)
                if response.status_code == 200:  # 503 while the first scheduled run holds the database
                    stories = response.json()["stories"]
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        assert stories is not None and len(stories) == 2, service.poll()
        # Ready: the service records its state, then says where it serves (the API came up before).
        state = db.parent / "prefect" / "newswatch-serve.json"
        while time.monotonic() < deadline and not state.exists():
            time.sleep(0.5)
        time.sleep(1)
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            output, _ = service.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(service.pid, signal.SIGKILL)
            raise
    text = " ".join(output.decode(errors="replace").split())  # the console wraps long lines
    assert service.returncode == 0, text[-3000:]
    assert f"newswatch API http://127.0.0.1:{api_port}" in text and "newswatch stopped" in text
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=5)  # stopped with the service
    one_line_error(newswatch("serve", "--api", "--db", str(db), env={"NEWSWATCH_API_HOST": "0.0.0.0"}), "NEWSWATCH_API_TOKEN")
