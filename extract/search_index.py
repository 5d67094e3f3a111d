"""A tantivy full-text index of articles in a folder: BM25 keyword search over titles and texts.

The index holds, per article, its id and story id (stored, matched exactly), its title and text
(indexed with positions through `extract.query`'s analyzer, not stored: the warehouse keeps the
texts) and `seen_at` (the published time, else the ingest time) as integer microseconds since the
epoch, indexed and fast, for time filters. Queries are built from a parsed `extract.query.Query`,
never by tantivy's own query parser, so the query language is the same everywhere and no user
text reaches tantivy unanalyzed.

The index is derived data, rebuilt from the source of truth when it cannot be trusted. Beside
tantivy's files, `newswatch-search.json` records the format and analyzer version, how many
documents the index holds and the latest `ingested_at` it covers; it is replaced atomically after
every commit. A caller compares it with its own counts (`is_current`) and rebuilds when the index
is missing, stale, of another version (`SearchIndexError` on open) or damaged (`SearchIndexError`,
raised when tantivy reads the damaged part, whether it reports an error or panics; tantivy does
not verify checksums on open, so a few flipped bytes can also go unnoticed).

tantivy allows one writer per index (a lock file). The writer is taken on the first change, so
any number of processes can open the same folder and search while another one writes; a second
writer gets `SearchIndexBusy`. Searches see another process's commits within about a second
(tantivy watches its meta file), or at once after `refresh()`.
"""

import json
import logging
import os
import shutil
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import tantivy

from extract.query import ANALYZER_NAME, And, Node, Not, Or, Phrase, Query, Term, text_analyzer

logger = logging.getLogger(__name__)

# Bump when the schema or the way documents are indexed changes: older indexes are then refused
# and rebuilt.
FORMAT = 1
STATE_FILE = "newswatch-search.json"
# A match in the headline says more about what an article is about than one in its body.
TITLE_BOOST = 2.5
# tantivy needs at least 15 MB of indexing heap per thread; 64 MB and one thread keep a writer
# from crowding out the rest of the pipeline on a small machine.
WRITER_HEAP_BYTES = 64_000_000
WRITER_THREADS = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Files that only a tantivy index (or this module) leaves in a folder.
_INDEX_MARKERS = (STATE_FILE, "meta.json", ".managed.json", ".tantivy-meta.lock", ".tantivy-writer.lock")


class SearchIndexError(Exception):
    """The search index cannot be used (damaged, unreadable, another version); discard and rebuild it."""


class SearchIndexBusy(SearchIndexError):
    """Another process holds the index's writer."""


@dataclass(frozen=True)
class SearchDocument:
    """One article as the index sees it; `seen_at` and `ingested_at` are timezone-aware."""

    article_id: str
    story_id: str
    title: str | None
    text: str
    seen_at: datetime  # published time, else ingest time
    ingested_at: datetime


@dataclass(frozen=True)
class SearchHit:
    """One article a search found; `score` is BM25 over title (boosted) and text."""

    article_id: str
    story_id: str
    score: float


@dataclass(frozen=True)
class IndexState:
    """What the state file beside the index says it covers."""

    format: int
    analyzer: str
    documents: int
    ingested_until: datetime | None

    def to_json(self) -> str:
        """The state file's text."""
        until = self.ingested_until.isoformat() if self.ingested_until is not None else None
        return json.dumps({
            "format": self.format, "analyzer": self.analyzer, "documents": self.documents, "ingested_until": until,
        })

    @classmethod
    def from_json(cls, text: str) -> "IndexState":
        """Parse a state file's text (ValueError, KeyError or TypeError when it is not one)."""
        data = json.loads(text)
        until = data["ingested_until"]
        return cls(
            format=int(data["format"]), analyzer=str(data["analyzer"]), documents=int(data["documents"]),
            ingested_until=datetime.fromisoformat(until) if until is not None else None,
        )


