"""Maintenance jobs over what is already stored: re-extracting texts from the kept raw pages."""

import logging
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from extract.content import EXTRACTOR, article_from_html, text_hash
from extract.terms import extract_terms
from flows import pipeline
from flows.settings import Settings
from warehouse.connection import open_warehouse
from warehouse.load import EmbeddingRow
from warehouse.pages import Extraction, stored_pages, update_extractions
from warehouse.queries import stored_embeddings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReextractSummary:
    """What a re-extraction did."""

    pages: int
    changed: int
    unchanged: int
    failed: int
    new_embeddings: int


def reextract_pages(db: Path, settings: Settings, *, everything: bool = False, chunk_size: int = 200) -> ReextractSummary:
    """Rebuild article texts from the stored raw pages with the installed extractor, without refetching.

    Texts, titles, metadata, terms and vectors are replaced; duplicate links and stories stay as
    they were decided. The database is opened only while a chunk is read or written.

    Args:
        db: DuckDB file.
        settings: Embedding settings (changed texts are embedded again).
        everything: Re-extract every page, not only those extracted by another extractor version.
        chunk_size: Pages read, extracted and written together.

    Returns:
        Counts of pages seen, texts changed and unchanged, and pages that gave no text (kept as they were).
    """
    model_key = pipeline.embedding_model_key(settings)
    after, pages = "", 0
    changed = unchanged = failed = new_embeddings = 0
    while True:
        with open_warehouse(db) as connection:
            chunk = stored_pages(connection, after, chunk_size, None if everything else EXTRACTOR)
        if not chunk:
            break
        after = chunk[-1].article_id
        pages += len(chunk)
        extractions = []
        for page in chunk:
            article = article_from_html(zlib.decompress(page.html_zlib), page.final_url)
            if article is None:
                failed += 1  # keep the stored text: a worse extractor must not erase an article
                continue
            digest = text_hash(article.text)
            changed += digest != page.text_hash
            unchanged += digest == page.text_hash
            extractions.append(Extraction(
                article_id=page.article_id,
                title=article.title or page.title,
                text=article.text,
                text_hash=digest,
                author=article.author or page.author,
                language=article.language,
                site_name=article.site_name,
                image_url=article.image_url,
                extracted_with=EXTRACTOR,
                terms=dict(extract_terms(article.title or page.title, article.text)),
                is_original=page.is_original,
            ))
        embeddings = _embed_missing(extractions, db, settings, model_key)
        new_embeddings += len(embeddings)
        with open_warehouse(db) as connection:
            update_extractions(connection, extractions, embeddings)
        logger.info("re-extracted %d pages so far", pages)
    return ReextractSummary(pages, changed, unchanged, failed, new_embeddings)


def _embed_missing(extractions: list[Extraction], db: Path, settings: Settings, model_key: str) -> list[EmbeddingRow]:
    texts = {item.text_hash: item.text for item in extractions}
    with open_warehouse(db) as connection:
        known = stored_embeddings(connection, model_key, list(texts))
    missing = {digest: text for digest, text in texts.items() if digest not in known}
    if not missing:
        return []
    vectors, chunk_counts = pipeline.get_embedder(settings).embed(list(missing.values()))
    now = datetime.now(UTC)
    return [
        EmbeddingRow(digest, model_key, vector.tolist(), chunks, now)
        for digest, vector, chunks in zip(missing, vectors, chunk_counts)
    ]
