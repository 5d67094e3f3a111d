"""Embedding speed and agreement of each backend (torch, openvino, openvino-int8) on real articles.

The texts come from `--data`: an article-extraction folder (`html/*.html`, e.g.
`A1_scrapinghub_aeb/dev`, extracted with the pipeline's own `article_from_html`), a folder of
`*.txt` article files, or a `docs.jsonl` with a `text` per line. Each backend embeds all of them
whole, chunk by chunk, exactly as the pipeline does (`Embedder.embed`), `--repeat` times after a
warm-up, the backends taking turns so that load from other processes falls on all alike; the
best and median runs give articles/s and chunks/s. Agreement with torch is the cosine between
the two whole-article vectors of each text (worst and mean), and the largest change of any
article-to-article similarity (what the duplicate and story thresholds see).

Loading includes the one-time OpenVINO export when no cached export exists (`load s`).

Example:
    python bench/embed_backends.py --data ../shared/eval/A1_scrapinghub_aeb/dev --threads 2
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def read_texts(folder: Path) -> list[str]:
    """Article texts of a folder of saved pages, text files or a docs.jsonl."""
    from extract.content import article_from_html, article_from_text

    if (folder / "docs.jsonl").is_file():
        lines = (folder / "docs.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line)["text"] for line in lines if line.strip()]
    pages_folder = folder / "html" if (folder / "html").is_dir() else folder
    texts = []
    for path in sorted(pages_folder.glob("*.htm*")):
        article = article_from_html(path.read_bytes(), path.resolve().as_uri())
        if article is not None:
            texts.append(article.text)
    for path in sorted(folder.glob("*.txt")):
        texts.append(article_from_text(path.read_text(encoding="utf-8"), path.resolve().as_uri()).text)
    return [text for text in texts if text.strip()]


def measure(backends: list[str], texts: list[str], args) -> list[dict]:
    """Load every backend, then time whole-article embedding of all texts, the backends taking turns.

    Taking turns spreads any load from other processes over all backends alike.
    """
    import numpy as np

    from extract.embed import Embedder

    embedders, load_seconds = {}, {}
    for backend in backends:
        started = time.perf_counter()
        embedders[backend] = Embedder(
            chunk_tokens=args.chunk_tokens, batch_size=args.batch_size, threads=args.threads, backend=backend,
            export_dir=args.export_dir,
        ).load()
        load_seconds[backend] = time.perf_counter() - started
        embedders[backend].embed(texts[: max(1, len(texts) // 10)])  # warm-up: first-call allocations
    seconds = {backend: [] for backend in backends}
    outputs = {}
    for _ in range(args.repeat):
        for backend in backends:
            started = time.perf_counter()
            outputs[backend] = embedders[backend].embed(texts)
            seconds[backend].append(time.perf_counter() - started)
    results = []
    for backend in backends:
        vectors, chunk_counts = outputs[backend]
        best, median = min(seconds[backend]), statistics.median(seconds[backend])
        results.append({
            "backend": backend,
            "in_use": embedders[backend].backend_in_use,
            "load_s": round(load_seconds[backend], 1),
            "best_s": round(best, 2),
            "median_s": round(median, 2),
            "docs_per_s": round(len(texts) / best, 1),
            "docs_per_s_median": round(len(texts) / median, 1),
            "chunks_per_s": round(sum(chunk_counts) / best, 1),
            "chunks": sum(chunk_counts),
            "vectors": np.asarray(vectors),
        })
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of html/*.html pages, *.txt files or a docs.jsonl")
    parser.add_argument("--backends", default="torch,openvino,openvino-int8", help="comma-separated; torch is the reference")
    parser.add_argument("--threads", type=int, default=2, help="inference threads (0: the library's default)")
    parser.add_argument("--batch-size", type=int, default=32, help="chunks per batch")
    parser.add_argument("--chunk-tokens", type=int, default=128, help="word pieces per chunk")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per backend (best and median reported)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N texts")
    parser.add_argument("--export-dir", type=Path, default=None, help="where OpenVINO exports are kept (default: beside the model)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"embed_backends: error: {args.data} is not a folder", file=sys.stderr)
        return 2
    texts = read_texts(args.data)[: args.limit]
    if not texts:
        print(f"embed_backends: error: no article texts in {args.data}", file=sys.stderr)
        return 2
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    if "torch" not in backends:
        backends.insert(0, "torch")

    results = measure(backends, texts, args)
    reference = next(result for result in results if result["backend"] == "torch")
    torch_rate = reference["docs_per_s"]
    reference_vectors = reference["vectors"]
    reference_similarities = reference_vectors @ reference_vectors.T
    for result in results:
        vectors = result.pop("vectors")
        cosines = (vectors * reference_vectors).sum(axis=1)
        result["speedup"] = round(result["docs_per_s"] / torch_rate, 2)
        result["worst_cosine"] = round(float(cosines.min()), 5)
        result["mean_cosine"] = round(float(cosines.mean()), 5)
        result["max_similarity_shift"] = round(float(abs(vectors @ vectors.T - reference_similarities).max()), 4)

    summary = {
        "texts": len(texts),
        "chunks": reference["chunks"],
        "threads": args.threads,
        "batch_size": args.batch_size,
        "chunk_tokens": args.chunk_tokens,
        "results": results,
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{len(texts)} articles, {reference['chunks']} chunks of <= {args.chunk_tokens} word pieces, "
          f"{args.threads or 'default'} threads, batch {args.batch_size}, best of {args.repeat}")
    header = ["backend", "in use", "load s", "docs/s", "docs/s median", "chunks/s", "speed-up", "worst cos", "mean cos", "max sim shift"]
    keys = ["backend", "in_use", "load_s", "docs_per_s", "docs_per_s_median", "chunks_per_s", "speedup", "worst_cosine", "mean_cosine", "max_similarity_shift"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for result in results:
        print("| " + " | ".join(str(result[key]) for key in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