def read_state(folder: Path) -> IndexState | None:
    """The state recorded beside an index, without opening it.

    Args:
        folder: The index folder.

    Returns:
        The state, or None when the folder or its state file is missing or unreadable.
    """
    try:
        return IndexState.from_json((Path(folder) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def discard(folder: Path) -> None:
    """Remove an index folder (it is rebuilt from the warehouse when next needed).

    Args:
        folder: The index folder; a missing one is fine.

    Raises:
        SearchIndexError: The folder holds files but none that a search index leaves, so it is
            left alone rather than deleted by mistake.
    """
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir() or (
        any(folder.iterdir()) and not any((folder / marker).exists() for marker in _INDEX_MARKERS)
    ):
        raise SearchIndexError(f"{folder} is not a search index folder, so it was not removed")
    shutil.rmtree(folder)


def _is_tantivy_panic(error: BaseException) -> bool:
    """Whether an exception is a Rust panic inside tantivy (which damaged files can cause)."""
    # pyo3 raises pyo3_runtime.PanicException, a BaseException whose class cannot be imported.
    return type(error).__module__ == "pyo3_runtime" and type(error).__name__ == "PanicException"


def _microseconds(moment: datetime, name: str) -> int:
    """Microseconds since the epoch of a timezone-aware datetime."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")
    return (moment - _EPOCH) // _MICROSECOND


def _schema() -> tantivy.Schema:
    """The index's fields (see the module docstring)."""
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("article_id", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("story_id", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("title", stored=False, tokenizer_name=ANALYZER_NAME, index_option="position")
    builder.add_text_field("text", stored=False, tokenizer_name=ANALYZER_NAME, index_option="position")
    builder.add_integer_field("seen_at", stored=False, indexed=True, fast=True)
    return builder.build()


class SearchIndex:
    """The full-text index in one folder, opened for searching; it takes the writer on first change.

    Use as a context manager, or call `close()`, to release the writer (uncommitted changes are
    rolled back).
    """

    def __init__(self, folder: Path, *, writer_heap_bytes: int = WRITER_HEAP_BYTES, writer_threads: int = WRITER_THREADS):
        """Open the index in a folder, creating it when the folder is missing or empty.

        Args:
            folder: The index folder.
            writer_heap_bytes: Indexing memory of the writer, split among its threads.
            writer_threads: Indexing threads of the writer.

        Raises:
            SearchIndexError: The folder holds something else, a damaged index, or an index of
                another format or analyzer.
        """
        self.folder = Path(folder)
        self.writer_heap_bytes = writer_heap_bytes
        self.writer_threads = writer_threads
        self._schema = _schema()
        self._writer: tantivy.IndexWriter | None = None
        self._pending_until: datetime | None = None
        self._state = self._check_state()
        created = not self.folder.exists() or not any(self.folder.iterdir())
        with self._tantivy_errors():
            self.folder.mkdir(parents=True, exist_ok=True)
            self._index = tantivy.Index(self._schema, path=str(self.folder), reuse=True)
            self._index.register_tokenizer(ANALYZER_NAME, text_analyzer())
        if created:
            # A new index states what it is at once, so another process can tell it apart.
            self._state = IndexState(FORMAT, ANALYZER_NAME, 0, None)
            self._write_state(self._state)

    def _check_state(self) -> IndexState | None:
        """The folder's state; refuses folders that are not this format of index."""
        if not self.folder.exists():
            return None
        if not self.folder.is_dir():
            raise SearchIndexError(f"{self.folder} is not a folder, so it cannot hold a search index")
        names = {path.name for path in self.folder.iterdir()}
        if names and not names & set(_INDEX_MARKERS):
            raise SearchIndexError(f"{self.folder} holds other files, so it cannot hold a search index")
        if STATE_FILE not in names:
            return None
        if "meta.json" not in names:
            # tantivy would silently start a new, empty index over what is left.
            raise SearchIndexError(f"the search index in {self.folder} is damaged (its meta.json is missing); rebuild it")
        state = read_state(self.folder)
        if state is None:
            raise SearchIndexError(f"the search index state file in {self.folder} is unreadable; rebuild the index")
        if (state.format, state.analyzer) != (FORMAT, ANALYZER_NAME):
            raise SearchIndexError(
                f"the search index in {self.folder} was built by another version (format {state.format}, "
                f"analyzer {state.analyzer}); rebuild it"
            )
        return state

    @contextmanager
    def _tantivy_errors(self) -> Iterator[None]:
        """Turn tantivy's failures on damaged or unreadable files into SearchIndexError."""
        try:
            yield
        except (OSError, ValueError) as error:
            raise self._unusable(error) from error
        except BaseException as error:
            if _is_tantivy_panic(error):
                raise self._unusable(error) from error
            raise

    def _unusable(self, error: BaseException) -> SearchIndexError:
        """The error for a tantivy failure on reading the folder (logged with tantivy's detail)."""
        logger.warning("search index %s is unusable: %s", self.folder, error)
        if "schema does not match" in str(error):
            return SearchIndexError(f"the search index in {self.folder} was built with another schema; rebuild it")
        return SearchIndexError(f"the search index in {self.folder} is damaged or unreadable; rebuild it")

    # --- state ---

    @property
    def state(self) -> IndexState | None:
        """What the state file says the index covers (None for an index without one)."""
        if self._writer is None:
            # Another process may be the writer and have committed since this one looked.
            self._state = read_state(self.folder)
        return self._state

    def is_current(self, expected_documents: int, ingested_until: datetime | None) -> bool:
        """Whether the index covers exactly what the warehouse holds.

        Args:
            expected_documents: How many articles the warehouse holds.
            ingested_until: The warehouse's latest `ingested_at` (None when it holds none).

        Returns:
            True when the state file, the index's own count and both figures agree.
        """
        self.refresh()
        state = self.state
        if state is None or state.documents != expected_documents or self._count() != expected_documents:
            return False
        if state.ingested_until is None or ingested_until is None:
            return state.ingested_until is None and ingested_until is None
        return state.ingested_until == ingested_until

    def _write_state(self, state: IndexState) -> None:
        """Replace the state file atomically (a reader sees the old one or the new one)."""
        temporary = self.folder / f".{STATE_FILE}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(state.to_json())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.folder / STATE_FILE)

    # --- writing ---

    def _writer_or_busy(self) -> tantivy.IndexWriter:
        """The writer, taken on first use."""
        if self._writer is None:
            try:
                writer = self._index.writer(heap_size=self.writer_heap_bytes, num_threads=self.writer_threads)
            except ValueError as error:
                if "LockBusy" in str(error):
                    raise SearchIndexBusy(
                        f"the search index in {self.folder} is being written by another process"
                    ) from error
                raise self._unusable(error) from error
            self._writer = writer
            # Only the lock holder writes the state file, so now it is the one to build on.
            self._state = read_state(self.folder)
            self._pending_until = None
        return self._writer

    def add(self, documents: Iterable[SearchDocument]) -> int:
        """Add (or replace, by article id) documents; they are searchable after `commit()`.

        Args:
            documents: The articles to index.

        Returns:
            How many documents were added.

        Raises:
            SearchIndexBusy: Another process holds the writer.
            ValueError: A document's times are not timezone-aware.
        """
        writer = self._writer_or_busy()
        added = 0
        for document in documents:
            seen_at = _microseconds(document.seen_at, "seen_at")
            _microseconds(document.ingested_at, "ingested_at")
            entry = tantivy.Document()
            entry.add_text("article_id", document.article_id)
            entry.add_text("story_id", document.story_id)
            if document.title:
                entry.add_text("title", document.title)
            entry.add_text("text", document.text)
            entry.add_integer("seen_at", seen_at)
            with self._tantivy_errors():
                # A delete applies to every document added before it, committed or not, so a
                # re-run (or the same id twice in one batch) leaves exactly one copy: the latest.
                writer.delete_documents_by_term("article_id", document.article_id)
                writer.add_document(entry)
            if self._pending_until is None or document.ingested_at > self._pending_until:
                self._pending_until = document.ingested_at
            added += 1
        return added

    def delete(self, article_ids: Iterable[str]) -> int:
        """Remove articles (for re-extraction); effective after `commit()`.

        Args:
            article_ids: Ids of the articles to remove; unknown ids are ignored.

        Returns:
            How many committed documents these ids matched.
        """
        ids = sorted(set(article_ids))
        if not ids:
            return 0
        writer = self._writer_or_busy()
        with self._tantivy_errors():
            found = self._searcher().search(
                tantivy.Query.term_set_query(self._schema, "article_id", ids), limit=1, count=True
            ).count
            for article_id in ids:
                writer.delete_documents_by_term("article_id", article_id)
        return found

    def commit(self) -> None:
        """Make the changes since the last commit durable and searchable, then update the state file."""
        if self._writer is None:
            return
        with self._tantivy_errors():
            self._writer.commit()
            self._index.reload()
        previous = self._state.ingested_until if self._state is not None else None
        known = [moment for moment in (previous, self._pending_until) if moment is not None]
        until = max(known) if known else None
        self._state = IndexState(FORMAT, ANALYZER_NAME, self._count(), until)
        self._write_state(self._state)
        self._pending_until = None

    def add_and_commit(self, documents: Iterable[SearchDocument]) -> int:
        """`add` then `commit`.

        Args:
            documents: The articles to index.

        Returns:
            How many documents were added.
        """
        added = self.add(documents)
        self.commit()
        return added

    def clear(self) -> None:
        """Remove every document (and the recorded coverage), committed at once."""
        writer = self._writer_or_busy()
        with self._tantivy_errors():
            writer.delete_all_documents()
        self._pending_until = None
        self._state = None
        self.commit()

    def close(self) -> None:
        """Release the writer, rolling back uncommitted changes and finishing background merges."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            self._pending_until = None
            with self._tantivy_errors():
                writer.rollback()
                writer.wait_merging_threads()

    def __enter__(self) -> "SearchIndex":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # --- reading ---

    def refresh(self) -> None:
        """See the latest commit now, including another process's."""
        with self._tantivy_errors():
            self._index.reload()

    def _searcher(self) -> tantivy.Searcher:
        with self._tantivy_errors():
            return self._index.searcher()

    def _count(self) -> int:
        return self._searcher().num_docs

    def count(self) -> int:
        """How many documents the index holds (as of the latest commit this process sees).

        Returns:
            The number of searchable documents.
        """
        return self._count()

    def search(
        self, query: Query, *, limit: int = 50, since: datetime | None = None, until: datetime | None = None,
        story_ids: Collection[str] | None = None,
    ) -> list[SearchHit]:
        """The articles that match a query, best first.

        Args:
            query: A parsed query (`extract.query.parse_query`).
            limit: At most this many hits.
            since: Only articles seen at or after this time (timezone-aware).
            until: Only articles seen before this time (timezone-aware).
            story_ids: Only articles of these stories (an empty collection finds nothing).

        Returns:
            Hits ordered by BM25 score over title (boosted) and text, best first.

        Raises:
            SearchIndexError: The index turned out to be damaged.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        filters = []
        if since is not None or until is not None:
            lower = _microseconds(since, "since") if since is not None else None
            upper = _microseconds(until, "until") if until is not None else None
            if lower is not None and upper is not None and lower >= upper:
                return []
            filters.append(tantivy.Query.range_query(
                self._schema, "seen_at", tantivy.FieldType.Integer, lower, upper,
                # tantivy wants an open side marked inclusive; `until` itself is excluded.
                include_lower=True, include_upper=upper is None,
            ))
        if story_ids is not None:
            if not story_ids:
                return []
            filters.append(tantivy.Query.term_set_query(self._schema, "story_id", sorted(set(story_ids))))
        compiled = self._compile(query.root)
        if filters:
            # Filters narrow the hits without adding to their scores.
            compiled = tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, compiled)]
                + [(tantivy.Occur.Must, tantivy.Query.const_score_query(part, 0.0)) for part in filters]
            )
        searcher = self._searcher()
        hits = []
        with self._tantivy_errors():
            for score, address in searcher.search(compiled, limit, count=False).hits:
                stored = searcher.doc(address)
                hits.append(SearchHit(stored.get_first("article_id"), stored.get_first("story_id"), float(score)))
        return hits

    def _compile(self, node: Node) -> tantivy.Query:
        """The tantivy query of a syntax tree node (parse_query guarantees every And has a positive part)."""
        if isinstance(node, Term | Phrase):
            per_field = []
            for field in ("title", "text"):
                if isinstance(node, Term):
                    single = tantivy.Query.term_query(self._schema, field, node.token, index_option="freq")
                else:
                    single = tantivy.Query.phrase_query(self._schema, field, list(zip(node.positions, node.tokens)))
                per_field.append(tantivy.Query.boost_query(single, TITLE_BOOST) if field == "title" else single)
            return tantivy.Query.boolean_query([(tantivy.Occur.Should, part) for part in per_field])
        if isinstance(node, Or):
            return tantivy.Query.boolean_query([(tantivy.Occur.Should, self._compile(part)) for part in node.parts])
        if isinstance(node, And):
            return tantivy.Query.boolean_query([
                (tantivy.Occur.MustNot, self._compile(part.part)) if isinstance(part, Not)
                else (tantivy.Occur.Must, self._compile(part))
                for part in node.parts
            ])
        raise ValueError(f"a query cannot be only a negation: {node}")
