"""Watches and alerts: decided exactly once with the load, delivered after the run, retried, never leaking secrets.

The first part drives `flows.alerts.record_alerts` (the rule of `monitoring.policy` between the
reads and writes of `warehouse.watches`) directly on warehouses built from `warehouse.load` rows
(fast; the rule alone is tested in tests/test_policy.py). The rest runs the ingest flows on the seed articles (a Prefect test server for the
module) and delivers to real receivers on 127.0.0.1 (`tests/receivers.py`).
"""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.alerts import WatchEvaluation, record_alerts
from flows.settings import Settings
from monitoring.policy import alert_id_for
from tests.http_server import closed_port
from tests.receivers import make_smtp_fixture, make_webhook_fixture
from tests.seed_site import ORIGINAL, OTHER, REWRITE, SEEDS
from warehouse.connection import open_warehouse
from warehouse.load import ArticleRow, LoadBatch, load_batch
from warehouse.sql import transaction
from warehouse.watches import (
    ArticleMatch, DeliveryAttempt, add_watch, due_deliveries, record_delivery_attempts, remove_watch, retry_delay,
)

REPO = Path(__file__).parent.parent

webhook = make_webhook_fixture()
other_webhook = make_webhook_fixture(name="other_webhook")
smtp = make_smtp_fixture()

DAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# record_alerts on rows loaded with warehouse.load (no Prefect, no model)


def article(article_id: str, story_id: str, at: datetime, *, site: str = "example.com", duplicate_of: str | None = None,
            kind: str | None = None, title: str | None = None) -> ArticleRow:
    url = f"https://{site}/{article_id}"
    return ArticleRow(
        article_id=article_id, url=url, canonical_url=url, title=title or f"Article {article_id}", published_at=at,
        ingested_at=at, text=f"text of {article_id}", text_hash=f"hash-{article_id}", author=None, language="en",
        site_name=site, source="feeds", duplicate_of=duplicate_of, duplicate_kind=kind,
        duplicate_similarity=0.97 if duplicate_of else None, story_id=story_id, story_similarity=None,
    )


def new_watch(connection, name: str, *, urls=(), min_articles: int = 1, min_sources: int = 1) -> int:
    with transaction(connection):
        return add_watch(
            connection, name, query="storm", like_text=None, like_vector=None, like_model=None,
            min_articles=min_articles, min_sources=min_sources, notify_urls=list(urls), now=DAY,
        )


def load(connection, rows: list[ArticleRow], matches: list[tuple[int, str]], factor: float = 2.0):
    """Load rows; `matches` are (watch_id, article_id) pairs the watches matched."""
    story_of = {row.article_id: row.story_id for row in rows}
    evaluation = WatchEvaluation([ArticleMatch(w, a, story_of[a]) for w, a in matches], factor)
    return load_batch(connection, LoadBatch(articles=rows, watches=evaluation))


def rows_of(connection, sql: str, parameters=None) -> list[tuple]:
    return connection.execute(sql, parameters or []).fetchall()


@pytest.fixture
def warehouse(tmp_path):
    with open_warehouse(tmp_path / "w.duckdb") as connection:
        yield connection


def test_a_watch_alerts_once_per_story_with_one_pending_delivery_per_url(warehouse):
    first = new_watch(warehouse, "one", urls=["json://a.example/hook", "json://b.example/hook", "json://a.example/hook"])
    second = new_watch(warehouse, "two")
    rows = [article("a1", "s1", DAY), article("a2", "s1", DAY, site="wire.example"), article("b1", "s2", DAY)]
    result = load(warehouse, rows, [(first, "a1"), (first, "a2"), (second, "a2")])

    assert result.alerts == 2
    assert rows_of(warehouse, "SELECT alert_id, watch_id, story_id, kind, article_count, source_count FROM alerts ORDER BY watch_id") == [
        (alert_id_for(first, "s1", "new"), first, "s1", "new", 2, 2),
        (alert_id_for(second, "s1", "new"), second, "s1", "new", 2, 2),
    ]
    # The watch without URLs alerts too (stored only); the repeated URL gets one delivery.
    assert rows_of(warehouse, "SELECT alert_id, url, status, attempts FROM alert_deliveries ORDER BY url") == [
        (alert_id_for(first, "s1", "new"), "json://a.example/hook", "pending", 0),
        (alert_id_for(first, "s1", "new"), "json://b.example/hook", "pending", 0),
    ]
    assert rows_of(warehouse, "SELECT watch_id, story_id, matched_articles FROM watch_matches ORDER BY watch_id") == [
        (first, "s1", 2), (second, "s1", 1),
    ]
    payload = json.loads(rows_of(warehouse, "SELECT payload FROM alerts WHERE watch_id = ?", [first])[0][0])
    assert payload["alert_id"] == alert_id_for(first, "s1", "new")
    assert payload["watch"] == {"id": first, "name": "one", "query": "storm"}
    assert payload["story"]["sources"] == ["example.com", "wire.example"]

    # The same batch again stores nothing and decides nothing; so does deciding again directly.
    assert load(warehouse, rows, [(first, "a1"), (first, "a2"), (second, "a2")]).alerts == 0
    with transaction(warehouse):
        assert record_alerts(warehouse, [], ["s1", "s2"], DAY + timedelta(minutes=5), 2.0) == []
    assert rows_of(warehouse, "SELECT count(*) FROM alerts")[0][0] == 2
    assert rows_of(warehouse, "SELECT count(*) FROM alert_deliveries")[0][0] == 2


