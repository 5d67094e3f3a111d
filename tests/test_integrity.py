"""The damage check: a database grown the way people grow one is never called damaged, and a cut one always is.

Databases are made by many small writes through the warehouse's own functions (feeds added and
removed one by one, watches, loads of new articles with pages, vectors and terms, the same load
again, checkpoints, a writer killed with SIGKILL before it closed the file), in random sequences
drawn by hypothesis; then cut at random offsets.
"""

import hashlib
import os
import random
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.http_server import closed_port
from warehouse.connection import DatabaseDamaged, open_warehouse
from warehouse.feeds import add_feed, list_feeds, remove_feed
from warehouse.integrity import check_database
from warehouse.load import ArticleRow, EmbeddingRow, LoadBatch, PageRow, load_batch
from warehouse.sql import execute, transaction
from warehouse.watches import add_watch, find_watch, remove_watch

ROOT = Path(__file__).parent.parent
NOW = datetime(2026, 12, 1, tzinfo=UTC)
WORDS = "minister harbour strike vote council flood storm court budget election river bridge".split()


def _articles(seed: int, count: int) -> LoadBatch:
    """A batch of new articles as a run loads them, with incompressible pages so the file grows by many blocks."""
    rng = random.Random(seed)
    batch = LoadBatch()
    for index in range(count):
        key = f"{seed}-{index}"
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(50, 400))) + f" {key}"
        text_hash = hashlib.sha256(text.encode()).hexdigest()
        article_id = hashlib.sha256(key.encode()).hexdigest()[:16]
        url = f"https://news.example/{key}"
        batch.articles.append(ArticleRow(
            article_id=article_id, url=url, canonical_url=url, title=f"Title {key}", published_at=NOW,
            ingested_at=NOW + timedelta(seconds=seed), text=text, text_hash=text_hash, author=None, language="en",
            site_name="example", source="feed", duplicate_of=None, duplicate_kind=None, duplicate_similarity=None,
            story_id=article_id, story_similarity=None,
        ))
        batch.embeddings.append(EmbeddingRow(text_hash, "test-model", [rng.random() for _ in range(384)], 1, NOW))
        batch.pages.append(PageRow(article_id, url, "text/html", rng.randbytes(rng.randint(2_000, 60_000)), NOW))
        batch.article_terms[article_id] = {word: text.count(word) for word in set(text.split()[:20])}
    return batch


_KILLED_WRITER = """
import os, sys
from datetime import UTC, datetime
from tests.http_server import closed_port
from warehouse.connection import open_warehouse
from warehouse.feeds import add_feed
with open_warehouse(sys.argv[1]) as connection:
    for index in range(int(sys.argv[2])):
        add_feed(connection, f"https://killed.example/{sys.argv[3]}/{index}.xml", None, datetime.now(UTC))
    os.kill(os.getpid(), 9)
"""


def _step(db: Path, step: tuple, state: dict) -> None:
    """One write as a command or a run makes it: open, write, close."""
    kind, amount = step
    if kind == "killed":  # a writer killed with SIGKILL, its last writes only in the write-ahead log
        state["serial"] += 1
        subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(db), str(amount), str(state["serial"])], cwd=ROOT, check=False, timeout=120)
        return
    with open_warehouse(db) as connection:
        if kind == "add_feeds":
            for _ in range(amount):
                state["serial"] += 1
                add_feed(connection, f"https://news.example/feed/{state['serial']}.xml", None, NOW)
        elif kind == "remove_feeds":
            for feed in list_feeds(connection)[:amount]:
                remove_feed(connection, feed.url)
        elif kind == "load":
            state["serial"] += 1
            state["last_load"] = (state["serial"], amount)
            load_batch(connection, _articles(*state["last_load"]))
        elif kind == "reload" and state.get("last_load"):  # the same batch again: nothing new is stored
            load_batch(connection, _articles(*state["last_load"]))
        elif kind == "watch":
            state["serial"] += 1
            add_watch(connection, f"watch {state['serial']}", query="flood", like_text=None, like_vector=None, like_model=None,
                      min_articles=amount, min_sources=1, notify_urls=[], now=NOW)
        elif kind == "unwatch":
            watches = execute(connection, "SELECT name FROM watches ORDER BY watch_id LIMIT ?", [amount])
            for (name,) in watches:
                with transaction(connection):
                    remove_watch(connection, find_watch(connection, name).watch_id)
        elif kind == "checkpoint":
            execute(connection, "CHECKPOINT")


