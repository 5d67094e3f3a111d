"""What 1,000 watches cost a batch of 1,000 new articles: matching, and deciding alerts in the load.

Set-up (once, cached in `--work`): a warehouse holding the 678 ECB+ `B1_ecbplus_events/dev`
articles as the previous articles, ingested through the pipeline's stages in batches of 500 with
1,000 watches already stored (so their earlier matches and alerts are there):

- 500 keyword watches of realistic shapes, built from the data with a fixed seed: a name, a
  "First Last" phrase, two names (adjacent and with AND), an OR of names, a phrase AND an OR
  group, NOT and a leading dash, a mixed group, and ordinary words (names and phrases are taken
  from the texts as written, so queries meet their analyzer);
- 500 `--like` watches: the first sentences of 500 articles, embedded with the pipeline's model.

The batch: 1,000 new articles made from the B1 texts (each text once, then 322 of them again),
each with small changes (one sentence dropped, one line added, a new URL), so they join the
stored stories and grow them ("stories touched by the batch").

Each timed run is a fresh process on fresh copies of that warehouse (vectors come from the
cache: no model is loaded; a watch description that would need embedding again is an error).
It times: `prepare` and `dedupe_and_cluster` (for scale), `flows.alerts.read_watch_rules` (read
and parse the 1,000 watches), `flows.alerts.match_batch` (and `BatchMatcher` building, keyword and
semantic matching apart), `flows.alerts.record_alerts` inside the real load transaction
(`warehouse.load.load_batch`, wrapped), and the same load without watches on a second copy: the
whole overhead of watches in a batch is read rules + match + (load with − load without). Peak
RSS: the process's high-water mark, and the one reset just before the watch work.

Example:
    python bench/watch_scale.py --data ../shared/eval/B1_ecbplus_events/dev --repeat 3
"""

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

SEED = 7
BATCH_ARTICLES = 1000
QUERY_WATCHES = 500
LIKE_WATCHES = 500
_NAME = re.compile(r"\b[A-Z][a-z]{2,}\b")
_PAIR = re.compile(r"\b([A-Z][a-z]{2,}) ([A-Z][a-z]{2,})\b")
_WORD = re.compile(r"\b[a-z]{5,}\b")
_LETTERS = re.compile(r"[^\W\d_]{2,}")


