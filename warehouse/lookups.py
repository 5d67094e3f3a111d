"""What the pipeline looks up while it decides a batch: stored URLs, vectors, term statistics and the history.

"History" is what a batch is compared with: the stored articles nearest to it (and those it
matches exactly) and their stories. Every query binds its parameters; none is built from input.
"""

from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np

from warehouse.sql import execute, vectors_of


def stored_urls(connection: duckdb.DuckDBPyConnection, urls: list[str]) -> set[str]:
    """Which of these URLs are already stored, as fetched or as canonical URL."""
    rows = execute(
        connection,
        "SELECT url FROM articles WHERE url IN (SELECT unnest(?))"
        " UNION SELECT canonical_url FROM articles WHERE canonical_url IN (SELECT unnest(?))",
        [urls, urls],
    )
    return {row[0] for row in rows}


def stored_embeddings(
    connection: duckdb.DuckDBPyConnection, model: str, text_hashes: list[str]
) -> dict[str, np.ndarray]:
    """Stored vectors of this model for these text hashes."""
    rows = execute(connection, 
        "SELECT text_hash, vector FROM embeddings WHERE model = ? AND text_hash IN (SELECT unnest(?))",
        [model, text_hashes],
    )
    return {text_hash: np.asarray(vector, dtype=np.float32) for text_hash, vector in rows}


def term_statistics(connection: duckdb.DuckDBPyConnection, terms: list[str]) -> tuple[dict[str, int], int]:
    """Document counts of these terms over stored originals, and how many originals there are."""
    counts = dict(execute(connection, 
        "SELECT term, document_count FROM terms WHERE term IN (SELECT unnest(?))", [terms]
    ))
    total = execute(connection, "SELECT count(*) FROM articles WHERE duplicate_of IS NULL")[0][0]
    return counts, total


@dataclass
class StoredArticle:
    """A stored article as dedupe and clustering see it."""

    article_id: str
    story_id: str
    duplicate_of: str | None
    canonical_url: str
    text_hash: str
    text: str
    vector: np.ndarray | None
    seen_at: datetime
    terms: dict[str, int]


@dataclass
class StoredStory:
    """A stored story as clustering sees it: sums over its original members."""

    story_id: str
    vector_sum: np.ndarray
    term_counts: dict[str, int]
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    member_ids: list[str]


@dataclass
class StoredHistory:
    """What dedupe and clustering compare a batch with."""

    articles: list[StoredArticle]
    stories: list[StoredStory]


_CANDIDATES = """
    WITH neighbours AS (SELECT unnest(?::VARCHAR[]) AS article_id),
    matched AS (
        SELECT article_id, story_id,
               article_id IN (SELECT article_id FROM neighbours) AS neighbour,
               canonical_url IN (SELECT unnest(?::VARCHAR[])) OR text_hash IN (SELECT unnest(?::VARCHAR[])) AS exact
        FROM articles
        WHERE article_id IN (SELECT article_id FROM neighbours)
           OR canonical_url IN (SELECT unnest(?::VARCHAR[]))
           OR text_hash IN (SELECT unnest(?::VARCHAR[]))
    ),
    active AS (
        SELECT story_id FROM articles
        WHERE story_id IN (SELECT story_id FROM matched WHERE neighbour)
        GROUP BY story_id
        HAVING ?::TIMESTAMPTZ IS NULL OR max(coalesce(published_at, ingested_at)) >= ?::TIMESTAMPTZ
    ),
    chosen AS (
        SELECT article_id, story_id, duplicate_of, canonical_url, text_hash, text, ingested_at,
               coalesce(published_at, ingested_at) AS seen_at,
               article_id IN (SELECT article_id FROM matched WHERE exact)
                 OR (article_id IN (SELECT article_id FROM matched) AND story_id IN (SELECT story_id FROM active)) AS candidate,
               story_id IN (SELECT story_id FROM active) AS member
        FROM articles
        WHERE story_id IN (SELECT story_id FROM active)
           OR article_id IN (SELECT article_id FROM matched WHERE exact)
    )
"""


