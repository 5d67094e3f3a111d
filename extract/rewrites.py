"""Rewrite evidence: what a rewrite keeps of its original and a different article on the same event does not.

A rewrite (a paraphrase, a condensed or polished version of one article) tells the same facts
with the same names, numbers and rarer words, in the same order, from its first paragraph to its
last, and keeps many of its short word sequences even where it rephrases. A different article on
the same event shares the topic and some names, but brings names, numbers and wording of its
own, in its own order, and shares mostly its lead. Rewrites condense, so every lexical measure
is the *containment* of the shorter text in the longer, not a Jaccard.

The evidence of a pair (`FEATURES`) is scored by a logistic model fitted on labelled pairs by
`bench/train_rewrites.py` and shipped as package data (`rewrite_model.json`, with its version,
training data and cross-validated metrics): `RewriteModel.probability` is the calibrated
probability that the pair is a rewrite. Sentence alignment by embedding (monotonic, in order)
was measured too and added nothing to these features on the training data, at the price of
embedding every sentence; it is not used.
"""

import json
import math
import re
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from itertools import pairwise
from pathlib import Path

import numpy as np

from extract.terms import extract_terms

# Words rarer than this (wordfreq's Zipf scale: 4.5 is about 30 per million words) carry the facts.
RARE_ZIPF = 4.5

FEATURES = (
    "cosine",  # whole-article embedding cosine
    "names_and_numbers",  # share of the shorter text's names and numbers found in the longer
    "numbers",  # share of its numbers (1 when it has none)
    "rare_words",  # share of its rarer words
    "bigrams",  # share of its word pairs
    "trigrams",  # share of its word triples
    "length_ratio",  # shorter text's words over the longer's
    "rare_word_order",  # share of the shared rarer words that keep their order (longest increasing run)
    "ordered_rare_words",  # rare_words × rare_word_order
    "rare_word_spread",  # share of the longer text's tenths holding a shared rarer word
    "trigram_spread_longer",  # share of the longer text's tenths holding a shared word triple
    "trigram_spread_shorter",  # the same in the shorter text
    "shared_rare_words",  # log(1 + how many rarer words the shorter text shares)
)

SEGMENTS = 10  # the spreads count tenths of a text

MODEL_FILE = "rewrite_model.json"

_WORD = re.compile(r"\w+")


@lru_cache(maxsize=200_000)
def _zipf(word: str, language: str) -> float:
    from wordfreq import zipf_frequency

    return zipf_frequency(word, language)


@dataclass(frozen=True)
class TextProfile:
    """What the evidence needs of one text, computed once per article."""

    words: int
    sequence: tuple[str, ...]
    vocabulary: frozenset[str]
    rare: frozenset[str]
    terms: frozenset[str]
    numbers: frozenset[str]
    bigrams: frozenset[int]
    trigrams: frozenset[int]


def profile(text: str, language: str = "en") -> TextProfile:
    """The words, rarer words, names, numbers and word n-grams of a text."""
    words = _WORD.findall(text.lower())
    terms = frozenset(extract_terms(None, text))
    return TextProfile(
        words=len(words),
        sequence=tuple(words),
        vocabulary=frozenset(words),
        rare=frozenset(word for word in set(words) if _zipf(word, language) < RARE_ZIPF),
        terms=terms,
        numbers=frozenset(term for term in terms if term[0].isdigit()),
        bigrams=frozenset(hash(pair) for pair in pairwise(words)),
        trigrams=frozenset(hash(triple) for triple in zip(words, words[1:], words[2:])),
    )


def _containment(small: frozenset, large: frozenset, empty: float = 0.0) -> float:
    return len(small & large) / len(small) if small else empty


def _longest_increasing(sequence: list[int]) -> int:
    tails: list[int] = []
    for value in sequence:
        at = bisect_left(tails, value)
        tails[at:at + 1] = [value]
    return len(tails)


