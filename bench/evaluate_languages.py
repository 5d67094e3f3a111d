"""Score stories and translation duplicates across languages through the real pipeline.

Data (folders of `items.jsonl`, the layouts of `../shared/eval`):
- `--translations`: `doc_id, lang, topic, title, date, text` per line: one article and its
  translations share a `doc_id` (MEANTIME, `M2_meantime/dev`);
- `--documents`: `docid, src_lang, tgt_lang, src, ref` per line: a document and its human
  translation (WMT21, `M3_wmt21_docs/dev`);
- `--pairs`: `pair_id, lang1, lang2, text1, text2, overall` per line: news excerpts scored 1
  (same story) to 4 (unrelated) by people (SemEval-2022 Task 8, `M1_semeval22_pairs/dev`);
  `overall <= 1.5` is the same story, `>= 3.5` different, the middle is not scored.

Every text is written as an article file and ingested by the `ingest-fixtures` flow in two runs:
first the English articles, then all others, so that a translation meets its original in the
stored history (as it does when a foreign feed is polled after an English one), and the CPU per
article is measured for English and for other articles apart. Then the stored verdicts are
scored:

- translations: in their original's story; marked duplicates of it (in its duplicate group), and
  how many of those links say `translation`; false duplicate links: articles of different
  `doc_id`s in one duplicate group;
- pairs, by group (English, other languages monolingual, across languages): same-story pairs
  sharing a story, different pairs merged into one, and pairs of either kind marked duplicates.

Example:
    python bench/evaluate_languages.py --translations ../shared/eval/M2_meantime/dev \\
        --documents ../shared/eval/M3_wmt21_docs/dev --pairs ../shared/eval/M1_semeval22_pairs/dev
"""

import argparse
import hashlib
import json
import logging
import os
import resource
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SAME_STORY = 1.5  # SemEval `overall` at or under which two excerpts are on one story
DIFFERENT_STORY = 3.5  # at or over which they are not


