"""Duplicate rules on hand-made articles (vectors chosen to isolate each rule)."""

import numpy as np

from extract.dedupe import DedupeItem, find_duplicates, jaccard, shingles
from flows.settings import Settings

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


def test_rewrite_needs_close_vectors_shared_names_and_a_margin():
    names = {"springfield": 1, "2030": 1, "council": 1}
    original = item("a", text="Springfield council votes.", vector=unit(1, 0), terms=names)
    rewrite = item("b", text="The vote in Springfield council.", vector=unit(1, 0.2), terms=names)
    far = item("z", text="Unrelated.", vector=unit(0, 1), terms={"paris": 1})
    assert find_duplicates([rewrite], [original, far], RULES)["b"].kind == "rewrite"
    # Other names and numbers: another article about the event, not a rewrite.
    other = item("c", text="Residents react.", vector=unit(1, 0.2), terms={"springfield": 1, "smith": 1, "12": 1})
    assert find_duplicates([other], [original, far], RULES) == {}
    # A third article as close as the pair: nothing stands out, no rewrite.
    rival = item("d", text="Council decision.", vector=unit(1, 0.1, 0.05), terms=names)
    assert find_duplicates([rewrite], [original, rival], RULES) == {}


def test_below_thresholds_is_not_a_duplicate():
    assert find_duplicates([item("b", text="A different text about trains.", vector=unit(1, 1))], [item("a")], RULES) == {}
