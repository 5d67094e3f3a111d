"""Score article extraction of the real feed pipeline against gold body text.

Data: a folder with `html/<id>.html` pages and `ground-truth.json` = `{id: {"articleBody": ...}}`
(the layout of the article-extraction benchmark's `A1_scrapinghub_aeb/dev`). The pages are
served by a local HTTP server on 127.0.0.1 behind an RSS feed; `newswatch`'s `ingest-feeds` flow
polls the feed, fetches every page, extracts, embeds, deduplicates, clusters and loads; the
stored text of each article is then scored against the gold body with bag-of-tokens precision,
recall and F1 (lower-cased `\\w+` tokens, multiset intersection), averaged over pages — the
benchmark's own measure. Plain `trafilatura.extract` on the same pages, in the same run, is
scored beside it.

Example:
    python bench/evaluate_extraction.py --data ../shared/eval/A1_scrapinghub_aeb/dev
"""

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from local_site import LocalSite, entry_metadata  # noqa: E402 (a sibling script module)

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def token_scores(predicted: str, gold: str) -> tuple[float, float, float]:
    """Bag-of-tokens precision, recall and F1 of one extraction."""
    predicted_tokens = Counter(re.findall(r"\w+", predicted.lower()))
    gold_tokens = Counter(re.findall(r"\w+", gold.lower()))
    shared = sum((predicted_tokens & gold_tokens).values())
    precision = shared / sum(predicted_tokens.values()) if predicted_tokens else 0.0
    recall = shared / sum(gold_tokens.values()) if gold_tokens else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def mean_scores(scores: list[tuple[float, float, float]]) -> dict[str, float]:
    return {name: round(sum(s[i] for s in scores) / len(scores), 4) for i, name in enumerate(("precision", "recall", "f1"))}


def extraction_cpu_ms(pages: dict[str, bytes], entries: dict[str, dict] | None = None) -> dict[str, float]:
    """CPU ms of `extract.content.article_from_html` per page in this process (median and mean), each page once.

    With `entries`, each page is given its entry's title and author when the entry also gives a
    date, as the feed flow does. (trafilatura caches some results by page, so a second pass over
    the same pages in one process reads faster than a feed run would.)
    """
    import statistics

    from extract.content import article_from_html

    warm_up = "<html><head><title>Warm-up</title></head><body><article><p>" + "A sentence for the warm-up. " * 40
    article_from_html(warm_up + "</p></article></body></html>", "http://127.0.0.1/warm-up")
    times = []
    for key, html in pages.items():
        entry = (entries or {}).get(key) or {}
        dated = bool(entry.get("published") and entry.get("title"))
        began = time.process_time()
        article_from_html(html, f"http://127.0.0.1/{key}", entry_title=entry.get("title") if dated else None,
                          entry_author=entry.get("author") if dated else None)
        times.append(1000 * (time.process_time() - began))
    return {"median": round(statistics.median(times), 1), "mean": round(statistics.fmean(times), 1)}


def evaluate(data: Path, *, keep_db: Path | None = None, feed_metadata: bool = False) -> dict:
    """Serve the pages behind a local feed, ingest them with the `ingest-feeds` flow and score the stored texts.

    Returns:
        Mean precision/recall/F1 of newswatch's texts and of plain `trafilatura.extract`, counts and seconds.
    """
    truth = json.loads((data / "ground-truth.json").read_text(encoding="utf-8"))
    pages = {key: (data / "html" / f"{key}.html").read_bytes() for key in truth if (data / "html" / f"{key}.html").is_file()}

    import trafilatura

    started = time.perf_counter()
    plain = {key: trafilatura.extract(html) or "" for key, html in pages.items()}
    plain_seconds = time.perf_counter() - started

    entries = entry_metadata(pages) if feed_metadata else None
    extraction_ms = extraction_cpu_ms(pages, entries)

    from flows.embedding import verdict_whole_vectors
    from flows.ingest import ingest_feeds
    from flows.settings import Settings
    from warehouse.connection import open_warehouse
    from warehouse.feeds import add_feed

    with LocalSite(pages, entries=entries) as site, tempfile.TemporaryDirectory() as scratch:
        db = keep_db or Path(scratch) / "extract.duckdb"
        db.unlink(missing_ok=True)
        with open_warehouse(db) as connection:
            add_feed(connection, site.feed_urls[0], "bench", datetime.now(UTC))
        settings = Settings(allow_private_networks=True, fetch_host_delay=0.0, fetch_host_concurrency=8)
        started = time.perf_counter()
        summary = ingest_feeds(db, settings)
        pipeline_seconds = time.perf_counter() - started
        with open_warehouse(db, read_only=True) as connection:
            stored = dict(connection.execute("SELECT url, text FROM articles").fetchall())
            wholes = verdict_whole_vectors(connection, settings)
    ours = {url.rsplit("/", 1)[1]: text for url, text in stored.items()}
    keys = sorted(pages)
    return {
        "pages": len(keys),
        "stored": sum(1 for key in keys if key in ours),
        "newswatch": mean_scores([token_scores(ours.get(key, ""), truth[key]["articleBody"]) for key in keys]),
        "trafilatura_extract": mean_scores([token_scores(plain[key], truth[key]["articleBody"]) for key in keys]),
        "extraction_cpu_ms_per_page": extraction_ms,
        "pipeline_seconds": round(pipeline_seconds, 1),
        "plain_extract_seconds": round(plain_seconds, 1),
        "fetch_failures": summary.failures,
        "whole_vectors_a_verdict_needed": wholes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with html/ and ground-truth.json")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.add_argument("--keep-db", type=Path, default=None, help="write the database here instead of a temporary file")
    parser.add_argument(
        "--feed-metadata", action="store_true",
        help="the feed entry gives each page's title, date and author, as publishers' feeds do",
    )
    args = parser.parse_args(argv)
    truth_file = args.data / "ground-truth.json"
    if not truth_file.is_file():
        print(f"evaluate_extraction: error: {truth_file} not found", file=sys.stderr)
        return 2
    result = evaluate(args.data, keep_db=args.keep_db, feed_metadata=args.feed_metadata)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:22} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
