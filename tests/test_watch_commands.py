"""The watch, search and digest commands as `newswatch` processes, the search index beside the warehouse, the digest flow.

Bad input is one line and exit 2 and changes nothing stored; notification URLs are masked in
every output, the run's Prefect log lines included; `test-watch` stores and sends nothing.
The warehouse these commands read is built once per module by a fixtures run (the seed story
and one unrelated article seen now).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flows.settings import Settings
from monitoring.notification_urls import mask_url
from tests.http_server import closed_port
from tests.receivers import make_smtp_fixture, make_webhook_fixture
from tests.seed_site import ORIGINAL, OTHER, REWRITE, SEEDS
from warehouse.connection import open_warehouse
from warehouse.sql import transaction
from warehouse.watches import add_watch

REPO = Path(__file__).parent.parent

webhook = make_webhook_fixture()
smtp = make_smtp_fixture()

STORM = """Storm batters Cornwall and leaves thousands without power

A storm with winds of more than 90 miles an hour battered the coast of Cornwall on Thursday, leaving
tens of thousands of homes without power and closing the main railway line to Penzance.

The Met Office issued an amber warning for the south-west of England as waves broke over the harbour
walls in Penzance and Mousehole, and fallen trees blocked roads across the county.

Engineers worked through the night to reconnect homes, and the railway is expected to reopen on
Saturday once the line has been cleared of debris.
"""
TABLE_RULES = "│┃"


def newswatch(*args: str, env: dict | None = None, private: bool = True) -> subprocess.CompletedProcess:
    """Run `newswatch ARGS` as a process; `private` allows loopback notification URLs."""
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("PREFECT_API") and key != "NEWSWATCH_ALLOW_PRIVATE_NETWORKS"}
    environment.update(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120", HF_HUB_OFFLINE="1",
                       PREFECT_SERVER_ANALYTICS_ENABLED="false")
    if private:
        environment["NEWSWATCH_ALLOW_PRIVATE_NETWORKS"] = "1"
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=600,
                          env=environment, cwd=REPO)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout


def columns(output: str) -> list[str]:
    """Each column of the Rich tables in `output`, its folded cells joined back (no whitespace)."""
    joined: dict[int, str] = {}
    for line in output.splitlines():
        cells = re.split(f"[{TABLE_RULES}]", line)
        if len(cells) > 2:
            for position, cell in enumerate(cells[1:-1]):
                joined[position] = joined.get(position, "") + "".join(cell.split())
    return [joined[position] for position in sorted(joined)]


def counts(db: Path) -> dict[str, int]:
    with open_warehouse(db, read_only=True) as connection:
        return {table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("watches", "watch_matches", "alerts", "alert_deliveries", "articles")}


def store_watch(db: Path, name: str, query: str, urls=(), min_articles: int = 1) -> int:
    with open_warehouse(db) as connection, transaction(connection):
        return add_watch(connection, name, query=query, like_text=None, like_vector=None, like_model=None,
                         min_articles=min_articles, min_sources=1, notify_urls=list(urls), now=datetime.now(UTC))


@pytest.fixture(scope="module")
def seeded(prefect_server, tmp_path_factory):
    """A warehouse after a fixtures run: the seed story (seen 2023-11-29), a storm story (seen now), three watches."""
    from flows.embedding import embedding_model_key, get_embedder
    from flows.ingest import ingest_fixtures

    root = tmp_path_factory.mktemp("seeded")
    folder = root / "articles"
    folder.mkdir()
    for name in (ORIGINAL, REWRITE, OTHER):
        shutil.copy(SEEDS / name, folder / name)
    (folder / "storm.txt").write_text(STORM, encoding="utf-8")
    db = root / "seeded.duckdb"
    settings = Settings()
    store_watch(db, "musk-gaza", '"Elon Musk" AND Gaza')
    like = "Hamas invites Elon Musk to visit Gaza"
    with open_warehouse(db) as connection, transaction(connection):
        add_watch(connection, "invitation", query=None, like_text=like, like_vector=get_embedder(settings).embed([like])[0][0],
                  like_model=embedding_model_key(settings), min_articles=1, min_sources=1, notify_urls=[], now=datetime.now(UTC))
    store_watch(db, "quiet", "volcano AND Iceland")
    summary = ingest_fixtures(folder, db, settings)
    assert (summary.new_articles, summary.new_stories, summary.alerts) == (4, 2, 2)
    shutil.rmtree(Path(f"{db}.search"))  # built by the run; the commands build their own
    return db


@pytest.fixture
def db(seeded, tmp_path):
    """A copy of the seeded warehouse for one test."""
    copy = tmp_path / "nw.duckdb"
    shutil.copy(seeded, copy)
    return copy


def ids_by_file(db: Path) -> dict[str, str]:
    with open_warehouse(db, read_only=True) as connection:
        rows = connection.execute("SELECT url, article_id, story_id FROM articles").fetchall()
    return {url.rsplit("/", 1)[-1]: (article_id, story_id) for url, article_id, story_id in rows}


# ---------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing stored changes

BAD_INPUT = [
    (("add-watch", "w", "--query", '"Elon Musk'), "invalid query"),
    (("add-watch", "w", "--query", "NOT Musk"), "invalid query"),
    (("add-watch", "w", "--query", "Musk AND"), "invalid query"),
    (("add-watch", "w"), "give --query or --like"),
    (("add-watch", "w", "--query", "Musk", "--like", "Musk in Gaza"), "give --query or --like"),
    (("add-watch", "w", "--query", "Musk", "--notify", "carrierpigeon://coop/1"), "unknown notification scheme"),
    (("add-watch", "w", "--query", "Musk", "--notify", "https://hooks.example.org/x"), "json://"),
    (("add-watch", "w", "--query", "Musk", "--notify", "json://127.0.0.1:9/hook"), "NEWSWATCH_ALLOW_PRIVATE_NETWORKS"),
    (("add-watch", "w", "--query", "Musk", "--notify", "json://localhost:9/hook"), "NEWSWATCH_ALLOW_PRIVATE_NETWORKS"),
    (("add-watch", "musk-gaza", "--query", "Musk"), "exists already"),
    (("add-watch", "  ", "--query", "Musk"), "needs a name"),
    (("remove-watch", "no-such-watch"), "no watch no-such-watch"),
    (("remove-watch", "999"), "no watch 999"),
    (("test-watch", "no-such-watch"), "no watch no-such-watch"),
    (("search", "(Musk OR Gaza"), "invalid query"),
    (("search", "NOT Gaza"), "invalid query"),
    (("search", "Musk", "--since", "last tuesday"), "--since"),
    (("digest", "--format", "pdf"), "unknown format 'pdf'"),
    (("digest", "--since", "yesterday-ish"), "neither a duration"),
    (("digest", "--since", "99999999d"), "reaches back too far"),
    (("search", "Musk", "--since", "9999999999999d"), "reaches back too far"),
    (("digest", "--watch", "unknown"), "no watch unknown"),
    (("digest", "--notify", "carrierpigeon://coop/1"), "unknown notification scheme"),
    (("digest", "--notify", "mailto://user:pw@127.0.0.1?from=not-an-address"), "Invalid ~From~ email"),
]


@pytest.mark.slow  # newswatch processes
@pytest.mark.parametrize(("args", "fragment"), BAD_INPUT, ids=[" ".join(args) for args, _ in BAD_INPUT])
def test_bad_input_is_one_line_and_exit_2_and_changes_nothing(db, args, fragment):
    before = counts(db)
    private = "NEWSWATCH_ALLOW_PRIVATE_NETWORKS" not in fragment  # the SSRF guard is on by default
    result = newswatch(*args, "--db", str(db), private=private)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("newswatch: error: "), result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert counts(db) == before
    assert before["watches"] == 3 and before["alerts"] == 2


@pytest.mark.slow
def test_add_and_remove_watch_change_exactly_their_rows(db, webhook):
    before = counts(db)
    added = ok(newswatch("add-watch", "hooked", "--query", "Gaza", "--min-articles", "2", "--notify", webhook.json_url(),
                         "--db", str(db)))
    assert "added watch 4 'hooked'" in added and webhook.json_url() in added
    assert counts(db) == {**before, "watches": 4}
    listed = columns(ok(newswatch("watches", "--db", str(db))))
    assert "hooked" in listed[1] and "queryGaza" in listed[2] and "≥2articles" in listed[3]
    assert ok(newswatch("remove-watch", "musk-gaza", "--db", str(db))).strip() == "removed watch 1 'musk-gaza'"
    assert counts(db) == {**before, "watch_matches": before["watch_matches"] - 1, "alerts": 1}
    assert "removed watch 4" in ok(newswatch("remove-watch", "4", "--db", str(db)))
    assert counts(db)["watches"] == 2
    assert webhook.received == []


# ---------------------------------------------------------------------------------------------
# Secrets: masked in every output


SECRETS = ("SeCrEt", "T0KEN", "PaSS", "TokenA", "TokenB", "TokenC")


def assert_no_secrets(*outputs: str) -> None:
    for output in outputs:
        unwrapped = output.replace("\n", "")  # Rich wraps long lines: a secret may span two
        for text in (output, unwrapped, "".join(columns(output))):
            for secret in SECRETS:
                assert secret not in text, f"{secret!r} shown in:\n{output}"


@pytest.mark.slow  # newswatch processes, and a run on a Prefect server
def test_notification_secrets_are_masked_in_every_output(tmp_path, seeds_copy, webhook, smtp):
    closed = closed_port()
    failing = [
        f"jsons://user:SeCrEt@127.0.0.1:{closed}/path?token=T0KEN",
        f"json://user:SeCrEt@127.0.0.1:{webhook.port}/hook?token=T0KEN",
        f"mailto://user:PaSS@127.0.0.1:{smtp.port}?from=newswatch@example.com&to=desk@example.com",
    ]
    slack = "slack://TokenA/TokenB/TokenC"
    webhook.fail_next(10, status=500)
    db, folder = tmp_path / "nw.duckdb", seeds_copy(ORIGINAL, REWRITE, OTHER)
    outputs = []

    def run(*args: str, env: dict | None = None) -> str:
        result = newswatch(*args, "--db", str(db), env=env)
        outputs.extend([result.stdout, result.stderr])
        return ok(result)

    added = run("add-watch", "hooks", "--query", "Musk", *[part for url in failing for part in ("--notify", url)])
    for url in failing:
        assert "".join(mask_url(url).split()) in "".join(added.split())
    run("add-watch", "chat", "--query", "volcano AND Iceland", "--notify", slack)  # matches nothing: never sent
    listed = run("watches")
    notifies = columns(listed)[4]
    for url in failing + [slack]:
        assert "".join(mask_url(url).split()) in notifies
    # Prefect's log lines of the library loggers too, at debug level.
    ran = run("run", "--fixtures", str(folder),
              env={"PREFECT_LOGGING_EXTRA_LOGGERS": "flows,extract,apprise", "PREFECT_LOGGING_LEVEL": "DEBUG"})
    assert "alerts: 1 new, 0 delivered, 3 not delivered" in ran
    assert "not delivered" in outputs[-1]  # the run's log of the failed attempts, on stderr
    assert len(webhook.received) == 1 and webhook.received[0].headers["authorization"].startswith("Basic ")
    assert smtp.messages == []  # the server offers no login: refused before anything was sent
    status = run("status").replace("\n", " ")
    assert "Alert deliveries: 0 delivered, 3 pending, 0 failed; last failure" in status
    assert "****" in status
    health = columns(run("watches"))[7]
    assert "0delivered,3pending,0failed" in health and "lasterror" in health
    with open_warehouse(db, read_only=True) as connection:
        errors = [error for (error,) in connection.execute("SELECT last_error FROM alert_deliveries").fetchall()]
        stored = connection.execute("SELECT notify_urls FROM watches ORDER BY watch_id").fetchall()
    assert len(errors) == 3 and all(errors)
    assert stored[0][0] == failing  # stored as given: needed to deliver
    assert_no_secrets(*outputs, *errors)


# ---------------------------------------------------------------------------------------------
# test-watch, search, the search index


@pytest.mark.slow
def test_test_watch_lists_the_matching_stories_and_stores_and_sends_nothing(db, webhook):
    store_watch(db, "hooked", "Musk", urls=[webhook.json_url()])
    store_watch(db, "big", "Gaza", min_articles=10)
    before = counts(db)
    files = ids_by_file(db)
    seed_story, storm_story = files[ORIGINAL][1], files["storm.txt"][1]

    shown = ok(newswatch("test-watch", "hooked", "--db", str(db)))
    assert "watch 4 'hooked' (query Musk): 1 stored stories match" in shown
    story, articles, sources, matching, _, alerts = columns(shown)
    assert "BEIRUT–HamashasinvitedElonMusk" in story and "Storm" not in story
    assert (articles, sources, matching, alerts) == ("Articles3", "Sources1", "Matchingarticles3", "Wouldalertyes")
    assert columns(ok(newswatch("test-watch", "big", "--db", str(db))))[-1] == "Wouldalertno(toosmall)"
    assert ": 0 stored stories match" in ok(newswatch("test-watch", "quiet", "--db", str(db)))
    semantic = ok(newswatch("test-watch", "invitation", "--db", str(db)))
    assert "(like: Hamas invites Elon Musk to visit Gaza): 1 stored stories match" in semantic
    assert "Storm" not in columns(semantic)[0]
    assert counts(db) == before
    assert webhook.received == []
    assert seed_story != storm_story


def search(db: Path, *args: str) -> str:
    return ok(newswatch("search", *args, "--db", str(db)))


def groups(output: str) -> list[list[str]]:
    """The article URLs' file names under each story heading of `newswatch search`."""
    found: list[list[str]] = []
    for line in output.splitlines():
        if "(story " in line:
            found.append([])
        elif "file://" in line and found:
            found[-1].append(line.rsplit("/", 1)[-1].strip())
    return found