def test_the_payload_folds_duplicates_under_their_original(warehouse):
    watch = new_watch(warehouse, "w")
    rows = [
        article("orig", "s1", DAY, title="Storm hits the coast"),
        article("copy", "s1", DAY + timedelta(minutes=1), site="wire.example", duplicate_of="orig", kind="rewrite",
                title="Coast hit by storm"),
        article("other", "s1", DAY + timedelta(minutes=2), site="daily.example", title="Storm: the day after"),
    ]
    load(warehouse, rows, [(watch, "orig")])
    payload = json.loads(rows_of(warehouse, "SELECT payload FROM alerts")[0][0])
    assert payload["story"]["article_count"] == 3 and payload["story"]["duplicate_count"] == 1
    assert payload["story"]["headline"] == "Storm hits the coast"
    listed = {item["article_id"]: item for item in payload["articles"]}
    assert set(listed) == {"orig", "other"}  # the copy is not listed on its own
    assert listed["orig"]["duplicates"] == [
        {"title": "Coast hit by storm", "url": "https://wire.example/copy", "source": "wire.example", "kind": "rewrite"}
    ]
    assert listed["other"]["duplicates"] == []
    assert payload["articles_not_listed"] == 0


def test_a_story_alerts_again_as_developing_once_it_doubled_and_at_most_once_a_day(warehouse):
    watch = new_watch(warehouse, "w", urls=["json://a.example/hook"])
    load(warehouse, [article("a1", "s1", DAY), article("a2", "s1", DAY)], [(watch, "a1")])
    assert rows_of(warehouse, "SELECT kind, article_count FROM alerts") == [("new", 2)]

    # Articles that join the story count even when the watch does not match them itself.
    later = DAY + timedelta(hours=1)
    assert load(warehouse, [article("a3", "s1", later)], []).alerts == 0  # 3 < 2 × 2
    assert load(warehouse, [article("a4", "s1", later + timedelta(minutes=1))], []).alerts == 1  # 4 = 2 × 2
    developing = alert_id_for(watch, "s1", "developing", f"{later:%Y-%m-%d}")
    assert rows_of(warehouse, "SELECT alert_id, kind, article_count FROM alerts WHERE kind = 'developing'") == [
        (developing, "developing", 4)
    ]
    assert rows_of(warehouse, "SELECT status FROM alert_deliveries WHERE alert_id = ?", [developing]) == [("pending",)]

    # Doubled again the same day: no second developing alert.
    same_day = [article(f"b{i}", "s1", later + timedelta(minutes=10 + i)) for i in range(4)]
    assert load(warehouse, same_day, []).alerts == 0  # 8 = 2 × 4, but it developed today
    # The next day, grown past twice the size it last alerted at: one more.
    next_day = DAY + timedelta(days=1)
    assert load(warehouse, [article("c1", "s1", next_day)], []).alerts == 1
    assert rows_of(warehouse, "SELECT alert_id, article_count FROM alerts WHERE created_at = ?", [next_day]) == [
        (alert_id_for(watch, "s1", "developing", f"{next_day:%Y-%m-%d}"), 9)
    ]
    # Another story growing does not touch this one's alerts.
    assert load(warehouse, [article("z1", "s9", next_day + timedelta(minutes=1))], []).alerts == 0
    assert rows_of(warehouse, "SELECT count(*) FROM alerts")[0][0] == 3