def read_docs(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "docs.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


def first_sentence(text: str, skip: int = 0) -> str | None:
    """The (skip+1)-th line with at least four words of letters (ECB+ texts hold one sentence a line)."""
    lines = [line.strip() for line in text.splitlines() if len([w for w in line.split() if _LETTERS.search(w)]) >= 4]
    return lines[skip] if len(lines) > skip else None


def previous_articles(docs: list[dict]) -> list:
    from extract.content import article_from_text

    return [article_from_text(doc["text"], f"https://news{position % 25}.example/b1/{position:05d}-{doc['doc_id']}")
            for position, doc in enumerate(docs)]


def batch_articles(docs: list[dict], count: int = BATCH_ARTICLES) -> list:
    """`count` new articles: the B1 texts in turn, each with one sentence dropped and one line added."""
    from extract.content import article_from_text

    rng = random.Random(SEED)
    articles = []
    for number in range(count):
        doc = docs[number % len(docs)]
        lines = [line for line in doc["text"].splitlines() if line.strip()]
        if len(lines) > 3:
            del lines[rng.randrange(1, len(lines))]
        lines.insert(min(len(lines), 2), f"Reporting by the wire desk, update {number // len(docs) + 1}.")
        articles.append(article_from_text("\n".join(lines), f"https://wire{number % 40}.example/{number:05d}-{doc['doc_id']}"))
    return articles


def make_queries(docs: list[dict], count: int = QUERY_WATCHES) -> list[str]:
    """Keyword queries of the shapes users write, with names, phrases and words from the texts."""
    from extract.query import QueryError, parse_query

    rng = random.Random(SEED)
    from extract.terms import extract_terms

    per_doc = []
    for doc in docs:
        # Capitalised words that extract_terms takes for names (not stop words, not only sentence-initial).
        terms = extract_terms(None, doc["text"])
        names = sorted({name for name in _NAME.findall(doc["text"]) if name.lower() in terms})
        pairs = sorted({f"{a} {b}" for a, b in _PAIR.findall(doc["text"]) if a.lower() in terms and b.lower() in terms})
        words = sorted(set(_WORD.findall(doc["text"])))
        if len(names) >= 4 and pairs and words:
            per_doc.append((names, pairs, words))
    shapes = [
        lambda n, p, w, o: n[0],
        lambda n, p, w, o: f'"{p[0]}"',
        lambda n, p, w, o: f"{n[0]} {n[1]}",
        lambda n, p, w, o: f"{n[0]} AND {n[1]}",
        lambda n, p, w, o: f"{n[0]} OR {n[1]} OR {o[0]}",
        lambda n, p, w, o: f'"{p[0]}" AND ({n[1]} OR {n[2]})',
        lambda n, p, w, o: f"{n[0]} NOT {o[0]}",
        lambda n, p, w, o: f'{n[0]} {w[0]} -"{p[-1]}"',
        lambda n, p, w, o: f'({n[0]} OR "{p[0]}") AND {n[2]} NOT {o[1]}',
        lambda n, p, w, o: f"{w[0]} {w[1]}",
    ]
    queries: list[str] = []
    while len(queries) < count:
        names, pairs, words = per_doc[rng.randrange(len(per_doc))]
        other = per_doc[rng.randrange(len(per_doc))][0]
        n, p, w, o = (rng.sample(names, 4), rng.sample(pairs, min(2, len(pairs))), rng.sample(words, 2), rng.sample(other, 2))
        query = shapes[len(queries) % len(shapes)](n, p, w, o)
        try:
            parse_query(query)
        except QueryError:
            continue
        if query not in queries:
            queries.append(query)
    return queries


def make_descriptions(docs: list[dict], count: int = LIKE_WATCHES) -> list[str]:
    """First sentences of `count` articles (second sentences once the first ones are used up)."""
    rng = random.Random(SEED + 1)
    order = list(range(len(docs)))
    rng.shuffle(order)
    found: list[str] = []
    for skip in range(5):
        for position in order:
            sentence = first_sentence(docs[position]["text"], skip)
            if sentence and sentence not in found:
                found.append(sentence)
                if len(found) == count:
                    return found
    return found


def _store(articles, db: Path, settings, ingested_at: datetime) -> None:
    """One batch through the pipeline's stages, with the watches, as `flows.ingest._store_batch` does."""
    from flows import alerts, pipeline

    prepared, _ = pipeline.prepare_articles(articles, db, ingested_at, settings)
    embeddings = pipeline.embed_articles(prepared, db, settings)
    verdicts = pipeline.dedupe_and_cluster(prepared, db, settings)
    batch = pipeline.build_load_batch(prepared, verdicts, embeddings, "fixtures", ingested_at)
    rules = alerts.read_watch_rules(db, settings)
    story_of = {article_id: assignment.story_id for article_id, assignment in verdicts.stories.items()}
    batch.watches = alerts.WatchEvaluation(alerts.match_batch(prepared, story_of, rules, settings), settings.alert_developing_factor)
    pipeline.load(batch, db, settings)


def set_up(data: Path, work: Path, settings) -> dict:
    """Build (or reuse) the base warehouse with the watches and previous articles, and the batch's vectors."""
    from extract.content import text_hash
    from flows.embedding import embedding_model_key, get_embedder
    from warehouse.connection import open_warehouse
    from warehouse.sql import transaction
    from warehouse.watches import add_watch

    manifest = work / "manifest.json"
    if manifest.exists():
        return json.loads(manifest.read_text())
    work.mkdir(parents=True, exist_ok=True)
    docs = read_docs(data)
    base = work / "base.duckdb"
    started = time.perf_counter()
    embedder = get_embedder(settings)
    queries, descriptions = make_queries(docs), make_descriptions(docs)
    vectors, _ = embedder.embed(descriptions)
    now = datetime.now(UTC) - timedelta(hours=1)
    with open_warehouse(base) as connection, transaction(connection):
        for number, query in enumerate(queries):
            add_watch(connection, f"query-{number:03d}", query=query, like_text=None, like_vector=None, like_model=None,
                      min_articles=1, min_sources=1, notify_urls=["json://127.0.0.1:9/hook"], now=now)
        for number, (description, vector) in enumerate(zip(descriptions, vectors)):
            add_watch(connection, f"like-{number:03d}", query=None, like_text=description, like_vector=vector,
                      like_model=embedding_model_key(settings), min_articles=1, min_sources=1,
                      notify_urls=["json://127.0.0.1:9/hook"], now=now)
    previous = previous_articles(docs)
    for number, start in enumerate(range(0, len(previous), settings.batch_size)):
        _store(previous[start:start + settings.batch_size], base, settings, now + timedelta(seconds=number))
    batch = batch_articles(docs)
    texts = {text_hash(article.text): article.text for article in batch}
    hashes = sorted(texts)
    batch_vectors, chunk_counts = embedder.embed([texts[h] for h in hashes])
    np.savez(work / "batch_vectors.npz", hashes=np.array(hashes), vectors=np.stack(batch_vectors).astype(np.float32),
             chunk_counts=np.array(chunk_counts))
    with open_warehouse(base, read_only=True) as connection:
        counts = dict(zip(
            ("articles", "stories", "watch_matches", "alerts"),
            connection.execute(
                "SELECT (SELECT count(*) FROM articles), (SELECT count(DISTINCT story_id) FROM articles),"
                " (SELECT count(*) FROM watch_matches), (SELECT count(*) FROM alerts)").fetchone(),
        ))
    info = {"previous": counts, "queries": len(queries), "descriptions": len(descriptions), "batch": len(batch),
            "set_up_seconds": round(time.perf_counter() - started, 1), "model_key": embedding_model_key(settings),
            "like_threshold": settings.watch_like_threshold, "query_examples": queries[:10]}
    manifest.write_text(json.dumps(info))
    return info


def _memory(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _copy(base: Path, target: Path) -> None:
    shutil.copyfile(base, target)
    vectors = Path(f"{base}.vectors")
    if vectors.exists():
        shutil.copytree(vectors, Path(f"{target}.vectors"))


def timed_run(data: Path, work: Path, settings, number: int) -> dict:
    """One measured batch in this (fresh) process: see the module docstring."""
    from extract.query import BatchMatcher
    from flows import alerts, pipeline
    from flows.embedding import embedding_model_key
    from monitoring.watches import match_articles
    from warehouse.load import EmbeddingRow

    def no_model(*_args, **_kwargs):
        raise RuntimeError("a watch description needed embedding again: the cached set-up does not match the settings")

    alerts.get_embedder = no_model  # the timed process must not load the model (it would swamp the RSS)
    docs = read_docs(data)
    cache = np.load(work / "batch_vectors.npz")
    cached = {h: (v, int(c)) for h, v, c in zip(cache["hashes"].tolist(), cache["vectors"], cache["chunk_counts"])}
    articles = batch_articles(docs)
    scratch = Path(tempfile.mkdtemp(prefix=f"watch-scale-{number}-", dir=work))
    try:
        with_watches, without = scratch / "with.duckdb", scratch / "without.duckdb"
        _copy(work / "base.duckdb", with_watches)
        _copy(work / "base.duckdb", without)
        ingested_at = datetime.now(UTC)
        times = {}
        started = time.perf_counter()
        prepared, _ = pipeline.prepare_articles(articles, with_watches, ingested_at, settings)
        times["prepare"] = time.perf_counter() - started
        model = embedding_model_key(settings)
        embeddings = []
        for item in prepared:
            vector, chunks = cached[item.text_hash]
            item.vector = vector
            embeddings.append(EmbeddingRow(item.text_hash, model, vector.tolist(), chunks, ingested_at))
        started = time.perf_counter()
        verdicts = pipeline.dedupe_and_cluster(prepared, with_watches, settings)
        times["dedupe_and_cluster"] = time.perf_counter() - started
        story_of = {article_id: assignment.story_id for article_id, assignment in verdicts.stories.items()}
        rss_before, peak_before = _memory("VmRSS"), _memory("VmHWM")
        peak_reset = _reset_peak()

        started = time.perf_counter()
        rules = alerts.read_watch_rules(with_watches, settings)
        times["read_watch_rules"] = time.perf_counter() - started
        started = time.perf_counter()
        matches = alerts.match_batch(prepared, story_of, rules, settings)
        times["match_batch"] = time.perf_counter() - started
        # The parts of match_articles, apart.
        documents = [(item.article_id, item.article.title, item.article.text) for item in prepared]
        started = time.perf_counter()
        BatchMatcher(documents)
        times["batch_matcher_build"] = time.perf_counter() - started
        keyword = [rule for rule in rules if rule.query is not None]
        semantic = [rule for rule in rules if rule.query is None]
        started = time.perf_counter()
        keyword_hits = match_articles(keyword, documents, None, settings.watch_like_threshold)
        times["match_keyword_only"] = time.perf_counter() - started
        vectors = np.stack([item.vector for item in prepared])
        started = time.perf_counter()
        semantic_hits = match_articles(semantic, documents, vectors, settings.watch_like_threshold)
        times["match_semantic_only"] = time.perf_counter() - started

        batch = pipeline.build_load_batch(prepared, verdicts, embeddings, "fixtures", ingested_at)
        batch.watches = alerts.WatchEvaluation(matches, settings.alert_developing_factor)
        plain = pipeline.build_load_batch(prepared, verdicts, embeddings, "fixtures", ingested_at)
        recorded = {}
        real_record_alerts = alerts.record_alerts

        def timed_record_alerts(*args, **kwargs):
            begun = time.perf_counter()
            decided = real_record_alerts(*args, **kwargs)
            recorded["seconds"] = time.perf_counter() - begun
            recorded["alerts"] = len(decided)
            recorded["touched"] = len(set(args[2]))
            return decided

        alerts.record_alerts = timed_record_alerts
        # Alternate which copy is loaded first, so neither always meets a warmer cache.
        order = [("with", with_watches, batch), ("without", without, plain)]
        for label, db, load_batch in (order if number % 2 == 0 else order[::-1]):
            started = time.perf_counter()
            result = pipeline.load(load_batch, db, settings)
            times[f"load_{label}_watches"] = time.perf_counter() - started
            if label == "with":
                loaded = result
        alerts.record_alerts = real_record_alerts
        times["record_alerts"] = recorded.get("seconds", 0.0)
        peak_watch_work = _memory("VmHWM") if peak_reset else None
        from warehouse.connection import open_warehouse

        with open_warehouse(with_watches, read_only=True) as connection:
            kinds = dict(connection.execute(
                "SELECT kind, count(*) FROM alerts WHERE created_at = ? GROUP BY kind", [ingested_at]).fetchall())
            deliveries = connection.execute(
                "SELECT count(*) FROM alert_deliveries d JOIN alerts a USING (alert_id) WHERE a.created_at = ?",
                [ingested_at]).fetchone()[0]
        times["watch_overhead"] = (times["read_watch_rules"] + times["match_batch"]
                                   + times["load_with_watches"] - times["load_without_watches"])
        return {
            "run": number,
            "seconds": {key: round(value, 4) for key, value in times.items()},
            "articles": len(prepared),
            "new_articles_loaded": loaded.articles,
            "rules": len(rules),
            "matches": len(matches),
            "keyword_matches": len(keyword_hits),
            "semantic_matches": len(semantic_hits),
            "matched_pairs": len({(m.watch_id, m.story_id) for m in matches}),
            "touched_stories": recorded.get("touched", 0),
            "alerts": recorded.get("alerts", 0),
            "alert_kinds": kinds,
            "deliveries_queued": deliveries,
            "rss_before_watch_work_mib": round(rss_before, 1),
            "peak_rss_watch_work_mib": round(peak_watch_work, 1) if peak_watch_work else None,
            "peak_rss_process_mib": round(max(peak_before, _memory("VmHWM")), 1),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def summarise(runs: list[dict]) -> dict:
    keys = runs[0]["seconds"].keys()
    return {key: {"median": round(statistics.median(r["seconds"][key] for r in runs), 3),
                  "min": round(min(r["seconds"][key] for r in runs), 3),
                  "max": round(max(r["seconds"][key] for r in runs), 3)} for key in keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with docs.jsonl")
    parser.add_argument("--work", type=Path, default=None, help="folder for the cached set-up (default: a temporary one)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs, each in a fresh process")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from flows.settings import Settings

    settings = Settings()
    if args.child is not None:
        print(json.dumps(timed_run(args.data, args.work, settings, args.child)))
        return 0
    if not (args.data / "docs.jsonl").is_file():
        print(f"watch_scale: error: {args.data / 'docs.jsonl'} not found", file=sys.stderr)
        return 2
    temporary = None
    if args.work is None:
        temporary = tempfile.TemporaryDirectory(prefix="watch-scale-")
        args.work = Path(temporary.name)
    try:
        info = set_up(args.data, args.work, settings)
        runs = []
        for number in range(args.repeat):
            child = subprocess.run(
                [sys.executable, __file__, "--data", str(args.data), "--work", str(args.work), "--child", str(number)],
                capture_output=True, text=True, check=False, cwd=ROOT,
            )
            if child.returncode != 0:
                print(child.stderr[-3000:], file=sys.stderr)
                return 1
            runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    finally:
        if temporary is not None:
            temporary.cleanup()
    result = {"set_up": info, "runs": runs, "seconds": summarise(runs)}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"previous: {info['previous']}; watches: {info['queries']} keyword + {info['descriptions']} like "
          f"(threshold {info['like_threshold']}); batch: {info['batch']} new articles")
    last = runs[-1]
    print(f"batch: {last['articles']} articles, {last['touched_stories']} stories touched, {last['matches']} matches "
          f"({last['keyword_matches']} keyword, {last['semantic_matches']} like) on {last['matched_pairs']} (watch, story) "
          f"pairs, {last['alerts']} alerts decided {last['alert_kinds']}, {last['deliveries_queued']} deliveries queued")
    print()
    print(f"| step (s, {len(runs)} runs) | median | min | max |")
    print("|---|---|---|---|")
    for key, value in result["seconds"].items():
        print(f"| {key} | {value['median']:.3f} | {value['min']:.3f} | {value['max']:.3f} |")
    peaks = [r["peak_rss_watch_work_mib"] for r in runs if r["peak_rss_watch_work_mib"]]
    print()
    print(f"RSS before the watch work {min(r['rss_before_watch_work_mib'] for r in runs)}–"
          f"{max(r['rss_before_watch_work_mib'] for r in runs)} MiB; peak during it (rules, match, both loads) "
          f"{min(peaks) if peaks else '—'}–{max(peaks) if peaks else '—'} MiB; process peak "
          f"{min(r['peak_rss_process_mib'] for r in runs)}–{max(r['peak_rss_process_mib'] for r in runs)} MiB")
    per_alert = [1000 * r["seconds"]["record_alerts"] / r["alerts"] for r in runs if r["alerts"]]
    if per_alert:
        print(f"record_alerts per alert decided: {min(per_alert):.1f}–{max(per_alert):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