@pytest.mark.slow
def test_search_prints_the_results_grouped_by_story(db):
    files = ids_by_file(db)
    both = search(db, "Musk OR Cornwall")
    assert "4 articles in 2 stories" in both
    assert sorted(map(sorted, groups(both))) == [sorted([ORIGINAL, REWRITE, OTHER]), ["storm.txt"]]
    flat = " ".join(both.split())  # Rich wraps the long headline
    assert f"(story {files['storm.txt'][1]})" in flat and f"(story {files[ORIGINAL][1]})" in flat
    assert "rewrite duplicate" in both

    phrase = search(db, '"Cornwall on Thursday"')
    assert groups(phrase) == [["storm.txt"]]
    assert groups(search(db, '"Thursday Cornwall"')) == []  # the words, but not as that phrase
    negated = search(db, "Musk NOT Bloomberg")  # only the third seed names Walter Bloomberg
    assert sorted(groups(negated)[0]) == sorted([ORIGINAL, REWRITE]) and len(groups(negated)) == 1

    # The seed articles were published in 2023; the storm article, without a date, is seen now.
    assert groups(search(db, "Musk OR Cornwall", "--since", "7d")) == [["storm.txt"]]
    assert len(groups(search(db, "Musk OR Cornwall", "--since", "2023-11-01"))) == 2
    assert search(db, "Musk", "--since", "2024-01-01").strip() == "No article matches."
    assert search(db, "volcano").strip() == "No article matches."
    assert len(groups(search(db, "Musk OR Cornwall", "--limit", "1"))[0]) == 1

    meaning = search(db, "--semantic", "Hamas invited the owner of X to see the destruction in Gaza")
    found = groups(meaning)
    assert sorted(found[0]) == sorted([ORIGINAL, REWRITE, OTHER]) and "similarity" in meaning
    assert groups(search(db, "--semantic", "a storm cut the power in Cornwall"))[0] == ["storm.txt"]