def test_min_articles_and_min_sources_hold_the_alert_until_the_story_is_big_enough(warehouse):
    watch = new_watch(warehouse, "big", min_articles=3, min_sources=2)
    assert load(warehouse, [article("a1", "s1", DAY), article("a2", "s1", DAY)], [(watch, "a1"), (watch, "a2")]).alerts == 0
    assert load(warehouse, [article("a3", "s1", DAY + timedelta(minutes=1))], [(watch, "a3")]).alerts == 0  # 3 articles, 1 source
    assert rows_of(warehouse, "SELECT count(*) FROM alerts")[0][0] == 0
    # The second source arrives with an article the watch does not match: the story did match before.
    at = DAY + timedelta(minutes=2)
    assert load(warehouse, [article("a4", "s1", at, site="wire.example")], []).alerts == 1
    assert rows_of(warehouse, "SELECT kind, article_count, source_count, created_at FROM alerts") == [("new", 4, 2, at)]


def test_a_removed_watch_leaves_nothing_pending(warehouse):
    watch = new_watch(warehouse, "gone", urls=["json://a.example/hook"])
    kept = new_watch(warehouse, "kept", urls=["json://b.example/hook"])
    load(warehouse, [article("a1", "s1", DAY)], [(watch, "a1"), (kept, "a1")])
    assert len(due_deliveries(warehouse, DAY)) == 2
    (alert_id,), = rows_of(warehouse, "SELECT alert_id FROM alerts WHERE watch_id = ?", [watch])

    with transaction(warehouse):
        remove_watch(warehouse, watch)
    for table in ("watches", "watch_matches", "alerts"):
        assert rows_of(warehouse, f"SELECT count(*) FROM {table} WHERE watch_id = ?", [watch]) == [(0,)], table
    assert [d.url for d in due_deliveries(warehouse, DAY)] == ["json://b.example/hook"]

    # A run that matched before the watch was removed loads after: nothing comes back for it.
    at = DAY + timedelta(minutes=5)
    load(warehouse, [article("x1", "s2", at), article("x2", "s2", at)], [(watch, "x1"), (kept, "x2")])
    assert rows_of(warehouse, "SELECT watch_id FROM alerts ORDER BY story_id") == [(kept,), (kept,)]
    assert rows_of(warehouse, "SELECT count(*) FROM watch_matches WHERE watch_id = ?", [watch]) == [(0,)]
    assert {d.url for d in due_deliveries(warehouse, at)} == {"json://b.example/hook"}
    # An attempt that was under way when the watch went is dropped, not resurrected.
    with transaction(warehouse):
        record_delivery_attempts(warehouse, [DeliveryAttempt(alert_id, "json://a.example/hook", True, None, at)],
                                 first_retry=1, max_retry=10, max_attempts=3)
    assert rows_of(warehouse, "SELECT count(*) FROM alert_deliveries WHERE alert_id = ?", [alert_id]) == [(0,)]


