"""Entity-level lexical evidence: names, places and numbers, weighted by how rare they are.

Embeddings tell what *kind* of event an article reports; the names and numbers in it tell
*which* event. Terms are weighted by inverse document frequency over the articles seen so far,
blended with a general-language prior (wordfreq) so that the weights are sensible from the
first article on and a name never seen before gets the highest weight.
"""

import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

# Words that are capitalised for grammatical reasons or too common in news to tell events apart.
_STOPWORDS = frozenset(
    """a an and or but nor of in on at to for with by from as is are was were be been being he she it
    they we i you his her their its our your this that these those there here when where while after
    before during since until if then than so not no yes mr mrs ms dr said says say told according
    monday tuesday wednesday thursday friday saturday sunday today yesterday tomorrow
    published updated am pm gmt utc edt est bst photo image video read share""".split()
)
_TOKEN = re.compile(r"[^\W\d_](?:[\w'’.&-]*\w)?|\d(?:[\d,.:]*\d)?")
_POSSESSIVE = re.compile(r"'s?$")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])\s+|\n+")


def extract_terms(title: str | None, text: str) -> Counter[str]:
    """Count the entity-like terms of an article: capitalised words and numbers.

    A capitalised word at the start of a sentence counts only if the article also capitalises it
    mid-sentence, so "After" or "Police" opening a sentence is not mistaken for a name.

    Args:
        title: Headline, or None.
        text: Body text.

    Returns:
        Lower-cased terms and their counts.
    """
    counts: Counter[str] = Counter()
    sentence_initial: Counter[str] = Counter()
    named = set()
    for sentence in _SENTENCE_BREAK.split(f"{title or ''}\n{text}"):
        for position, token in enumerate(_TOKEN.findall(sentence)):
            term = _POSSESSIVE.sub("", token.lower().rstrip(".").replace("’", "'"))
            if term in _STOPWORDS or not term:
                continue
            if token[0].isdigit():
                counts[term.replace(",", "")] += 1
            elif token[0].isupper():
                if position == 0:
                    sentence_initial[term] += 1
                else:
                    counts[term] += 1
                    named.add(term)
    for term, count in sentence_initial.items():
        if term in named:
            counts[term] += count
    return counts


@lru_cache(maxsize=200_000)
def _general_document_rate(term: str, language: str) -> float:
    from wordfreq import word_frequency

    # A word of frequency f turns up in roughly f * 400 of 400-word articles.
    return min(1.0, word_frequency(term, language) * 400)


@dataclass
class TermWeights:
    """Inverse document frequencies from the articles seen so far plus a general-language prior.

    Attributes:
        document_counts: In how many stored articles each term occurs.
        total_documents: How many articles those counts cover.
        prior_documents: Weight of the general-language prior, in pseudo-articles.
        language: wordfreq language code for the prior.
    """

    document_counts: Mapping[str, int] = field(default_factory=dict)
    total_documents: int = 0
    prior_documents: int = 1000
    language: str = "en"

    def idf(self, term: str) -> float:
        """Smoothed inverse document frequency of one term."""
        prior = self.prior_documents * _general_document_rate(term, self.language)
        seen = self.document_counts.get(term, 0)
        return math.log((self.total_documents + self.prior_documents + 1) / (seen + prior + 1)) + 1

    def vector(self, counts: Mapping[str, float]) -> dict[str, float]:
        """Sublinear tf-idf weights of a term count mapping."""
        return {term: (1 + math.log(count)) * self.idf(term) for term, count in counts.items() if count > 0}


def overlap(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Jaccard overlap of the term sets of two articles."""
    union = len(a.keys() | b.keys())
    return len(a.keys() & b.keys()) / union if union else 0.0