def read_items(folder: Path) -> list[dict]:
    source = folder / "items.jsonl"
    return [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _pair_group(lang1: str, lang2: str) -> str:
    if lang1 != lang2:
        return "across languages"
    return "English" if lang1 == "en" else "other languages"


def build_articles(translations: list[dict], documents: list[dict], pairs: list[dict]) -> tuple[list[dict], list[dict]]:
    """The articles (`key`, `lang`, `text`, `source`: the document it renders) and the scored pairs of excerpts.

    A text given twice (SemEval lists an article in several pairs) is one article.
    """
    articles: dict[str, dict] = {}

    def key_of(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]

    def add(text: str, lang: str, source: str) -> str:
        key = key_of(text)
        articles.setdefault(key, {"key": key, "lang": lang, "text": text, "source": source})
        return key

    for item in translations:
        title = (item.get("title") or "").strip()
        text = f"{title}\n\n{item['text']}" if title and not item["text"].startswith(title) else item["text"]
        add(text, item["lang"], f"translations:{item['doc_id']}")
    for item in documents:
        # A source translated twice (WMT lists en-ja and en-is under their own ids) is one document.
        known = [articles[key]["source"] for key in (key_of(item["src"]), key_of(item["ref"])) if key in articles]
        source = known[0] if known else f"documents:{item['docid']}"
        add(item["src"], item["src_lang"], source)
        add(item["ref"], item["tgt_lang"], source)
    scored = []
    for item in pairs:
        overall = float(item["overall"])
        if SAME_STORY < overall < DIFFERENT_STORY:
            continue
        a = add(item["text1"], item["lang1"], f"pairs:{item['pair_id']}:1")
        b = add(item["text2"], item["lang2"], f"pairs:{item['pair_id']}:2")
        if a != b:
            scored.append({"a": a, "b": b, "same": overall <= SAME_STORY, "group": _pair_group(item["lang1"], item["lang2"])})
    return list(articles.values()), scored


def score(articles: list[dict], scored_pairs: list[dict], group_of: dict[str, str], story_of: dict[str, str],
          kind_of: dict[str, str | None], language_of: dict[str, str | None]) -> dict:
    """Translation and pair scores from the stored verdicts (keys of articles not stored are left out)."""
    result: dict = {}
    versions: dict[str, list[dict]] = defaultdict(list)
    for article in articles:
        if article["source"].startswith(("translations:", "documents:")) and article["key"] in story_of:
            versions[article["source"]].append(article)
    for name in ("translations", "documents"):
        groups = {source: members for source, members in versions.items() if source.startswith(name + ":")}
        if not groups:
            continue
        joined = linked = total = as_translation = 0
        for members in groups.values():
            originals = [m for m in members if m["lang"] == "en"] or members[:1]
            original = originals[0]
            for member in members:
                if member is original:
                    continue
                total += 1
                joined += story_of[member["key"]] == story_of[original["key"]]
                if group_of[member["key"]] == group_of[original["key"]]:
                    linked += 1
                    as_translation += "translation" in {kind_of[member["key"]], kind_of[original["key"]]}
        result[f"{name}: translations in their original's story"] = f"{joined}/{total} ({joined / max(1, total):.2f})"
        result[f"{name}: translations marked duplicates of their original"] = f"{linked}/{total} ({linked / max(1, total):.2f})"
        result[f"{name}: of those, kind translation"] = as_translation
    source_of = {article["key"]: article["source"] for article in articles}
    members_of: dict[str, list[str]] = defaultdict(list)
    for key, group in group_of.items():
        members_of[group].append(key)
    false_links = 0
    for members in members_of.values():
        sources = Counter(source_of[key].rsplit(":", 1)[0] if source_of[key].startswith("pairs:") else source_of[key]
                          for key in members if not source_of[key].startswith("pairs:"))
        # Articles of different documents in one group: every pair of them is a false link.
        size = sum(sources.values())
        false_links += (size * (size - 1) - sum(n * (n - 1) for n in sources.values())) // 2
    result["false duplicate links between different documents"] = false_links
    outcomes: dict[tuple[str, bool], Counter] = defaultdict(Counter)
    for pair in scored_pairs:
        if pair["a"] not in story_of or pair["b"] not in story_of:
            continue
        counts = outcomes[(pair["group"], pair["same"])]
        counts["pairs"] += 1
        counts["one story"] += story_of[pair["a"]] == story_of[pair["b"]]
        counts["duplicates"] += group_of[pair["a"]] == group_of[pair["b"]]
    for group in ("English", "other languages", "across languages"):
        same, different = outcomes.get((group, True), Counter()), outcomes.get((group, False), Counter())
        if same["pairs"] or different["pairs"]:
            result[f"pairs, {group}: same story joined"] = (
                f"{same['one story']}/{same['pairs']} ({same['one story'] / max(1, same['pairs']):.2f})")
            result[f"pairs, {group}: different merged"] = (
                f"{different['one story']}/{different['pairs']} ({different['one story'] / max(1, different['pairs']):.2f})")
            result[f"pairs, {group}: different marked duplicates"] = different["duplicates"]
    detected = Counter()
    for article in articles:
        if article["key"] in language_of:
            detected["right" if language_of[article["key"]] == article["lang"] else "wrong"] += 1
    result["language detected right"] = f"{detected['right']}/{detected['right'] + detected['wrong']}"
    return result


def evaluate(articles: list[dict], scored_pairs: list[dict], *, keep_db: Path | None = None, settings=None) -> dict:
    """Ingest the English articles, then the others, through the `ingest-fixtures` flow, and score what it stored."""
    from flows.ingest import ingest_fixtures
    from flows.settings import Settings
    from warehouse.connection import open_warehouse

    settings = settings or Settings()
    runs = {"English": [a for a in articles if a["lang"] == "en"], "other languages": [a for a in articles if a["lang"] != "en"]}
    timings = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        db = keep_db or scratch / "eval.duckdb"
        db.unlink(missing_ok=True)
        for position, (name, run) in enumerate(runs.items()):
            if not run:
                continue
            folder = scratch / f"run{position}"
            folder.mkdir()
            for article in run:
                (folder / f"{article['key']}.txt").write_text(article["text"], encoding="utf-8")
            started, cpu = time.perf_counter(), _cpu_seconds()
            ingest_fixtures(folder, db, settings)
            elapsed, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
            timings[f"run of {name} articles"] = f"{len(run)} articles, {elapsed:.1f} s, {1000 * cpu / len(run):.1f} CPU ms per article"
        with open_warehouse(db, read_only=True) as connection:
            rows = connection.execute(
                "SELECT url, article_id, duplicate_of, duplicate_kind, story_id, language FROM articles").fetchall()
    key_of = {article_id: url.rsplit("/", 1)[-1].removesuffix(".txt") for url, article_id, *_ in rows}
    group_of = {key_of[article_id]: key_of.get(duplicate_of or article_id) for _, article_id, duplicate_of, *_ in rows}
    story_of = {key_of[row[1]]: row[4] for row in rows}
    kind_of = {key_of[row[1]]: row[3] for row in rows}
    language_of = {key_of[row[1]]: row[5] for row in rows}
    return {"articles": len(articles), "stored": len(rows), **score(articles, scored_pairs, group_of, story_of, kind_of, language_of),
            **timings}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--translations", type=Path, help="folder with items.jsonl: doc_id, lang, topic, title, date, text")
    parser.add_argument("--documents", type=Path, help="folder with items.jsonl: docid, src_lang, tgt_lang, src, ref")
    parser.add_argument("--pairs", type=Path, help="folder with items.jsonl: pair_id, lang1, lang2, text1, text2, overall")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.add_argument("--keep-db", type=Path, default=None, help="write the database here instead of a temporary file")
    args = parser.parse_args(argv)
    sources = {"translations": args.translations, "documents": args.documents, "pairs": args.pairs}
    if not any(sources.values()):
        print("evaluate_languages: error: give --translations, --documents or --pairs", file=sys.stderr)
        return 2
    loaded = {}
    for name, folder in sources.items():
        if folder is None:
            loaded[name] = []
        elif not (folder / "items.jsonl").is_file():
            print(f"evaluate_languages: error: {folder / 'items.jsonl'} not found", file=sys.stderr)
            return 2
        else:
            loaded[name] = read_items(folder)
    logging.getLogger("prefect").setLevel(logging.WARNING)
    articles, scored_pairs = build_articles(loaded["translations"], loaded["documents"], loaded["pairs"])
    result = evaluate(articles, scored_pairs, keep_db=args.keep_db)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:62} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