def test_retry_delay_doubles_from_the_first_delay_up_to_the_cap():
    assert [retry_delay(n, 60, 3600).total_seconds() for n in range(1, 9)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert retry_delay(0, 60, 3600) == timedelta(seconds=60)
    assert retry_delay(3, 0.001, 3600) == timedelta(seconds=0.004)


def test_failed_attempts_back_off_then_give_up_after_the_last_attempt(warehouse):
    watch = new_watch(warehouse, "w", urls=["json://a.example/hook", "json://b.example/hook"])
    load(warehouse, [article("a1", "s1", DAY)], [(watch, "a1")])
    (alert_id,), = rows_of(warehouse, "SELECT alert_id FROM alerts")
    a, b = "json://a.example/hook", "json://b.example/hook"
    settings = dict(first_retry=10, max_retry=25, max_attempts=4)

    def attempt(url, ok, at, error="HTTP 500"):
        with transaction(warehouse):
            record_delivery_attempts(warehouse, [DeliveryAttempt(alert_id, url, ok, None if ok else error, at)], **settings)
        return rows_of(warehouse, "SELECT status, attempts, next_attempt_at, last_error, delivered_at FROM alert_deliveries"
                                  " WHERE url = ?", [url])[0]

    t1 = DAY + timedelta(minutes=1)
    assert attempt(a, False, t1) == ("pending", 1, t1 + timedelta(seconds=10), "HTTP 500", None)
    assert [d.url for d in due_deliveries(warehouse, t1 + timedelta(seconds=9))] == [b]  # a waits its delay
    t2 = t1 + timedelta(seconds=10)
    assert attempt(a, False, t2) == ("pending", 2, t2 + timedelta(seconds=20), "HTTP 500", None)
    t3 = t2 + timedelta(seconds=20)
    assert attempt(a, False, t3) == ("pending", 3, t3 + timedelta(seconds=25), "HTTP 500", None)  # capped
    t4 = t3 + timedelta(seconds=25)
    assert attempt(a, False, t4, "timed out") == ("failed", 4, None, "timed out", None)
    assert [d.url for d in due_deliveries(warehouse, t4 + timedelta(days=30))] == [b]  # a is never tried again

    t5 = t4 + timedelta(seconds=1)
    assert attempt(b, True, t5) == ("delivered", 1, None, None, t5)
    assert due_deliveries(warehouse, t5 + timedelta(days=30)) == []


# ---------------------------------------------------------------------------------------------
# Through the ingest flows, delivered to receivers on 127.0.0.1

flow_test = pytest.mark.usefixtures("prefect_server")


def settings_for(**overrides) -> Settings:
    return Settings(**{"allow_private_networks": True, "alert_retry_seconds": 0.001, **overrides})


def watch_for(db: Path, name: str, *, query: str | None = None, like: str | None = None, urls=(), min_articles: int = 1,
              min_sources: int = 1, settings: Settings | None = None) -> int:
    """Store a watch as `newswatch add-watch` does (a `--like` description embedded with the pipeline's model)."""
    from flows.embedding import embedding_model_key, get_embedder

    settings = settings or settings_for()
    vector = get_embedder(settings).embed([like])[0][0] if like is not None else None
    with open_warehouse(db) as connection, transaction(connection):
        return add_watch(
            connection, name, query=query, like_text=like, like_vector=vector,
            like_model=embedding_model_key(settings) if like is not None else None,
            min_articles=min_articles, min_sources=min_sources, notify_urls=list(urls), now=datetime.now(UTC),
        )


def ingest(folder: Path, db: Path, settings: Settings | None = None):
    from flows.ingest import ingest_fixtures

    return ingest_fixtures(folder, db, settings or settings_for())


def seed_html(folder: Path, seed: str, *, site: str, name: str | None = None, title: str | None = None) -> Path:
    """A seed article as an HTML file of the site `site` (its og:site_name), so sources differ."""
    import html

    body = (SEEDS / seed).read_text(encoding="utf-8").split(" ", 3)[-1]
    paragraphs = "".join(f"<p>{html.escape(p.strip())}</p>" for p in body.split("\n") if p.strip())
    heading = html.escape(title or body.split("\n")[0][:80])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or seed.replace(".txt", ".html"))
    path.write_text(
        f"<!doctype html><html lang='en'><head><title>{heading}</title>"
        f"<meta property='og:site_name' content='{html.escape(site)}'>"
        "<meta property='article:published_time' content='2023-11-29T10:00:00Z'></head>"
        f"<body><article><h1>{heading}</h1>{paragraphs}</article></body></html>",
        encoding="utf-8",
    )
    return path


def payloads(receiver) -> list[dict]:
    return [request.json()["newswatch"] for request in receiver.received]


@flow_test
def test_query_and_like_watches_alert_once_for_the_seed_story_and_not_again_on_a_rerun(tmp_path, seeds_copy, webhook, query):
    db, folder = tmp_path / "nw.duckdb", seeds_copy(ORIGINAL, REWRITE, OTHER)
    by_query = watch_for(db, "musk-gaza", query='"Elon Musk" AND Gaza', urls=[webhook.json_url("/query")])
    by_meaning = watch_for(db, "invitation", like="Hamas invites Elon Musk to visit Gaza", urls=[webhook.json_url("/like")])

    summary = ingest(folder, db)
    assert (summary.new_articles, summary.duplicates, summary.new_stories) == (3, 1, 1)
    assert (summary.alerts, summary.delivered, summary.delivery_failures) == (2, 2, 0)
    assert sorted(request.path for request in webhook.received) == ["/like", "/query"]
    stored = dict(query(db, "SELECT watch_id, alert_id FROM alerts"))
    assert query(db, "SELECT DISTINCT story_id FROM alerts") == query(db, "SELECT DISTINCT story_id FROM articles")
    (story_id,), = query(db, "SELECT DISTINCT story_id FROM articles")
    ids = dict(query(db, "SELECT url, article_id FROM articles"))
    original, rewrite, other = (ids[(folder / name).as_uri()] for name in (ORIGINAL, REWRITE, OTHER))
    assert query(db, "SELECT article_id, duplicate_of, duplicate_kind FROM articles WHERE duplicate_of IS NOT NULL") == [
        (rewrite, original, "rewrite")
    ]
    for request in webhook.received:
        body = request.json()
        assert body["title"].startswith("newswatch · ") and "(3 articles, 1 source)" in body["title"]
        payload = body["newswatch"]
        watch_id = by_query if request.path == "/query" else by_meaning
        assert payload["alert_id"] == stored[watch_id] == alert_id_for(watch_id, story_id, "new")
        assert payload["kind"] == "new"
        assert payload["watch"] == ({"id": by_query, "name": "musk-gaza", "query": '"Elon Musk" AND Gaza'} if watch_id == by_query
                                    else {"id": by_meaning, "name": "invitation", "like": "Hamas invites Elon Musk to visit Gaza"})
        assert payload["story"]["story_id"] == story_id
        assert (payload["story"]["article_count"], payload["story"]["duplicate_count"], payload["story"]["source_count"]) == (3, 1, 1)
        articles = {item["article_id"]: item for item in payload["articles"]}
        assert set(articles) == {original, other}  # the rewrite is folded under its original
        assert [(d["url"], d["kind"]) for d in articles[original]["duplicates"]] == [((folder / REWRITE).as_uri(), "rewrite")]
        assert articles[other]["duplicates"] == []
        assert articles[original]["url"] == (folder / ORIGINAL).as_uri()
        assert articles[original]["published_at"].startswith("2023-11-29")
    assert query(db, "SELECT status, attempts, last_error FROM alert_deliveries") == [("delivered", 1, None)] * 2

    again = ingest(folder, db)
    assert (again.new_articles, again.alerts, again.delivered) == (0, 0, 0)
    assert len(webhook.received) == 2
    assert query(db, "SELECT count(*) FROM alerts") == [(2,)]


