"""The ingest flow end to end on the seed articles, with the real bundled model."""

import duckdb
import pytest

from extract.rewrites import evidence, load_model, profile
from flows.embedding import get_embedder, verdict_whole_vectors
from flows.ingest import ingest_fixtures
from flows.settings import Settings
from tests.seed_site import ORIGINAL, OTHER, REWRITE, SEEDS
from warehouse.connection import open_warehouse


pytestmark = pytest.mark.usefixtures("prefect_server")


def articles(db):
    connection = duckdb.connect(str(db), read_only=True)
    try:
        rows = connection.execute(
            "SELECT url, article_id, duplicate_of, duplicate_kind, story_id, published_at, title FROM articles"
        ).fetchall()
        stories = connection.execute(
            "SELECT story_id, headline, article_count, duplicate_count, first_published_at, last_published_at FROM stories"
        ).fetchall()
    finally:
        connection.close()
    by_name = {url.rsplit("/", 1)[1]: dict(zip(("url", "id", "dup", "kind", "story", "published", "title"), row)) for row, url in ((r, r[0]) for r in rows)}
    return by_name, stories


def test_seeds_give_one_story_with_the_rewrite_as_duplicate(tmp_path):
    db = tmp_path / "nw.duckdb"
    summary = ingest_fixtures(SEEDS, db, Settings())
    assert (summary.read, summary.new_articles, summary.duplicates, summary.new_stories) == (3, 3, 1, 1)
    rows, stories = articles(db)
    assert rows[REWRITE]["dup"] == rows[ORIGINAL]["id"]
    assert rows[REWRITE]["kind"] == "rewrite"
    assert rows[ORIGINAL]["dup"] is None and rows[OTHER]["dup"] is None
    assert len({row["story"] for row in rows.values()}) == 1
    assert rows[ORIGINAL]["url"].startswith("file:///")
    (story_id, headline, count, duplicates, first, last) = stories[0]
    assert (count, duplicates) == (3, 1)
    assert headline and "loading" not in headline.lower()
    assert first.date().isoformat() == last.date().isoformat() == "2023-11-29"


def test_second_run_changes_nothing(tmp_path):
    db = tmp_path / "nw.duckdb"
    ingest_fixtures(SEEDS, db, Settings())
    before = articles(db)
    again = ingest_fixtures(SEEDS, db, Settings())
    assert (again.already_stored, again.new_articles, again.new_embeddings, again.new_stories) == (3, 0, 0, 0)
    assert articles(db) == before


def test_later_articles_join_the_stored_story(tmp_path, seeds_copy):
    db = tmp_path / "nw.duckdb"
    folder = seeds_copy(ORIGINAL)
    first = ingest_fixtures(folder, db, Settings())
    assert first.new_stories == 1
    story_before = articles(db)[0][ORIGINAL]["story"]
    seeds_copy(REWRITE, OTHER)
    second = ingest_fixtures(folder, db, Settings())
    assert (second.already_stored, second.new_articles, second.duplicates, second.new_stories) == (1, 2, 1, 0)
    rows, stories = articles(db)
    assert rows[REWRITE]["dup"] == rows[ORIGINAL]["id"]
    assert rows[OTHER]["dup"] is None
    assert {row["story"] for row in rows.values()} == {story_before}
    assert len(stories) == 1


def test_same_text_elsewhere_is_an_exact_duplicate_and_not_embedded_again(tmp_path, seeds_copy):
    db = tmp_path / "nw.duckdb"
    ingest_fixtures(seeds_copy(ORIGINAL, folder="a"), db, Settings())
    moved = seeds_copy(folder="b")
    (moved / "copy.txt").write_text((SEEDS / ORIGINAL).read_text(encoding="utf-8") + "\n\n", encoding="utf-8")
    summary = ingest_fixtures(moved, db, Settings())
    assert (summary.new_articles, summary.duplicates, summary.new_embeddings) == (1, 1, 0)
    rows, _ = articles(db)
    assert rows["copy.txt"]["dup"] == rows[ORIGINAL]["id"]
    assert rows["copy.txt"]["kind"] == "exact"