@pytest.mark.slow
def test_the_search_index_is_rebuilt_when_deleted_or_damaged(db):
    index = Path(f"{db}.search")
    assert not index.exists()
    assert groups(search(db, "Cornwall")) == [["storm.txt"]]
    assert json.loads((index / "newswatch-search.json").read_text())["documents"] == 4

    shutil.rmtree(index)
    assert groups(search(db, "Cornwall")) == [["storm.txt"]] and index.is_dir()

    (index / "newswatch-search.json").write_text("{not json", encoding="utf-8")
    assert groups(search(db, "Cornwall")) == [["storm.txt"]]
    assert json.loads((index / "newswatch-search.json").read_text())["documents"] == 4

    (index / "meta.json").unlink()
    assert groups(search(db, "Cornwall")) == [["storm.txt"]]

    for segment in index.iterdir():  # every byte of tantivy's segment files flipped
        if segment.suffix in (".idx", ".term", ".store", ".pos", ".fast", ".fieldnorm"):
            segment.write_bytes(bytes(byte ^ 0x5A for byte in segment.read_bytes()))
    assert groups(search(db, "Cornwall")) == [["storm.txt"]]

    # An index that disagrees with the warehouse (it holds an article the warehouse does not).
    with open_warehouse(db) as connection:
        connection.execute("DELETE FROM articles WHERE url LIKE '%storm.txt'")
    assert search(db, "Cornwall").strip() == "No article matches."
    assert json.loads((index / "newswatch-search.json").read_text())["documents"] == 3


