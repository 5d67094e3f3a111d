"""Duplicate rules on hand-made articles (vectors chosen to isolate each rule)."""

import numpy as np

from extract.dedupe import DedupeItem, find_duplicates, jaccard, shingles
from extract.terms import extract_terms
from flows.settings import Settings
from tests.rewrite_texts import ORIGINAL, OTHER, REWRITE

RULES = Settings().dedupe_rules()

TEXT = (
    "The city council of Springfield voted on Monday to close the old power plant by 2030, "
    "after years of complaints from residents about the smoke and the noise near the river."
)


def unit(*values):
    vector = np.zeros(8, dtype=np.float32)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


def item(article_id, text=TEXT, vector=None, terms=None, url=None, digest=None, duplicate_of=None):
    return DedupeItem(
        article_id, url or f"https://example.org/{article_id}", digest or f"hash-{article_id}", text,
        unit(1, 0) if vector is None else vector, terms or {"springfield": 1, "2030": 1}, duplicate_of,
    )


def test_shingle_jaccard():
    assert jaccard(shingles(TEXT), shingles(TEXT)) == 1.0
    assert jaccard(shingles(TEXT), shingles("Something else entirely happened in another town today.")) == 0.0


def test_same_canonical_url_and_same_text():
    matches = find_duplicates(
        [item("b", url="https://example.org/a"), item("c", digest="hash-a", text="other words here")],
        [item("a")],
        RULES,
    )
    assert (matches["b"].kind, matches["b"].original_id) == ("url", "a")
    assert (matches["c"].kind, matches["c"].original_id) == ("exact", "a")


def test_light_edit_is_a_copy_and_links_to_the_root():
    edited = TEXT.replace("Monday", "Tuesday")
    matches = find_duplicates([item("c", text=edited + " Officials agreed.")], [item("a"), item("b", duplicate_of="a")], RULES)
    assert matches["c"].kind == "copy"
    assert matches["c"].original_id == "a"


def test_a_rewrite_is_scored_by_its_text_and_must_stand_out():
    def article(article_id, text, vector):
        return item(article_id, text=text, vector=vector, terms=extract_terms(None, text))

    original = article("a", ORIGINAL, unit(1, 0))
    rewrite = article("b", REWRITE, unit(1, 0.45))  # cosine 0.91
    far = item("z", text="Unrelated.", vector=unit(0, 1), terms={"paris": 1})
    match = find_duplicates([rewrite], [original, far], RULES)["b"]
    assert (match.kind, match.original_id) == ("rewrite", "a")
    assert RULES.rewrite_probability <= match.similarity <= 1  # the rewrite model's probability
    # Another article on the event, as close by its vector: its text says it is not a rewrite.
    other = article("c", OTHER, unit(1, 0.45))
    assert find_duplicates([other], [original, far], RULES) == {}
    # A third article as close as the pair, and no rewrite of either: nothing stands out.
    rival = article("d", OTHER, unit(1, 0.4, 0.1))
    assert find_duplicates([rewrite], [original, rival], RULES) == {}
    # Two rewrites of one article are close to each other too: they do not hide each other.
    second = article("e", REWRITE.replace("announced Tuesday", "said on Tuesday"), unit(1, 0.4, 0.1))
    matches = find_duplicates([rewrite, second], [original, far], RULES)
    assert {key: m.original_id for key, m in matches.items()} == {"b": "a", "e": "a"}


def test_nearly_identical_whole_articles_sharing_their_names_are_rewrites_whatever_the_model_says():
    names = {"springfield": 1, "2030": 1, "council": 1}
    original = item("a", text="Springfield council votes.", vector=unit(1, 0), terms=names)
    rewrite = item("b", text="The vote in Springfield council.", vector=unit(1, 0.2), terms=names)  # cosine 0.98
    far = item("z", text="Unrelated.", vector=unit(0, 1), terms={"paris": 1})
    match = find_duplicates([rewrite], [original, far], RULES)["b"]
    assert match.kind == "rewrite" and match.similarity < RULES.rewrite_probability
    # Such a pair must stand out from every third article, even a rewrite of one side.
    rival = item("d", text="Council decision.", vector=unit(1, 0.1, 0.05), terms=names)
    assert find_duplicates([rewrite], [original, rival], RULES) == {}


def test_a_pair_under_the_gate_is_not_compared():
    original = item("a", text=ORIGINAL, vector=unit(1, 0))
    rewrite = item("b", text=REWRITE, vector=unit(1, 1.2))  # cosine 0.64
    assert find_duplicates([rewrite], [original], RULES) == {}


def test_below_thresholds_is_not_a_duplicate():
    assert find_duplicates([item("b", text="A different text about trains.", vector=unit(1, 1))], [item("a")], RULES) == {}
