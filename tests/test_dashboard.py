"""The Streamlit dashboard, driven headless with AppTest against small hand-built databases."""

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from warehouse.connection import open_warehouse
from warehouse.sql import run

APP = str(Path(__file__).parent.parent / "dashboards" / "app.py")
START = datetime(2024, 2, 10, 8, 0, tzinfo=UTC)

# article_id, story_id, title, minutes after START, duplicate_of, kind, similarity
BRIDGE_STORY = [
    ("a1", "s1", "Bridge reopens after repairs", 0, None, None, None),
    ("a2", "s1", "Bridge reopens to traffic after repairs", 30, "a1", "near", 0.934),
    ("a3", "s1", "Mayor praises bridge crews", 60, None, None, None),
]
COUNCIL_STORY = [("b1", "s2", "Council approves budget", -600, None, None, None)]


def build_database(path: Path, rows: list[tuple]) -> Path:
    """A current-schema database holding these articles."""
    with open_warehouse(path) as connection:
        for article_id, story_id, title, minutes, duplicate_of, kind, similarity in rows:
            published_at = START + timedelta(minutes=minutes)
            run(
                connection,
                """
                INSERT INTO articles (article_id, url, canonical_url, title, published_at, ingested_at, text,
                    text_hash, source, duplicate_of, duplicate_kind, duplicate_similarity, story_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'test', ?, ?, ?, ?)
                """,
                [
                    article_id, f"https://example.org/{article_id}", f"https://example.org/{article_id}", title,
                    published_at, published_at, f"text of {title}", f"hash-{article_id}",
                    duplicate_of, kind, similarity, story_id,
                ],
            )
    return path


def run_app(monkeypatch, database: Path, limit: int | None = None) -> AppTest:
    """Run the page once against this database, optionally with another story count."""
    monkeypatch.setenv("NEWSWATCH_DB", str(database))
    monkeypatch.setattr(sys, "argv", ["pytest"])
    app = AppTest.from_file(APP, default_timeout=30).run()
    if limit is not None:
        app.number_input[0].set_value(limit).run()
    return app


def texts(elements) -> list[str]:
    """The text of each element."""
    return [element.value for element in elements]


def hold_write_lock(path: Path, seconds: float) -> subprocess.Popen:
    """Another process that opens the database for writing and keeps it open this long."""
    script = f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('locked', flush=True); time.sleep({seconds})"
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_story_with_a_duplicate(tmp_path, monkeypatch):
    database = build_database(tmp_path / "x.duckdb", BRIDGE_STORY)

    app = run_app(monkeypatch, database)

    assert not app.exception
    assert texts(app.title) == ["newswatch — stories"]
    assert app.number_input[0].value == 20
    assert any(caption.startswith("data as of ") and caption.endswith(" UTC") for caption in texts(app.caption))
    assert [expander.label for expander in app.expander] == [
        "Bridge reopens after repairs · 3 articles, 1 duplicates"
    ]
    assert "first published 2024-02-10 08:00 UTC · last published 2024-02-10 09:00 UTC" in texts(app.caption)
    table = app.dataframe[0].value
    assert list(table.columns) == ["title", "published", "url", "duplicate"]
    assert list(table["title"]) == [
        "Bridge reopens after repairs", "Bridge reopens to traffic after repairs", "Mayor praises bridge crews"
    ]
    assert list(table["duplicate"]) == ["", "duplicate of: Bridge reopens after repairs (near, 0.93)", ""]
    assert list(table["url"])[0] == "https://example.org/a1"
    assert not app.error and not app.warning and not app.info


def test_stories_are_most_recent_first_and_limited(tmp_path, monkeypatch):
    database = build_database(tmp_path / "x.duckdb", BRIDGE_STORY + COUNCIL_STORY)

    app = run_app(monkeypatch, database)
    assert [expander.label.split(" · ")[0] for expander in app.expander] == [
        "Bridge reopens after repairs", "Council approves budget"
    ]

    app = run_app(monkeypatch, database, limit=1)
    assert not app.exception
    assert [expander.label.split(" · ")[0] for expander in app.expander] == ["Bridge reopens after repairs"]


def test_db_argument_wins_over_the_environment(tmp_path, monkeypatch):
    database = build_database(tmp_path / "x.duckdb", BRIDGE_STORY)
    monkeypatch.setenv("NEWSWATCH_DB", str(tmp_path / "elsewhere.duckdb"))
    monkeypatch.setattr(sys, "argv", ["dashboards/app.py", "--db", str(database)])

    app = AppTest.from_file(APP, default_timeout=30).run()

    assert not app.exception
    assert len(app.expander) == 1


def test_an_empty_database(tmp_path, monkeypatch):
    database = build_database(tmp_path / "x.duckdb", [])

    app = run_app(monkeypatch, database)

    assert not app.exception
    assert texts(app.info) == ["No stories yet."]
    assert not app.expander


def test_a_missing_database(tmp_path, monkeypatch):
    database = tmp_path / "missing.duckdb"

    app = run_app(monkeypatch, database)

    assert not app.exception
    assert texts(app.info) == [f"No database at {database} yet: run `newswatch run --fixtures DIR` first."]
    assert not database.exists()


def test_a_file_that_is_not_a_database(tmp_path, monkeypatch):
    database = tmp_path / "notes.duckdb"
    database.write_bytes(b"these are my notes, not a database\n" * 200)

    app = run_app(monkeypatch, database)

    assert not app.exception
    assert len(app.error) == 1
    assert str(database) in app.error[0].value
    assert not app.expander and not app.info


def test_waits_for_a_writer_to_finish(tmp_path, monkeypatch):
    database = build_database(tmp_path / "x.duckdb", BRIDGE_STORY)
    writer = hold_write_lock(database, seconds=0.5)
    try:
        app = run_app(monkeypatch, database)
    finally:
        writer.wait(timeout=30)

    assert not app.exception
    assert not app.warning
    assert len(app.expander) == 1


def test_warns_when_a_writer_holds_the_database_too_long(tmp_path, monkeypatch):
    database = build_database(tmp_path / "x.duckdb", BRIDGE_STORY)
    writer = hold_write_lock(database, seconds=60)
    try:
        app = run_app(monkeypatch, database)
    finally:
        writer.kill()
        writer.wait(timeout=30)

    assert not app.exception
    assert len(app.warning) == 1
    assert "lock" in app.warning[0].value.lower()
    assert not app.expander and not app.error
