"""A run with nothing new finishes without a flow or the model, and still does a run's chores."""

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flows.idle import idle_feed_run, idle_fixture_run
from flows.polling import take_feed_answers
from flows.settings import Settings
from tests.receivers import make_webhook_fixture
from tests.seed_site import ORIGINAL, OTHER, REWRITE
from warehouse.connection import open_warehouse
from warehouse.feeds import add_feed
from warehouse.sql import execute

ROOT = Path(__file__).parent.parent
webhook = make_webhook_fixture()


def newswatch(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=600, cwd=ROOT, check=False,
        # On Prefect's temporary server (not the tests' shared one): whether a run starts it is what is tested.
        env={**os.environ, "NEWSWATCH_ALLOW_PRIVATE_NETWORKS": "1", "PREFECT_API_URL": "", **(env or {})},
    )


def feed_id_of(db: Path) -> str:
    with open_warehouse(db, read_only=True) as connection:
        return execute(connection, "SELECT feed_id FROM feeds")[0][0]


def last_run(query, db: Path) -> tuple:
    return query(db, "SELECT run_id, status, new_articles, message FROM runs ORDER BY started_at DESC LIMIT 1")[0]


def test_a_rerun_of_stored_files_is_idle_and_a_new_file_is_not(tmp_path, seeds_copy, query, webhook):
    db, folder = tmp_path / "nw.duckdb", seeds_copy(ORIGINAL, REWRITE)
    added = newswatch("add-watch", "gaza", "--query", "Gaza", "--notify", webhook.json_url(), "--db", str(db))
    assert added.returncode == 0, added.stderr
    webhook.fail_next(1)  # the first run's alert fails: a later run delivers it
    first = newswatch("run", "--fixtures", str(folder), "--db", str(db), env={"NEWSWATCH_ALERT_RETRY_SECONDS": "0.001"})
    assert first.returncode == 0, first.stderr
    assert "new articles 2 (1 duplicates)" in first.stdout and "1 not delivered" in first.stdout
    assert "temporary server" in first.stderr  # the flow ran on Prefect's temporary server
    articles = query(db, "SELECT article_id, story_id, duplicate_of FROM articles ORDER BY article_id")
    shutil.rmtree(db.with_name(db.name + ".search"))  # derived data a run brings back

    again = newswatch("run", "--fixtures", str(folder), "--db", str(db), env={"NEWSWATCH_ALERT_RETRY_SECONDS": "0.001"})
    assert again.returncode == 0, again.stderr
    assert "read 2 files, skipped 0, already stored 2, new articles 0 (0 duplicates), new stories 0" in again.stdout
    assert "alerts: 0 new, 1 delivered, 0 not delivered" in again.stdout
    assert "temporary server" not in again.stderr and "Traceback" not in again.stderr
    assert [request.path for request in webhook.received] == ["/hook", "/hook"]
    assert query(db, "SELECT status FROM alert_deliveries") == [("delivered",)]
    assert query(db, "SELECT article_id, story_id, duplicate_of FROM articles ORDER BY article_id") == articles
    run_id, status, new, message = last_run(query, db)
    assert (status, new, message) == ("completed", 0, "nothing new: all 2 files already stored")
    assert run_id.startswith("local-")
    found = newswatch("search", "Gaza", "--db", str(db))
    assert found.returncode == 0 and "Musk" in found.stdout, found.stderr

    shutil.copy(ROOT / "tests" / "fixtures" / "seeds" / OTHER, folder / OTHER)  # one new file: the flow runs
    third = newswatch("run", "--fixtures", str(folder), "--db", str(db))
    assert third.returncode == 0, third.stderr
    assert "already stored 2, new articles 1" in third.stdout and "temporary server" in third.stderr
    assert last_run(query, db)[1:] == ("completed", 1, None)


def test_which_folders_are_idle(tmp_path, seeds_copy):
    db = tmp_path / "nw.duckdb"
    folder = seeds_copy(ORIGINAL)
    settings = Settings(db=db)
    assert idle_fixture_run(folder, settings) is None  # no database yet
    with open_warehouse(db) as connection:
        execute(connection, "INSERT INTO articles (article_id, url, canonical_url, title, text, text_hash, story_id, "
                "source, ingested_at) VALUES ('a', ?, ?, 't', 'x', 'h', 's', 'fixtures', now())",
                [(folder / ORIGINAL).resolve().as_uri()] * 2)
    idle = idle_fixture_run(folder, settings)
    assert (idle.flow_name, idle.read, idle.reason) == ("ingest-fixtures", 1, "all 1 files already stored")
    (folder / "notes.md").write_text("not an article")  # the flow would skip it, and says so: not idle
    assert idle_fixture_run(folder, settings) is None
    (folder / "notes.md").unlink()
    outside = tmp_path / "outside.txt"
    outside.write_text("Elsewhere. " * 50)
    (folder / "link.txt").symlink_to(outside)  # a link out of the folder: the flow refuses it, and says so
    assert idle_fixture_run(folder, settings) is None
    (folder / "link.txt").unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert idle_fixture_run(empty, settings) is None  # nothing to read: the flow says so


