"""Story assignment rules on hand-made articles."""

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np

from extract.cluster import ClusterItem, Story, assign_stories
from extract.terms import TermWeights
from flows.settings import Settings

RULES = Settings().cluster_rules()

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
    result = assign_stories(items, [], weights(QUAKE, OTHER_QUAKE, QUAKE), RULES)
    assert result["a1"].story_id == result["a2"].story_id == "a1"
    assert result["b1"].story_id == "b1"
    assert result["a1"].opened and result["b1"].opened


def test_stored_story_keeps_its_id_and_members():
    stored = Story("s-old", vector(1, 0.1) * 3, Counter({t: 3 * c for t, c in QUAKE.items()}), DAY, DAY, {"x", "y", "z"})
    result = assign_stories([ClusterItem("n", vector(1, 0.1), QUAKE, DAY + timedelta(days=1))], [stored], weights(QUAKE, QUAKE), RULES)
    assert result["n"].story_id == "s-old" and not result["n"].opened
    assert stored.members == {"x", "y", "z", "n"}


def test_time_window_separates_events_far_apart():
    stored = Story("s-old", vector(1, 0.1), Counter(QUAKE), DAY, DAY, {"x"})
    late = ClusterItem("n", vector(1, 0.1), QUAKE, DAY + timedelta(days=30))
    result = assign_stories([late], [stored], weights(QUAKE, QUAKE), replace(RULES, window=timedelta(days=7)))
    assert result["n"].story_id == "n" and result["n"].opened


def test_new_names_weigh_more_than_common_words():
    w = TermWeights({"government": 50}, 100)
    assert w.idf("zelenskyy") > w.idf("government")
    assert w.idf("qwzvrbnyk") >= w.idf("zelenskyy")


def test_an_article_joins_only_stories_among_its_candidates():
    stored = Story("s-old", vector(1, 0.1), Counter(QUAKE), DAY, DAY, {"x"})
    elsewhere = Story("s-other", vector(0, 1), Counter(OTHER_QUAKE), DAY, DAY, {"y"})
    when = DAY + timedelta(hours=3)
    allowed = assign_stories(
        [ClusterItem("n", vector(1, 0.1), QUAKE, when, frozenset({"s-old"}))], [stored, elsewhere], weights(QUAKE, OTHER_QUAKE), RULES
    )
    assert allowed["n"].story_id == "s-old"
    stored.members.discard("n")
    refused = assign_stories(
        [ClusterItem("m", vector(1, 0.1), QUAKE, when, frozenset({"s-other"}))],
        [Story("s-old", vector(1, 0.1), Counter(QUAKE), DAY, DAY, {"x"}), elsewhere],
        weights(QUAKE, OTHER_QUAKE),
        RULES,
    )
    assert refused["m"].story_id == "m" and refused["m"].opened


def test_a_story_of_the_batch_is_always_a_candidate():
    items = [
        ClusterItem("a1", vector(1, 0.1), QUAKE, DAY, frozenset()),
        ClusterItem("a2", vector(1, 0.11), QUAKE, DAY + timedelta(hours=2), frozenset()),
    ]
    result = assign_stories(items, [], weights(QUAKE, QUAKE), RULES)
    assert result["a1"].story_id == result["a2"].story_id == "a1"


def test_incremental_story_weights_match_a_fresh_computation():
    """Members moving in and out during refinement leave the same scores as computing afresh."""
    rng = np.random.default_rng(0)
    vocabulary = [f"name{i}" for i in range(30)]
    items = [
        ClusterItem(f"a{i}", vector(*rng.random(4)), Counter({t: int(rng.integers(1, 3)) for t in rng.choice(vocabulary, 5)}),
                    DAY + timedelta(minutes=i))
        for i in range(40)
    ]
    w = weights(*(item.terms for item in items))
    result = assign_stories(items, [], w, replace(RULES, threshold=0.2, refine_passes=3))
    again = assign_stories(items, [], w, replace(RULES, threshold=0.2, refine_passes=3))
    assert result == again
    from extract.cluster import _Clustering

    state = _Clustering([], w, RULES)
    for item in items:
        state.place(item)
    state.refine(items)
    for row, story in enumerate(state.stories):
        if story.members:
            kept, norm = state._story_term_vector(row)
            fresh = w.vector(story.term_counts)
            assert kept.keys() == fresh.keys()
            assert all(abs(kept[t] - fresh[t]) < 1e-9 for t in fresh)
            assert abs(norm - np.sqrt(sum(v * v for v in fresh.values()))) < 1e-6
