"""Find the batch's translations of articles of other languages, stored or in the batch (`extract.translations`).

The multilingual encoder runs only where a translation is possible: once the batch and the story
window hold articles in at least two languages it knows. An English-only (or any one-language)
warehouse never loads it. From then on every new article in one of its languages gets a vector
(kept in `embeddings` under `extract.translations.MODEL_KEY`), and stored articles of the window
that have none get one, once, from their stored text.

Each new article that is not already a duplicate is compared with the window's articles in other
languages and with the batch's earlier ones, oldest first; it becomes a `translation` duplicate
of the original of the closest one that passes the rule, and so joins that original's story.
"""

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from extract.dedupe import DuplicateMatch
from extract.translations import MODEL_KEY, MultilingualEncoder, is_translation, numbers, supported
from flows.settings import Settings
from warehouse.connection import open_warehouse
from warehouse.load import EmbeddingRow
from warehouse.lookups import article_texts, window_articles, window_languages

if TYPE_CHECKING:
    from flows.pipeline import PreparedArticle

logger = logging.getLogger(__name__)
# Characters of a text the encoder reads: the opening of a long article says what it is.
MAX_CHARACTERS = 20_000

_ENCODER: MultilingualEncoder | None = None
_ENCODER_LOCK = threading.Lock()


def get_encoder() -> MultilingualEncoder:
    """The process's multilingual encoder (its model loads on first use)."""
    global _ENCODER
    with _ENCODER_LOCK:
        if _ENCODER is None:
            _ENCODER = MultilingualEncoder()
        return _ENCODER


def _language(code: str | None) -> str | None:
    return code.split("-")[0].lower() if supported(code) else None


@dataclass
class Translations:
    """What translation detection found: the new duplicates, the stories of their stored originals, vectors to store."""

    duplicates: dict[str, DuplicateMatch] = field(default_factory=dict)
    story_of: dict[str, str] = field(default_factory=dict)  # stored originals' stories
    embeddings: list[EmbeddingRow] = field(default_factory=list)
    compared: int = 0


@dataclass
class _Candidate:
    article_id: str
    original_id: str
    language: str
    text_hash: str
    vector: np.ndarray
    text: str | None  # None for stored ones until needed


def find_translations(
    prepared: list["PreparedArticle"], duplicates: dict[str, DuplicateMatch], db: Path, settings: Settings,
) -> Translations:
    """Translations among the batch's new originals of articles in other languages (see the module's docstring)."""
    found = Translations()
    languages = {_language(item.article.language) for item in prepared} - {None}
    if not settings.translations or not prepared or not languages:
        return found
    since = min(item.seen_at for item in prepared) - timedelta(days=settings.story_window_days)
    with open_warehouse(db, memory_limit=settings.duckdb_memory_limit) as connection:
        stored_codes = sorted(code for code in window_languages(connection, since) if _language(code))
        if len(languages | {_language(code) for code in stored_codes}) < 2:
            return found
        stored = window_articles(connection, since, stored_codes, MODEL_KEY)
        known = {article.text_hash: article.vector for article in stored if article.vector is not None}
        backfill = [article for article in stored if article.vector is None and article.text_hash not in known]
        texts = article_texts(connection, [article.article_id for article in backfill]) if backfill else {}
        if backfill:
            logger.info("giving %d stored articles a multilingual vector", len(backfill))
    new = [item for item in prepared if _language(item.article.language)]
    to_embed: dict[str, str] = {}
    for article in backfill:
        to_embed.setdefault(article.text_hash, texts.get(article.article_id, ""))
    for item in new:
        if item.text_hash not in known:
            to_embed.setdefault(item.text_hash, item.article.text)
    if to_embed:
        digests = list(to_embed)
        vectors = get_encoder().embed([to_embed[digest][:MAX_CHARACTERS] for digest in digests])
        now = datetime.now(UTC)
        for digest, vector in zip(digests, vectors):
            known[digest] = vector
            found.embeddings.append(EmbeddingRow(digest, MODEL_KEY, vector.tolist(), 1, now))
    stored_texts = dict(texts)
    candidates = [
        _Candidate(article.article_id, article.original_id, _language(article.language), article.text_hash,
                   known[article.text_hash], stored_texts.get(article.article_id))
        for article in stored if article.text_hash in known
    ]
    stories = {article.article_id: article.story_id for article in stored}
    rules = settings.translation_rules()
    pending: list[tuple["PreparedArticle", list[tuple[float, _Candidate]]]] = []
    batch: list[_Candidate] = []
    matrix = np.stack([c.vector for c in candidates]) if candidates else np.zeros((0, 512), dtype=np.float32)
    for item in new:
        language, vector = _language(item.article.language), known[item.text_hash]
        close = []
        if len(matrix):
            cosines = matrix @ vector
            for position in np.flatnonzero(cosines >= rules.low):
                if candidates[position].language != language:
                    close.append((float(cosines[position]), candidates[position]))
        for earlier in batch:
            if earlier.language != language:
                cosine = float(earlier.vector @ vector)
                if cosine >= rules.low:
                    close.append((cosine, earlier))
        found.compared += len(close)
        pending.append((item, close))
        original = duplicates[item.article_id].original_id if item.article_id in duplicates else item.article_id
        batch.append(_Candidate(item.article_id, original, language, item.text_hash, vector, item.article.text))
    unread = sorted({c.article_id for _, close in pending for _, c in close if c.text is None})
    if unread:
        with open_warehouse(db, memory_limit=settings.duckdb_memory_limit) as connection:
            stored_texts.update(article_texts(connection, unread))
    batch_original = {c.article_id: c for c in batch}
    for item, close in pending:
        if item.article_id in duplicates:
            continue
        item_numbers = numbers(item.article.text)
        passing = [
            (cosine, candidate) for cosine, candidate in close
            if is_translation(cosine, item_numbers, numbers(candidate.text or stored_texts.get(candidate.article_id, "")), rules)
        ]
        if not passing:
            continue
        cosine, candidate = max(passing, key=lambda pair: pair[0])
        original = candidate.original_id
        if original in found.duplicates:  # an earlier article of the batch that is itself a translation
            original = found.duplicates[original].original_id
        found.duplicates[item.article_id] = DuplicateMatch(original, "translation", cosine)
        batch_original[item.article_id].original_id = original
        if original in stories:
            found.story_of[original] = stories[original]
        elif candidate.article_id in stories:
            found.story_of[original] = stories[candidate.article_id]
    if found.duplicates or found.embeddings:
        logger.info("multilingual: %d vectors computed, %d pairs compared, %d translations",
                    len(found.embeddings), found.compared, len(found.duplicates))
    return found