def test_no_feed_due_is_idle(tmp_path):
    db = tmp_path / "nw.duckdb"
    settings = Settings(db=db)
    assert idle_feed_run(settings) is None
    now = datetime.now(UTC)
    with open_warehouse(db) as connection:
        add_feed(connection, "http://127.0.0.1:9/feed.xml", None, now)
    assert idle_feed_run(settings, now) is None  # a new feed is due at once, and its answer is no 304
    assert list(take_feed_answers()) == [feed_id_of(db)]  # kept for the flow's poll, which takes it
    assert take_feed_answers() == {}
    with open_warehouse(db) as connection:
        execute(connection, "UPDATE feeds SET next_due_at = ?", [now + timedelta(minutes=30)])
    idle = idle_feed_run(settings, now)
    assert (idle.flow_name, idle.read, idle.reason) == ("ingest-feeds", 0, "no feed due")
    assert idle_feed_run(settings, now + timedelta(minutes=31)) is None


def test_a_feed_run_with_no_feed_due_says_so(tmp_path, query):
    db = tmp_path / "nw.duckdb"
    now = datetime.now(UTC)
    with open_warehouse(db) as connection:
        add_feed(connection, "http://127.0.0.1:9/feed.xml", None, now)
        execute(connection, "UPDATE feeds SET next_due_at = ?", [now + timedelta(hours=1)])
    result = newswatch("run", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert "polled 0 feeds (0 not modified), 0 fetch failures" in result.stdout
    assert "nothing new: no feed due" in result.stdout and "temporary server" not in result.stderr
    assert last_run(query, db)[1:] == ("completed", 0, "nothing new: no feed due")


def test_due_feeds_that_all_answer_304_are_idle_and_a_changed_one_is_asked_once(tmp_path, query, seed_site):
    db = tmp_path / "nw.duckdb"
    added = newswatch("add-feed", seed_site.url("/feed.xml"), "--db", str(db))
    assert added.returncode == 0, added.stderr
    first = newswatch("run", "--db", str(db))
    assert first.returncode == 0, first.stderr
    assert "fetched 4 new entries, new articles 4" in first.stdout
    feeds_asked = seed_site.paths_seen().count("/feed.xml")

    def make_due(etag_kept: bool = True) -> None:
        with open_warehouse(db) as connection:
            execute(connection, "UPDATE feeds SET next_due_at = now()" + ("" if etag_kept else ", etag = NULL"))

    make_due()
    unchanged = newswatch("run", "--db", str(db))
    assert unchanged.returncode == 0, unchanged.stderr
    assert "polled 1 feeds (1 not modified), 0 fetch failures" in unchanged.stdout
    assert "nothing new: all 1 due feeds unchanged (304)" in unchanged.stdout
    assert "temporary server" not in unchanged.stderr
    assert seed_site.paths_seen().count("/feed.xml") == feeds_asked + 1
    ((status, next_due_later, etag),) = query(db, "SELECT last_status, next_due_at > now() + INTERVAL 5 MINUTE, etag FROM feeds")
    assert (status, next_due_later, etag) == (304, True, '"v1"')  # recorded as a poll records it
    assert last_run(query, db)[1:] == ("completed", 0, "nothing new: all 1 due feeds unchanged (304)")

    make_due(etag_kept=False)  # asked without its validator, the feed answers 200: the flow runs
    changed = newswatch("run", "--db", str(db))
    assert changed.returncode == 0, changed.stderr
    assert "polled 1 feeds (0 not modified)" in changed.stdout and "fetched 0 new entries" in changed.stdout
    assert "temporary server" in changed.stderr
    assert seed_site.paths_seen().count("/feed.xml") == feeds_asked + 2  # the flow took the answer, not asked again
    assert query(db, "SELECT count(*), max(etag) FROM feeds WHERE next_due_at > now()") == [(1, '"v1"')]