@pytest.mark.slow
def test_a_foreign_folder_where_the_index_belongs_is_reported_and_left_alone(db):
    folder = Path(f"{db}.search")
    folder.mkdir()
    (folder / "notes.txt").write_text("mine", encoding="utf-8")
    for args in (("search", "Musk"), ("test-watch", "musk-gaza")):
        result = newswatch(*args, "--db", str(db))
        assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr, result.stderr
        assert result.stderr.strip().splitlines()[-1] == (
            f"newswatch: error: {folder} is not a search index folder, so it was not removed")
    assert [path.name for path in folder.iterdir()] == ["notes.txt"]
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "mine"


@pytest.mark.slow  # a feed run on the module's Prefect server, newswatch processes
def test_the_search_index_follows_texts_changed_by_reextract(tmp_path, seed_site, prefect_server):
    from flows.ingest import ingest_feeds
    from warehouse.feeds import add_feed

    db = tmp_path / "feeds.duckdb"
    with open_warehouse(db) as connection:
        add_feed(connection, f"{seed_site.base_url}/feed.xml", "Local", datetime.now(UTC))
    summary = ingest_feeds(db, Settings(allow_private_networks=True))
    assert summary.new_articles == 4  # the three pages, and the gone page's entry from its summary
    assert search(db, "zanzibarquux").strip() == "No article matches."
    assert Path(f"{db}.search").is_dir()

    # The page of the third seed now says something new (as a better extractor would find).
    with open_warehouse(db) as connection:
        (article_id, page), = connection.execute(
            "SELECT p.article_id, p.html_zlib FROM pages p JOIN articles a USING (article_id) WHERE a.url LIKE ?",
            [f"%/a/{OTHER}%"],
        ).fetchall()
        html = zlib.decompress(page).decode("utf-8").replace(
            "</article>", "<p>The zanzibarquux committee met in Geneva on Friday to discuss the invitation.</p></article>")
        connection.execute("UPDATE pages SET html_zlib = ? WHERE article_id = ?", [zlib.compress(html.encode()), article_id])
    reextracted = ok(newswatch("reextract", "--all", "--db", str(db)))
    assert "1 texts changed" in reextracted
    assert not Path(f"{db}.search").exists()  # discarded by the re-extraction
    found = search(db, "zanzibarquux")
    assert "1 articles in 1 stories" in found and f"/a/{OTHER}" in found