def _spread(words: tuple[str, ...], shared: frozenset) -> float:
    """Share of a word sequence's tenths that hold a word triple of `shared`."""
    if len(words) < 3:
        return 0.0
    tenths = {SEGMENTS * at // len(words) for at, triple in enumerate(zip(words, words[1:], words[2:])) if hash(triple) in shared}
    return len(tenths) / SEGMENTS


def evidence(a: TextProfile, b: TextProfile, cosine: float) -> np.ndarray:
    """The pair's features, in `FEATURES` order (symmetric: the shorter text is measured in the longer)."""
    short, long = (a, b) if (a.words, a.sequence) <= (b.words, b.sequence) else (b, a)
    first: dict[str, int] = {}
    for at, word in enumerate(long.sequence):
        first.setdefault(word, at)
    shared_rare, seen = [], set()
    for word in short.sequence:
        if word in short.rare and word in first and word not in seen:
            seen.add(word)
            shared_rare.append(first[word])
    rare = _containment(short.rare, long.vocabulary)
    order = _longest_increasing(shared_rare) / len(shared_rare) if shared_rare else 0.0
    tenths = {SEGMENTS * first[word] // len(long.sequence) for word in seen}
    triples = short.trigrams & long.trigrams
    return np.array([
        cosine,
        _containment(short.terms, long.terms),
        _containment(short.numbers, long.numbers, empty=1.0),
        rare,
        _containment(short.bigrams, long.bigrams),
        _containment(short.trigrams, long.trigrams),
        short.words / long.words if long.words else 0.0,
        order,
        rare * order,
        len(tenths) / SEGMENTS,
        _spread(long.sequence, triples),
        _spread(short.sequence, triples),
        math.log1p(len(shared_rare)),
    ], dtype=np.float64)


class RewriteModelError(ValueError):
    """The rewrite model file is missing, malformed or made for other features."""


@dataclass(frozen=True)
class RewriteModel:
    """A fitted logistic model of the evidence: standardised features, coefficients and intercept."""

    version: str
    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coefficients: np.ndarray
    intercept: float
    metadata: dict

    def probability(self, features: np.ndarray) -> float:
        """The probability that a pair with this evidence is a rewrite."""
        z = float(((features - self.mean) / self.scale) @ self.coefficients + self.intercept)
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """`probability` of each row of a feature matrix."""
        z = ((np.atleast_2d(features) - self.mean) / self.scale) @ self.coefficients + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def to_json(self) -> dict:
        return {
            "version": self.version,
            "features": list(self.features),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coefficients": self.coefficients.tolist(),
            "intercept": self.intercept,
            **self.metadata,
        }

    @classmethod
    def from_json(cls, data: dict) -> "RewriteModel":
        try:
            features = tuple(data["features"])
            arrays = [np.asarray(data[key], dtype=np.float64) for key in ("mean", "scale", "coefficients")]
            model = cls(
                version=str(data["version"]), features=features, mean=arrays[0], scale=arrays[1],
                coefficients=arrays[2], intercept=float(data["intercept"]),
                metadata={key: value for key, value in data.items()
                          if key not in {"version", "features", "mean", "scale", "coefficients", "intercept"}},
            )
        except (KeyError, TypeError, ValueError) as error:
            raise RewriteModelError(f"malformed rewrite model: {type(error).__name__}: {error}") from error
        if features != FEATURES:
            raise RewriteModelError(f"rewrite model made for features {list(features)}, not {list(FEATURES)}")
        if any(array.shape != (len(FEATURES),) or not np.all(np.isfinite(array)) for array in arrays) or np.any(arrays[1] <= 0):
            raise RewriteModelError("rewrite model holds arrays of the wrong shape or non-finite values")
        return model


def load_model(path: Path | None = None) -> RewriteModel:
    """The rewrite model: the packaged one, or the file at `path`."""
    if path is None:
        return _packaged_model()
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RewriteModelError(f"cannot read rewrite model {path}: {error}") from error
    return RewriteModel.from_json(data)


@lru_cache(maxsize=1)
def _packaged_model() -> RewriteModel:
    text = resources.files("extract").joinpath(MODEL_FILE).read_text(encoding="utf-8")
    return RewriteModel.from_json(json.loads(text))


def fit(features: Sequence[np.ndarray], labels: Sequence[int], *, regularisation: float = 1.0, seed: int = 0) -> RewriteModel:
    """Fit the logistic model (scikit-learn) on labelled pairs' evidence; `metadata` is left for the caller."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    fitted = LogisticRegression(C=regularisation, max_iter=5000, random_state=seed).fit((x - mean) / scale, y)
    return RewriteModel("", FEATURES, mean, scale, fitted.coef_[0].astype(np.float64), float(fitted.intercept_[0]), {})