def story_history(
    connection: duckdb.DuckDBPyConnection,
    model: str,
    since: datetime | None,
    neighbour_ids: list[str],
    canonical_urls: list[str],
    text_hashes: list[str],
    fallback_model: str | None = None,
) -> StoredHistory:
    """What a batch is compared with, read for the batch's candidates only.

    - articles: the stored articles nearest to the batch (`neighbour_ids`) whose story was active
      since `since` (all if None), and those with one of the batch's canonical URLs or text
      hashes however old; with text, vector and terms. Only they can be duplicates.
    - stories: every story holding one of those neighbours and active since `since`, with the
      vector sum, term counts and time span of its original members.

    An article is seen at its publish time, else when it was ingested. Oldest first.
    Vectors are `model`'s, else `fallback_model`'s (`warehouse.sql.vectors_of`); they come through
    Arrow, never as Python floats.
    """
    parameters = [neighbour_ids, canonical_urls, text_hashes, canonical_urls, text_hashes, since, since]
    vectors, vector_parameters = vectors_of(model, fallback_model)
    table = connection.sql(
        _CANDIDATES + f"""
        SELECT c.article_id, c.story_id, c.duplicate_of, c.canonical_url, c.text_hash,
               CASE WHEN c.candidate THEN c.text ELSE '' END AS text, c.seen_at, c.candidate, c.member,
               e.vector
        FROM chosen c LEFT JOIN {vectors} e ON e.text_hash = c.text_hash
        WHERE c.candidate OR (c.member AND c.duplicate_of IS NULL)
        ORDER BY c.seen_at, c.ingested_at, c.article_id
        """,
        params=[*parameters, *vector_parameters],
    ).to_arrow_table()
    columns = {name: table.column(name).to_pylist() for name in table.column_names if name != "vector"}
    vectors, has_vector = _vectors(table.column("vector"))
    term_rows = execute(connection,
        _CANDIDATES + """
        SELECT c.article_id, list(t.term), list(t.count) FROM chosen c JOIN article_terms t ON t.article_id = c.article_id
        WHERE c.candidate GROUP BY c.article_id
        """,
        parameters,
    )
    terms_of = {article_id: dict(zip(terms, counts)) for article_id, terms, counts in term_rows}
    story_term_rows = execute(connection,
        _CANDIDATES + """
        SELECT story_id, list(term), list(total) FROM (
            SELECT c.story_id, t.term, sum(t.count)::INTEGER AS total
            FROM chosen c JOIN article_terms t ON t.article_id = c.article_id
            WHERE c.member AND c.duplicate_of IS NULL
            GROUP BY c.story_id, t.term
        ) GROUP BY story_id
        """,
        parameters,
    )
    story_terms = {story_id: dict(zip(terms, totals)) for story_id, terms, totals in story_term_rows}

    articles, members = [], {}
    for row, article_id in enumerate(columns["article_id"]):
        if columns["candidate"][row]:
            articles.append(StoredArticle(
                article_id, columns["story_id"][row], columns["duplicate_of"][row], columns["canonical_url"][row],
                columns["text_hash"][row], columns["text"][row], vectors[row] if has_vector[row] else None,
                columns["seen_at"][row], terms_of.get(article_id, {}),
            ))
        if columns["member"][row] and columns["duplicate_of"][row] is None and has_vector[row]:
            members.setdefault(columns["story_id"][row], []).append(row)
    stories = []
    for story_id, rows in members.items():
        times = [columns["seen_at"][row] for row in rows]
        stories.append(StoredStory(
            story_id, vectors[rows].sum(axis=0), story_terms.get(story_id, {}), min(times), max(times),
            [columns["article_id"][row] for row in rows],
        ))
    return StoredHistory(articles, stories)


def _vectors(column) -> tuple[np.ndarray, np.ndarray]:
    """A list<float> Arrow column as a 2-D float32 array (zeros where null) and a validity mask."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = column.combine_chunks() if column.num_chunks else pa.array([], pa.list_(pa.float32()))
    valid = np.asarray(pc.is_valid(column)) if len(column) else np.zeros(0, bool)
    lengths = np.asarray(pc.fill_null(pc.list_value_length(column), 0)) if len(column) else np.zeros(0, np.int64)
    dimensions = int(lengths.max()) if len(lengths) else 0
    vectors = np.zeros((len(column), dimensions), dtype=np.float32)
    full = valid & (lengths == dimensions)
    if full.any():
        vectors[full] = np.asarray(column.filter(pa.array(full)).flatten(), dtype=np.float32).reshape(-1, dimensions)
    return vectors, full


def stored_vectors(
    connection: duckdb.DuckDBPyConnection, model: str, article_ids: list[str], fallback_model: str | None = None
) -> dict[str, np.ndarray]:
    """The exact stored vectors of these articles under one embedding model (else `fallback_model`)."""
    vectors, vector_parameters = vectors_of(model, fallback_model)
    rows = execute(connection,
        f"""
        SELECT a.article_id, e.vector FROM articles a
        JOIN {vectors} e ON e.text_hash = a.text_hash
        WHERE a.article_id IN (SELECT unnest(?::VARCHAR[]))
        """,
        [*vector_parameters, article_ids],
    )
    return {article_id: np.asarray(vector, dtype=np.float32) for article_id, vector in rows}


@dataclass
class WindowArticle:
    """A stored article of the story window as translation detection sees it: its vector of `model`, if stored."""

    article_id: str
    original_id: str  # the article it duplicates, else itself
    story_id: str
    language: str
    text_hash: str
    vector: np.ndarray | None


def window_languages(connection: duckdb.DuckDBPyConnection, since: datetime) -> set[str]:
    """The languages of the articles seen since `since` (published, else ingested)."""
    rows = execute(connection,
        "SELECT DISTINCT language FROM articles WHERE language IS NOT NULL AND coalesce(published_at, ingested_at) >= ?",
        [since],
    )
    return {language for (language,) in rows}


def window_articles(
    connection: duckdb.DuckDBPyConnection, since: datetime, languages: list[str], model: str
) -> list[WindowArticle]:
    """The articles in one of these languages seen since `since`, oldest first, with their stored vectors of `model`."""
    rows = execute(connection,
        """
        SELECT a.article_id, coalesce(a.duplicate_of, a.article_id), a.story_id, a.language, a.text_hash, e.vector
        FROM articles a LEFT JOIN embeddings e ON e.text_hash = a.text_hash AND e.model = ?
        WHERE a.language IN (SELECT unnest(?::VARCHAR[])) AND coalesce(a.published_at, a.ingested_at) >= ?
        ORDER BY coalesce(a.published_at, a.ingested_at), a.article_id
        """,
        [model, languages, since],
    )
    return [
        WindowArticle(article_id, original_id, story_id, language, text_hash,
                      None if vector is None else np.asarray(vector, dtype=np.float32))
        for article_id, original_id, story_id, language, text_hash, vector in rows
    ]


def article_texts(connection: duckdb.DuckDBPyConnection, article_ids: list[str]) -> dict[str, str]:
    """The stored texts of these articles."""
    rows = execute(connection, "SELECT article_id, text FROM articles WHERE article_id IN (SELECT unnest(?::VARCHAR[]))",
                   [article_ids])
    return dict(rows)
