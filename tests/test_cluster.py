"""Story assignment rules on hand-made articles."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np

from extract.cluster import ClusterItem, ClusterRules, Story, assign_stories
from extract.terms import TermWeights

DAY = datetime(2024, 5, 1, tzinfo=UTC)
QUAKE = {"aceh": 2, "sumatra": 1, "6.1": 1}
OTHER_QUAKE = {"lombok": 2, "bali": 1, "7.0": 1}


def vector(*values):
    v = np.zeros(4, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


def weights(*term_sets):
    counts = Counter()
    for terms in term_sets:
        counts.update(terms.keys())
    return TermWeights(counts, len(term_sets))


def test_same_names_share_a_story_and_the_earliest_names_it():
    items = [
        ClusterItem("a1", vector(1, 0.1), QUAKE, DAY),
        ClusterItem("b1", vector(1, 0.12), OTHER_QUAKE, DAY + timedelta(hours=1)),
        ClusterItem("a2", vector(1, 0.11), QUAKE, DAY + timedelta(hours=2)),
    ]
    result = assign_stories(items, [], weights(QUAKE, OTHER_QUAKE, QUAKE))
    assert result["a1"].story_id == result["a2"].story_id == "a1"
    assert result["b1"].story_id == "b1"
    assert result["a1"].opened and result["b1"].opened


def test_stored_story_keeps_its_id_and_members():
    stored = Story("s-old", vector(1, 0.1) * 3, Counter({t: 3 * c for t, c in QUAKE.items()}), DAY, DAY, {"x", "y", "z"})
    result = assign_stories([ClusterItem("n", vector(1, 0.1), QUAKE, DAY + timedelta(days=1))], [stored], weights(QUAKE, QUAKE))
    assert result["n"].story_id == "s-old" and not result["n"].opened
    assert stored.members == {"x", "y", "z", "n"}


def test_time_window_separates_events_far_apart():
    stored = Story("s-old", vector(1, 0.1), Counter(QUAKE), DAY, DAY, {"x"})
    late = ClusterItem("n", vector(1, 0.1), QUAKE, DAY + timedelta(days=30))
    result = assign_stories([late], [stored], weights(QUAKE, QUAKE), ClusterRules(window=timedelta(days=7)))
    assert result["n"].story_id == "n" and result["n"].opened


def test_new_names_weigh_more_than_common_words():
    w = TermWeights({"government": 50}, 100)
    assert w.idf("zelenskyy") > w.idf("government")
    assert w.idf("qwzvrbnyk") >= w.idf("zelenskyy")