# ---------------------------------------------------------------------------------------------
# Digests


@pytest.mark.slow
def test_digest_in_every_format_to_a_file_for_a_watch_and_to_a_receiver(db, tmp_path, webhook):
    files = ids_by_file(db)
    seed_story, storm_story = files[ORIGINAL][1], files["storm.txt"][1]

    markdown = ok(newswatch("digest", "--since", "2023-11-01", "--db", str(db)))
    assert markdown.startswith("#") and "Cornwall" in markdown and "Elon Musk" in markdown
    recent = json.loads(ok(newswatch("digest", "--format", "json", "--db", str(db))))  # the last 24 hours
    assert [story["story_id"] for story in recent["stories"]] == [storm_story]

    data = json.loads(ok(newswatch("digest", "--since", "2023-11-01", "--format", "json", "--db", str(db))))
    assert {story["story_id"] for story in data["stories"]} == {seed_story, storm_story}
    seed = next(story for story in data["stories"] if story["story_id"] == seed_story)
    assert (seed["article_count"], seed["duplicate_count"], seed["source_count"]) == (3, 1, 1)
    assert len(seed["articles"]) == 2  # the originals; the rewrite is counted, not listed

    watched = json.loads(ok(newswatch("digest", "--since", "2023-11-01", "--watch", "musk-gaza", "--format", "json",
                                      "--db", str(db))))
    assert [story["story_id"] for story in watched["stories"]] == [seed_story]
    assert watched["watch"] == "musk-gaza" and "musk-gaza" in watched["title"]
    quiet = json.loads(ok(newswatch("digest", "--since", "2023-11-01", "--watch", "3", "--format", "json", "--db", str(db))))
    assert quiet["stories"] == []

    page = tmp_path / "digest.html"
    wrote = ok(newswatch("digest", "--since", "2023-11-01", "--format", "html", "-o", str(page), "--db", str(db)))
    assert "wrote a digest of 2 stories to" in wrote
    document = page.read_text(encoding="utf-8")
    assert document.startswith("<!DOCTYPE html>") and "Cornwall" in document

    result = newswatch("digest", "--since", "2023-11-01", "--watch", "musk-gaza", "--notify", webhook.json_url("/digest"),
                       "--db", str(db))
    ok(result)
    assert f"sent the digest to {webhook.json_url('/digest')}" in result.stderr
    (request,) = webhook.received
    sent = request.json()["newswatch"]
    assert request.path == "/digest" and sent["kind"] == "digest"
    assert [story["story_id"] for story in sent["stories"]] == [seed_story]

    webhook.fail_next(1, status=500)
    failed = newswatch("digest", "--notify", webhook.json_url("/digest"), "--db", str(db))
    assert failed.returncode == 1 and "the digest was not sent to" in failed.stderr and "Traceback" not in failed.stderr