@flow_test
def test_articles_joining_the_story_alert_again_only_once_it_doubled_and_once_a_day(tmp_path, seeds_copy, webhook, query):
    db, folder = tmp_path / "nw.duckdb", seeds_copy(ORIGINAL, REWRITE)
    musk = watch_for(db, "musk", query="Musk AND Hamas", urls=[webhook.json_url()])
    assert ingest(folder, db).alerts == 1
    assert [(p["kind"], p["story"]["article_count"]) for p in payloads(webhook)] == [("new", 2)]

    shutil.copy(SEEDS / OTHER, folder / OTHER)  # joins the story: 3 articles, less than twice 2
    third = ingest(folder, db)
    assert (third.new_articles, third.new_stories, third.alerts) == (1, 0, 0)
    assert len(webhook.received) == 1

    shutil.copy(SEEDS / ORIGINAL, folder / "003_copy.txt")  # an exact copy: 4 articles, doubled
    fourth = ingest(folder, db)
    assert (fourth.new_articles, fourth.new_stories, fourth.alerts, fourth.delivered) == (1, 0, 1, 1)
    developing = payloads(webhook)[1]
    assert (developing["kind"], developing["story"]["article_count"]) == ("developing", 4)
    assert developing["alert_id"] == alert_id_for(musk, developing["story"]["story_id"], "developing", f"{datetime.now(UTC):%Y-%m-%d}")

    for number in range(4, 8):  # 8 articles: doubled again, but it developed today already
        shutil.copy(SEEDS / ORIGINAL, folder / f"00{number}_copy.txt")
    fifth = ingest(folder, db)
    assert (fifth.new_articles, fifth.alerts) == (4, 0)
    assert len(webhook.received) == 2
    assert query(db, "SELECT kind, article_count FROM alerts ORDER BY created_at") == [("new", 2), ("developing", 4)]


@flow_test
def test_min_articles_alerts_in_the_batch_that_reaches_the_size(tmp_path, seeds_copy, webhook, query):
    db, folder = tmp_path / "nw.duckdb", seeds_copy(ORIGINAL, REWRITE, OTHER)
    watch_for(db, "three", query="Gaza", min_articles=3, urls=[webhook.json_url()])
    summary = ingest(folder, db, settings_for(batch_size=1))  # one article per batch and transaction
    assert summary.alerts == 1
    (article_count, created_at), = query(db, "SELECT article_count, created_at FROM alerts")
    assert article_count == 3
    # Decided with the third batch: at its time, after the first two were stored.
    assert query(db, "SELECT max(ingested_at), count(DISTINCT ingested_at) FROM articles") == [(created_at, 3)]
    assert [p["story"]["article_count"] for p in payloads(webhook)] == [3]