def test_unrelated_html_page_opens_its_own_story(tmp_path, seeds_copy):
    db = tmp_path / "nw.duckdb"
    folder = seeds_copy(ORIGINAL, OTHER)
    (folder / "harvest.html").write_text(
        """<!doctype html><html lang="en"><head><title>Record corn harvest in Iowa | Farm News</title>
        <meta property="og:title" content="Record corn harvest in Iowa">
        <meta property="article:published_time" content="2023-11-28T09:00:00Z"></head>
        <body><nav><a href="/">Home</a> <a href="/markets">Markets</a></nav>
        <article><h1>Record corn harvest in Iowa</h1>
        <p>Farmers in Iowa harvested a record corn crop this autumn, the US Department of Agriculture
        said on Tuesday, as dry weather in September let combines run late into the night.</p>
        <p>Yields averaged 205 bushels an acre across the state, according to the department's report,
        and elevators in Des Moines and Cedar Rapids ran out of storage space by early November.</p>
        </article><footer>Share this article. Copyright 2023 Farm News.</footer></body></html>""",
        encoding="utf-8",
    )
    summary = ingest_fixtures(folder, db, Settings())
    rows, stories = articles(db)
    assert summary.new_stories == 2
    harvest = rows["harvest.html"]
    assert harvest["story"] != rows[ORIGINAL]["story"] == rows[OTHER]["story"]
    assert harvest["dup"] is None
    assert harvest["title"] == "Record corn harvest in Iowa"
    assert harvest["published"].date().isoformat() == "2023-11-28"


def embedding_rows(db):
    connection = duckdb.connect(str(db), read_only=True)
    try:
        return connection.execute("SELECT model, chunk_count FROM embeddings ORDER BY model, chunk_count").fetchall()
    finally:
        connection.close()


def test_the_rewrite_is_decided_by_whole_articles_while_every_article_gets_only_its_lead(tmp_path):
    db = tmp_path / "nw.duckdb"
    ingest_fixtures(SEEDS, db, Settings(embed_lead_chunks=2))
    rows, _ = articles(db)
    assert rows[REWRITE]["dup"] == rows[ORIGINAL]["id"] and rows[REWRITE]["kind"] == "rewrite"
    assert rows[OTHER]["dup"] is None and len({row["story"] for row in rows.values()}) == 1
    connection = duckdb.connect(str(db), read_only=True)
    try:
        (similarity,), = connection.execute(
            "SELECT duplicate_similarity FROM articles WHERE duplicate_kind = 'rewrite'").fetchall()
    finally:
        connection.close()
    # The score is the rewrite model's probability for the pair, from the texts and whole vectors.
    with open_warehouse(db, read_only=True) as connection:
        texts = dict(connection.execute("SELECT url, text FROM articles").fetchall())
    text = {url.rsplit("/", 1)[1]: value for url, value in texts.items()}
    vectors, _ = get_embedder(Settings()).embed([text[ORIGINAL], text[REWRITE], text[OTHER]])
    model, rules = load_model(), Settings().dedupe_rules()
    assert similarity == pytest.approx(model.probability(
        evidence(profile(text[ORIGINAL]), profile(text[REWRITE]), float(vectors[0] @ vectors[1]))), abs=1e-4)
    # This rewrite drops most of the original's numbers: the model doubts it, but the whole
    # articles are nearly identical in meaning (0.938, over 0.93) and share their names.
    assert float(vectors[0] @ vectors[1]) >= rules.rewrite_similarity
    # The other article on the event is neither: cosine 0.84, and the model rejects it.
    assert float(vectors[0] @ vectors[2]) < rules.rewrite_similarity
    assert model.probability(evidence(profile(text[ORIGINAL]), profile(text[OTHER]), float(vectors[0] @ vectors[2]))) < 0.01
    stored = embedding_rows(db)
    assert [count for model, count in stored if model.endswith("@128x2")] == [2, 2, 2]
    # Only the pair a verdict needed was embedded whole (the third article's lead is not its whole text).
    assert len([model for model, _ in stored if model.endswith("@128")]) == 2
    with open_warehouse(db, read_only=True) as connection:
        assert verdict_whole_vectors(connection, Settings(embed_lead_chunks=2)) == 2


def test_a_warehouse_of_whole_vectors_goes_on_comparing_with_them_after_leads_are_on(tmp_path, seeds_copy):
    db = tmp_path / "nw.duckdb"
    ingest_fixtures(seeds_copy(ORIGINAL), db, Settings(embed_lead_chunks=0))
    assert {model for model, _ in embedding_rows(db)} == {"all-MiniLM-L6-v2@128"}
    summary = ingest_fixtures(seeds_copy(REWRITE, OTHER), db, Settings(embed_lead_chunks=2))
    assert (summary.new_articles, summary.duplicates, summary.new_stories) == (2, 1, 0)
    rows, _ = articles(db)
    assert rows[REWRITE]["dup"] == rows[ORIGINAL]["id"] and rows[REWRITE]["kind"] == "rewrite"
    assert len({row["story"] for row in rows.values()}) == 1