def test_since_is_a_duration_back_from_now_or_an_iso_date():
    from flows.digest import PeriodError, parse_since

    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert parse_since("30m", now) == datetime(2026, 3, 2, 11, 30, tzinfo=UTC)
    assert parse_since(" 24H ", now) == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_since("1.5d", now) == datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
    assert parse_since("2w", now) == datetime(2026, 2, 16, 12, 0, tzinfo=UTC)
    assert parse_since("2023-11-01", now) == datetime(2023, 11, 1, tzinfo=UTC)
    assert parse_since("2023-11-01T10:00+02:00", now) == datetime(2023, 11, 1, 8, 0, tzinfo=UTC)
    for text in ("yesterday", "7 days", "-1d", "1e400d", "", "99999999d"):
        with pytest.raises(PeriodError, match="--since"):
            parse_since(text, now)


def test_the_digest_deployment_exists_only_with_a_target(tmp_path, monkeypatch):
    from flows.deployments import DIGEST_DEPLOYMENT, build_deployments

    for name in ("NEWSWATCH_DIGEST_NOTIFY", "NEWSWATCH_DIGEST_DIR"):
        monkeypatch.delenv(name, raising=False)
    db = tmp_path / "nw.duckdb"
    assert [d.name for d in build_deployments(db, Settings())] == ["scheduled-ingest", "daily-maintenance"]

    monkeypatch.setenv("NEWSWATCH_DIGEST_NOTIFY", "json://hooks.example.org/digest mailto://desk@example.org")
    with_notify = {d.name: d for d in build_deployments(db, Settings())}
    assert list(with_notify) == ["scheduled-ingest", "daily-maintenance", DIGEST_DEPLOYMENT]
    digest = with_notify[DIGEST_DEPLOYMENT]
    assert digest.entrypoint == "flows.digest.daily_digest" and digest.parameters == {"db": str(db)}
    assert digest.schedules[0].schedule.cron == Settings().digest_cron

    monkeypatch.delenv("NEWSWATCH_DIGEST_NOTIFY")
    monkeypatch.setenv("NEWSWATCH_DIGEST_DIR", str(tmp_path / "digests"))
    assert DIGEST_DEPLOYMENT in [d.name for d in build_deployments(db, Settings())]


@pytest.mark.slow
def test_the_daily_digest_flow_writes_files_sends_and_publishes_an_artifact(seeded, tmp_path, webhook, prefect_server):
    import httpx
    from prefect.settings import PREFECT_API_URL

    from flows.digest import daily_digest

    started = datetime.now(UTC)
    closed = closed_port()
    folder = tmp_path / "digests"
    settings = Settings(digest_dir=folder, allow_private_networks=True, digest_hours=24 * 365 * 20,
                        digest_notify=[f"json://127.0.0.1:{closed}/down", webhook.json_url("/daily")])
    summary = daily_digest(seeded, settings)
    assert summary.startswith("digest of 2 stories to ") and webhook.json_url("/daily") in summary
    assert "/down" not in summary  # the failing destination is logged, and does not fail the run
    written = sorted(path.suffix for path in folder.iterdir())
    assert written == [".html", ".json", ".md"]
    by_suffix = {path.suffix: path.read_text(encoding="utf-8") for path in folder.iterdir()}
    assert "Cornwall" in by_suffix[".md"] and by_suffix[".html"].startswith("<!DOCTYPE html>")
    assert len(json.loads(by_suffix[".json"])["stories"]) == 2
    (request,) = webhook.received
    assert request.json()["newswatch"]["kind"] == "digest" and len(request.json()["newswatch"]["stories"]) == 2
    # Over the REST API: this Prefect's client sends nulls its server refuses for artifact filters.
    response = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", timeout=30, json={
        "artifacts": {"key": {"any_": ["digest"]}}, "limit": 10, "offset": 0, "sort": "CREATED_DESC",
    })
    response.raise_for_status()
    # This run's: the Prefect server may be shared with earlier tests of this process.
    (artifact,) = [item for item in response.json() if datetime.fromisoformat(item["created"]) >= started]
    assert artifact["type"] == "markdown" and artifact["flow_run_id"]
    assert "Cornwall" in artifact["data"] and "Elon Musk" in artifact["data"]