@flow_test
def test_min_articles_and_min_sources_alert_in_the_run_that_reaches_them(tmp_path, seeds_copy, webhook, query):
    db, folder = tmp_path / "nw.duckdb", seeds_copy(ORIGINAL, REWRITE)
    watch_for(db, "three", query="Gaza", min_articles=3, urls=[webhook.json_url("/articles")])
    assert ingest(folder, db).alerts == 0
    assert webhook.received == [] and query(db, "SELECT count(*) FROM alerts") == [(0,)]
    shutil.copy(SEEDS / OTHER, folder / OTHER)
    assert ingest(folder, db).alerts == 1
    assert [(r.path, r.json()["newswatch"]["story"]["article_count"]) for r in webhook.received] == [("/articles", 3)]

    # Sources: two pages of one site, then one of another.
    db2, pages = tmp_path / "sources.duckdb", tmp_path / "pages"
    watch_for(db2, "two-sources", query="Gaza", min_sources=2, urls=[webhook.json_url("/sources")])
    seed_html(pages, ORIGINAL, site="Daily Planet")
    seed_html(pages, REWRITE, site="Daily Planet")
    first = ingest(pages, db2)
    assert (first.new_articles, first.new_stories, first.alerts) == (2, 1, 0)
    seed_html(pages, OTHER, site="Wire Service")
    second = ingest(pages, db2)
    assert (second.new_articles, second.new_stories, second.alerts, second.delivered) == (1, 0, 1, 1)
    story = webhook.received[-1].json()["newswatch"]["story"]
    assert (webhook.received[-1].path, story["source_count"], story["sources"]) == ("/sources", 2, ["Daily Planet", "Wire Service"])
    assert query(db2, "SELECT article_count, source_count FROM alerts") == [(3, 2)]


@flow_test
def test_a_receiver_failing_twice_gets_the_alert_on_the_third_attempt(tmp_path, seeds_copy, webhook, query):
    from flows.alerts import deliver_due_alerts

    db, folder = tmp_path / "nw.duckdb", seeds_copy(ORIGINAL, REWRITE, OTHER)
    watch_for(db, "musk", query="Musk", urls=[webhook.json_url()])
    settings = settings_for()
    webhook.fail_next(2, status=500)

    summary = ingest(folder, db, settings)  # the run's attempt: 500; the run itself completes
    assert (summary.alerts, summary.delivered, summary.delivery_failures) == (1, 0, 1)
    (status, attempts, error), = query(db, "SELECT status, attempts, last_error FROM alert_deliveries")
    assert (status, attempts) == ("pending", 1) and "500" in error
    time.sleep(0.01)
    assert deliver_due_alerts(db, settings).failed == 1  # second attempt: 500
    time.sleep(0.01)
    report = deliver_due_alerts(db, settings)  # third: 200
    assert (report.delivered, report.failed) == (1, 0)
    assert query(db, "SELECT status, attempts FROM alert_deliveries") == [("delivered", 3)]
    assert len({p["alert_id"] for p in payloads(webhook)}) == 1 and len(webhook.received) == 3
    time.sleep(0.01)
    assert deliver_due_alerts(db, settings).delivered == 0  # delivered once, never again
    assert len(webhook.received) == 3


@flow_test
def test_deliveries_back_off_and_are_marked_failed_after_the_last_attempt(tmp_path, seeds_copy, webhook, query):
    from flows.alerts import deliver_due_alerts

    db, folder = tmp_path / "nw.duckdb", seeds_copy(ORIGINAL)
    watch_for(db, "musk", query="Musk", urls=[webhook.json_url()])
    settings = settings_for(alert_retry_seconds=30, alert_retry_max_seconds=50, alert_max_attempts=3)
    webhook.fail_next(10, status=503)
    ingest(folder, db, settings)

    def delivery():
        return query(db, "SELECT status, attempts, last_attempt_at, next_attempt_at FROM alert_deliveries")[0]

    status, attempts, last, following = delivery()
    assert (status, attempts, following - last) == ("pending", 1, timedelta(seconds=30))
    assert deliver_due_alerts(db, settings).failed == 0  # not due yet: nothing is sent
    assert len(webhook.received) == 1
    assert deliver_due_alerts(db, settings, now=following + timedelta(seconds=1)).failed == 1
    status, attempts, last, following = delivery()
    assert (status, attempts, following - last) == ("pending", 2, timedelta(seconds=50))  # 60, capped at 50
    assert deliver_due_alerts(db, settings, now=following + timedelta(seconds=1)).failed == 1
    assert delivery()[:2] == ("failed", 3) and delivery()[3] is None
    assert deliver_due_alerts(db, settings, now=datetime.now(UTC) + timedelta(days=365)).failed == 0
    assert len(webhook.received) == 3
    (error,), = query(db, "SELECT last_error FROM alert_deliveries")
    assert "503" in error