def _read_everything(db: Path) -> None:
    """A full read of every column of every table: what the check stands in for."""
    with duckdb.connect(str(db), read_only=True) as connection:
        for (table,) in connection.execute("SELECT table_name FROM duckdb_tables()").fetchall():
            connection.execute(f'SELECT count(*) FROM (SELECT hash(COLUMNS(*)) FROM "{table}")').fetchall()


STEPS = st.lists(
    st.tuples(
        st.sampled_from(["add_feeds", "add_feeds", "remove_feeds", "load", "load", "reload", "watch", "unwatch", "checkpoint", "killed"]),
        st.integers(min_value=1, max_value=30),
    ),
    min_size=1, max_size=14,
)


@pytest.mark.slow  # hundreds of opens and loads, and writers killed in their own processes
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=STEPS, cut_seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_databases_grown_by_small_writes_are_never_called_damaged_and_cut_ones_are(tmp_path_factory, steps, cut_seed):
    db = tmp_path_factory.mktemp("grown") / "nw.duckdb"
    state = {"serial": 0}
    for step in steps:
        _step(db, step, state)
        check_database(db)  # after every write, as the next command would
    _read_everything(db)

    # Cut a copy anywhere past the headers: either the check refuses it, or it was whole enough
    # for a full read and a new load (the cut took only free blocks).
    size = db.stat().st_size
    cut = db.with_name("cut.duckdb")
    shutil.copy(db, cut)
    for suffix in (".wal",):
        if db.with_name(db.name + suffix).exists():
            shutil.copy(db.with_name(db.name + suffix), cut.with_name(cut.name + suffix))
    offset = random.Random(cut_seed).randrange(0, size)
    os.truncate(cut, offset)
    before = cut.read_bytes()
    try:
        check_database(cut)
    except DatabaseDamaged:
        assert cut.read_bytes() == before  # the check wrote nothing
        return
    _read_everything(cut)
    with open_warehouse(cut) as connection:
        load_batch(connection, _articles(10**6, 5))
        execute(connection, "CHECKPOINT")
    _read_everything(cut)


SEEDS = ROOT / "tests" / "fixtures" / "seeds"


def newswatch(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


def _one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("newswatch: error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.slow  # newswatch processes and a flow on a Prefect server
def test_ten_feeds_added_one_by_one_then_a_run(tmp_path):
    port = closed_port()
    db = tmp_path / "d.duckdb"
    for index in range(10):
        added = newswatch("add-feed", f"http://127.0.0.1:{port}/feed{index}.xml", "--db", str(db))
        assert added.returncode == 0, added.stderr
    check_database(db)
    result = newswatch("run", "--db", str(db), env={"NEWSWATCH_ALLOW_PRIVATE_NETWORKS": "1"})
    assert result.returncode == 0, result.stderr
    assert "damaged" not in result.stderr
    assert "polled 10 feeds" in result.stdout and "10 fetch failures" in result.stdout


@pytest.mark.slow  # newswatch processes and a flow on a Prefect server
def test_a_database_cut_short_is_refused_in_one_line_with_nothing_written(tmp_path):
    db = tmp_path / "nw.duckdb"
    made = newswatch("run", "--fixtures", str(SEEDS), "--db", str(db))
    assert made.returncode == 0, made.stderr
    for index in range(5):
        assert newswatch("add-feed", f"https://news.example/{index}.xml", "--db", str(db)).returncode == 0
    with duckdb.connect(str(db), read_only=True) as connection:
        (block_size,) = connection.execute("SELECT block_size FROM pragma_database_size()").fetchone()
        tables = [name for (name,) in connection.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        last_block = max(
            connection.execute("SELECT coalesce(max(block_id), -1) FROM pragma_storage_info(?) WHERE persistent", [table]).fetchone()[0]
            for table in tables
        )
    data_end = 3 * 4096 + (last_block + 1) * block_size
    offsets = {
        "in the headers": 100,
        "after the headers": 3 * 4096 + 10,
        "in the first blocks": 3 * 4096 + block_size + 4000,
        "half way": data_end // 2,
        "in the last data block": data_end - block_size // 2,
    }
    for where, offset in offsets.items():
        cut = tmp_path / f"cut-{offset}.duckdb"
        shutil.copy(db, cut)
        os.truncate(cut, offset)
        before = cut.read_bytes()
        for command in (["run", "--fixtures", str(SEEDS)], ["add-feed", "https://news.example/new.xml"], ["reextract"]):
            line = _one_line_error(newswatch(*command, "--db", str(cut)), str(cut))
            assert "damaged" in line or "not a valid DuckDB database" in line, (where, line)
            assert cut.read_bytes() == before, where
            assert not cut.with_name(cut.name + ".wal").exists(), where