@flow_test
def test_a_stalled_endpoint_neither_fails_the_run_nor_holds_up_a_healthy_one(tmp_path, seeds_copy, webhook, other_webhook, query):
    db, folder = tmp_path / "nw.duckdb", seeds_copy(ORIGINAL, REWRITE, OTHER)
    watch_for(db, "slow", query="Musk", urls=[other_webhook.json_url("/slow")])
    watch_for(db, "fast", query="Gaza", urls=[webhook.json_url("/fast")])
    other_webhook.stall_next(30)
    started = time.monotonic()
    summary = ingest(folder, db, settings_for(notify_timeout=1.5))
    assert (summary.alerts, summary.delivered, summary.delivery_failures) == (2, 1, 1)
    assert time.monotonic() - started < 25  # the stall cost about the timeout, not 30 s
    (fast,), (slow,) = webhook.received, other_webhook.received
    assert fast.path == "/fast" and slow.path == "/slow"
    assert fast.received_at - slow.received_at < 1.0  # sent beside the stalled one, not after its timeout
    rows = dict(query(db, "SELECT w.name, d.status || ' ' || d.attempts FROM alert_deliveries d JOIN alerts USING (alert_id)"
                          " JOIN watches w USING (watch_id)"))
    assert rows == {"fast": "delivered 1", "slow": "pending 1"}


@flow_test
def test_a_delivery_step_that_raises_leaves_the_alert_pending_for_the_next_run(tmp_path, seeds_copy, webhook, query, monkeypatch):
    import flows.alerts

    db, folder = tmp_path / "nw.duckdb", seeds_copy(ORIGINAL)
    watch_for(db, "musk", query="Musk", urls=[webhook.json_url()])

    def broken(*args, **kwargs):
        raise RuntimeError("delivery machinery broke")

    with monkeypatch.context() as patch:
        patch.setattr(flows.alerts, "deliver_due_alerts", broken)
        summary = ingest(folder, db)
    assert (summary.new_articles, summary.alerts, summary.delivered) == (1, 1, 0)
    assert query(db, "SELECT status, attempts FROM alert_deliveries") == [("pending", 0)]
    assert ingest(folder, db).delivered == 1
    assert len(webhook.received) == 1


@flow_test
def test_a_watch_that_matches_nothing_sends_nothing(tmp_path, seeds_copy, webhook, query):
    db, folder = tmp_path / "nw.duckdb", seeds_copy(ORIGINAL, REWRITE, OTHER)
    watch_for(db, "volcano", query="volcano AND Iceland", urls=[webhook.json_url("/q")])
    watch_for(db, "bread", like="A recipe for sourdough bread with a long cold fermentation", urls=[webhook.json_url("/l")])
    watch_for(db, "not-musk", query="Gaza NOT Musk", urls=[webhook.json_url("/n")])
    summary = ingest(folder, db)
    assert (summary.new_articles, summary.alerts, summary.delivered) == (3, 0, 0)
    assert webhook.received == []
    for table in ("alerts", "alert_deliveries", "watch_matches"):
        assert query(db, f"SELECT count(*) FROM {table}") == [(0,)], table


HOSTILE = '<script>alert("x")</script> Hamas & "Musk" <img src=x onerror=alert(1)>'


@flow_test
def test_an_email_alert_has_the_headline_as_subject_and_the_articles_escaped_in_html(tmp_path, smtp, query):
    db, pages = tmp_path / "nw.duckdb", tmp_path / "pages"
    seed_html(pages, ORIGINAL, site="Daily <b>Planet</b>", title=HOSTILE)
    seed_html(pages, OTHER, site="Wire", title="Musk declines the invitation to visit Gaza")
    watch_for(db, "mail <watch>", query="Musk", urls=[smtp.mailto_url(to="desk@example.com")])
    summary = ingest(pages, db)
    assert (summary.alerts, summary.delivered) == (1, 1)
    (message,) = smtp.wait_for(1)
    (headline,), = query(db, "SELECT headline FROM stories")
    assert headline == HOSTILE
    assert message["Subject"] == f"newswatch · mail <watch>: {HOSTILE} (2 articles, 2 sources)"
    assert smtp.envelopes[0][1] == ["desk@example.com"]
    html_part = message.get_body(preferencelist=("html",)).get_content()
    assert "<script>" not in html_part and "<img" not in html_part and "<b>Planet" not in html_part
    assert '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; Hamas &amp; &quot;Musk&quot; &lt;img src=x onerror=alert(1)&gt;' in html_part
    assert "Musk declines the invitation to visit Gaza" in html_part
    assert "Daily &lt;b&gt;Planet&lt;/b&gt;" in html_part and "mail &lt;watch&gt;" in html_part
    text_part = message.get_body(preferencelist=("plain",)).get_content()
    assert "Musk declines the invitation to visit Gaza" in text_part


KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path

import flows.alerts
from flows.processes import temporary_server_dies_with_this_process
from flows.settings import Settings


def killed(*args, **kwargs):
    sys.stdout.write("killing before delivery\\n")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


flows.alerts.deliver_due_alerts = killed
temporary_server_dies_with_this_process()
from flows.ingest import ingest_fixtures

ingest_fixtures(Path(sys.argv[1]), Path(sys.argv[2]), Settings(allow_private_networks=True))
print("not killed")
"""


def subprocess_env() -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env.update(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120", HF_HUB_OFFLINE="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONPATH=str(REPO), NEWSWATCH_ALLOW_PRIVATE_NETWORKS="1")
    return env


@flow_test
def test_a_run_killed_after_the_load_and_before_delivery_delivers_on_the_next_run(tmp_path, seeds_copy, webhook, query):
    db, folder = tmp_path / "nw.duckdb", seeds_copy(ORIGINAL, REWRITE, OTHER)
    watch_for(db, "musk", query="Musk", urls=[webhook.json_url()])
    script = tmp_path / "killed_run.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT), encoding="utf-8")
    result = subprocess.run([sys.executable, str(script), str(folder), str(db)], capture_output=True, text=True,
                            timeout=600, cwd=REPO, env=subprocess_env())
    assert result.returncode == -signal.SIGKILL, result.stdout + result.stderr
    assert "killing before delivery" in result.stdout and "not killed" not in result.stdout

    # The load committed the articles and the alert; nothing was sent.
    assert query(db, "SELECT count(*) FROM articles") == [(3,)]
    (alert_id,), = query(db, "SELECT alert_id FROM alerts")
    assert query(db, "SELECT alert_id, status, attempts FROM alert_deliveries") == [(alert_id, "pending", 0)]
    assert webhook.received == []

    resumed = ingest(folder, db)
    assert (resumed.new_articles, resumed.alerts, resumed.delivered) == (0, 0, 1)
    assert [p["alert_id"] for p in payloads(webhook)] == [alert_id]
    assert query(db, "SELECT status, attempts FROM alert_deliveries") == [("delivered", 1)]
    assert ingest(folder, db).delivered == 0
    assert len(webhook.received) == 1


class Recorder(logging.Handler):
    """Keeps every record of the loggers it is attached to, formatted (Prefect reconfigures the root logger)."""

    def __init__(self, *names: str):
        super().__init__(logging.DEBUG)
        self.names, self.lines, self.levels = names, [], {}

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.levelname} {self.format(record)}")

    def __enter__(self) -> "Recorder":
        for name in self.names:
            logger = logging.getLogger(name)
            self.levels[name] = logger.level
            logger.setLevel(logging.DEBUG)
            logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        for name in self.names:
            logging.getLogger(name).removeHandler(self)
            logging.getLogger(name).setLevel(self.levels[name])

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@flow_test
def test_the_failed_delivery_logs_and_stored_error_never_show_the_url_secrets(tmp_path, seeds_copy, webhook, query):
    from flows.alerts import deliver_due_alerts

    closed = closed_port()
    urls = [
        f"jsons://user:SeCrEt@127.0.0.1:{closed}/path?token=T0KEN",
        f"json://user:SeCrEt@127.0.0.1:{webhook.port}/hook?token=T0KEN&-apikey=K3yK3yK3y",
    ]
    db, folder = tmp_path / "nw.duckdb", seeds_copy(ORIGINAL)
    watch_for(db, "secret", query="Musk", urls=urls)
    webhook.fail_next(5, status=500)
    settings = settings_for(notify_timeout=2)
    with Recorder("flows", "extract", "monitoring", "warehouse", "apprise", "urllib3", "prefect") as records:
        summary = ingest(folder, db, settings)
        assert (summary.alerts, summary.delivered, summary.delivery_failures) == (1, 0, 2)
        time.sleep(0.01)
        assert deliver_due_alerts(db, settings).failed == 2
    assert len(webhook.received) == 2  # it really was attempted, with its credentials
    assert webhook.received[0].headers["authorization"].startswith("Basic ")
    errors = [error for (error,) in query(db, "SELECT last_error FROM alert_deliveries ORDER BY url")]
    assert all(errors) and "500" in errors[0]
    # The attempts were logged, Apprise's own debug lines included, with the URLs masked.
    assert "flows.alerts WARNING alert " in records.text and "not delivered" in records.text
    assert "monitoring.delivery INFO delivery to json://user:****@127.0.0.1" in records.text
    assert any(line.startswith("apprise DEBUG") and "****" in line for line in records.lines)
    for secret in ("SeCrEt", "T0KEN", "K3yK3yK3y"):
        assert secret not in records.text
        assert not any(secret in error for error in errors)
