"""The tantivy full-text index: matching, ranking, filters, replacement, state, concurrency, damage."""

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from extract.query import BatchMatcher, parse_query
from extract.search_index import (
    STATE_FILE,
    IndexState,
    SearchDocument,
    SearchIndex,
    SearchIndexBusy,
    SearchIndexError,
    discard,
    read_state,
)

START = datetime(2026, 11, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]

# (article id, story id, title, text); article i is seen i hours after START.
CORPUS = [
    ("a00", "s-musk", "Elon Musk visits Gaza", "The billionaire met officials in Gaza on Monday."),
    ("a01", "s-musk", "Musk met Elon", "Two engineers called Musk and Elon met for coffee."),
    ("a02", "s-musk", "Talks with Elon", "Musk said nothing about the talks."),
    ("a03", "s-musk", None, "Élon MUSK was invited to São Paulo for a summit."),
    ("a04", "s-musk", "ELON MUSK INVITATIONS", "Invitations were sent by Tesla."),
    ("a05", "s-ceasefire", "Ceasefire holds in Gaza", "Hamas and Israel agreed to a ceasefire after talks."),
    ("a06", "s-ceasefire", "Ceasefire talks stall", "Negotiators from Israel left Cairo."),
    ("a07", "s-sudan", "Ceasefire in Sudan", "Fighting paused in Khartoum, residents said."),
    ("a08", "s-sudan", "Sudan army and RSF", "The RSF said the ceasefire was broken."),
    ("a09", "s-covid", "Covid-19 cases rise", "Covid 19 hospital admissions rose in the U.S. this week."),
    ("a10", "s-covid", "Covid vaccine update", "A new vaccine against covid was approved."),
    ("a11", "s-covid", "U.S. health agency", "The US agency reported 19 new covid cases."),
    ("a12", "s-paulo", "São Paulo floods", "Heavy rain flooded São Paulo; Sao Paulo officials responded."),
    ("a13", "s-paulo", "Paulo Freire remembered", "The educator from Recife is remembered in Sao Paulo."),
    ("a14", "s-elections", "Elections in Poland", "Voters in Łódź and Kraków went to the polls."),
    ("a15", "s-elections", "Lodz turnout high", "Turnout in Lodz was the highest in years."),
    ("a16", "s-markets", "Markets rally", "Stocks rallied as the Federal Reserve held rates."),
    ("a17", "s-markets", "Federal Reserve holds rates", "The Fed held interest rates steady."),
    ("a18", "s-markets", "Rates and markets", "Markets fell; the reserve said rates stay federal policy."),
    ("a19", "s-tech", "Tesla recalls cars", "Tesla recalled cars over a software fault. Musk apologised."),
    ("a20", "s-tech", "SpaceX launch", "SpaceX launched a rocket; Elon was not there."),
    ("a21", "s-tech", "Rock and roll robots", "A robot band played rock and roll at the show."),
    ("a22", "s-tech", "New York startups", "New new york startups raised money in New York."),
    ("a23", "s-weather", "Storm hits coast", "A storm hit the coast; " + "z" * 45 + " warnings issued."),
    ("a24", "s-weather", "Storm warnings", "Warnings issued for the storm."),
    ("a25", "s-weather", "Heatwave in Europe", "Temperatures rose across Europe; Paris was hottest."),
    ("a26", "s-sport", "Poland wins", "Poland beat Brazil; fans in São Paulo were sad."),
    ("a27", "s-sport", "Brazil loses", "Brazil lost to Poland in a friendly."),
    ("a28", "s-sport", "Running season", "Runners ran in the run; running clubs grew."),
    ("a29", "s-misc", "!!!", "…"),
]

QUERIES = [
    "elon musk", '"elon musk"', "Élon MUSK invitations", "musk NOT gaza", "musk -tesla",
    "ceasefire AND (gaza OR sudan)", "ceasefire NOT hamas NOT israel", '"sao paulo"', "São Paulo OR Łódź",
    "covid-19", '"covid 19"', "U.S.", "us", "federal reserve", '"federal reserve"', '"reserve federal"',
    "rock and roll", '"new york"', '"new new york"', f'"coast {"q" * 50} warnings"', "storm -coast",
    "(poland OR brazil) NOT (sao OR running)", "running", "ran", "talks elon", '"elon musk" OR tesla OR spacex',
]


def documents(corpus=CORPUS):
    return [
        SearchDocument(article_id, story_id, title, text, START + timedelta(hours=i), START + timedelta(days=1, hours=i))
        for i, (article_id, story_id, title, text) in enumerate(corpus)
    ]


@pytest.fixture
def index(tmp_path):
    with SearchIndex(tmp_path / "search") as opened:
        opened.add_and_commit(documents())
        yield opened


def found(index, text, **filters):
    return {hit.article_id for hit in index.search(parse_query(text), limit=100, **filters)}


def test_index_and_batch_matcher_agree(index):
    matcher = BatchMatcher((article_id, title, text) for article_id, _, title, text in CORPUS)
    nonempty = 0
    for text in QUERIES:
        query = parse_query(text)
        assert found(index, text) == matcher.matches(query), text
        nonempty += bool(matcher.matches(query))
    assert nonempty >= len(QUERIES) - 1


def test_case_accents_and_stemming_are_folded(index):
    assert found(index, "Élon MUSK invitations") == {"a03", "a04"}
    assert found(index, "elon musk invited") == {"a03", "a04"}
    assert found(index, '"Sao Paulo"') == {"a03", "a12", "a13", "a26"}
    assert found(index, "lodz") == {"a14", "a15"}
    assert found(index, "ran") == {"a28"}  # the Porter stemmer leaves irregular forms alone
    assert found(index, "running") == found(index, "run") == {"a28"}


def test_phrase_needs_consecutive_tokens_in_one_field(index):
    assert found(index, '"elon musk"') == {"a00", "a03", "a04"}
    assert "a01" in found(index, "elon musk")  # "Musk met Elon" has both words
    assert "a02" not in found(index, '"elon musk"')  # "... Elon" ends the title, "Musk ..." starts the text
    assert found(index, '"federal reserve"') == {"a16", "a17"}
    assert found(index, '"reserve federal"') == set()
    # An overlong word the analyzer drops still holds its place in the phrase.
    assert found(index, f'"coast {"q" * 50} warnings"') == {"a23"}
    assert found(index, '"coast warnings"') == set()


def test_not_and_or(index):
    assert found(index, "ceasefire NOT hamas") == {"a06", "a07", "a08"}
    assert found(index, "ceasefire -israel -sudan") == set()
    assert found(index, "ceasefire NOT (israel OR rsf)") == {"a07"}
    assert found(index, '"elon musk" OR spacex') == {"a00", "a03", "a04", "a20"}


def test_title_matches_rank_higher(tmp_path):
    with SearchIndex(tmp_path / "search") as index:
        index.add_and_commit([
            SearchDocument("in-title", "s", "Gaza report", "words about other things today", START, START),
            SearchDocument("in-text", "s", "Daily report", "words about gaza things today", START, START),
            SearchDocument("neither", "s", "Weather report", "words about rain things today", START, START),
        ])
        hits = index.search(parse_query("gaza"))
    assert [hit.article_id for hit in hits] == ["in-title", "in-text"]
    assert hits[0].score > 1.5 * hits[1].score


def test_hits_are_best_first(index):
    hits = index.search(parse_query("musk OR ceasefire OR rates"), limit=100)
    assert len(hits) > 10
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))


def test_since_is_inclusive_and_until_exclusive(index):
    everything = found(index, "ceasefire")
    assert everything == {"a05", "a06", "a07", "a08"}
    assert found(index, "ceasefire", since=START + timedelta(hours=6)) == {"a06", "a07", "a08"}
    assert found(index, "ceasefire", until=START + timedelta(hours=6)) == {"a05"}
    assert found(index, "ceasefire", since=START + timedelta(hours=6), until=START + timedelta(hours=8)) == {"a06", "a07"}
    assert found(index, "ceasefire", since=START + timedelta(hours=8), until=START + timedelta(hours=8)) == set()
    # Any timezone: 06:00 UTC is 08:00 at UTC+2.
    plus_two = timezone(timedelta(hours=2))
    assert found(index, "ceasefire", since=datetime(2026, 11, 1, 8, tzinfo=plus_two)) == {"a06", "a07", "a08"}
    with pytest.raises(ValueError, match="timezone-aware"):
        index.search(parse_query("ceasefire"), since=datetime(2026, 11, 1))


def test_filters_do_not_change_scores(index):
    plain = {hit.article_id: hit.score for hit in index.search(parse_query("ceasefire"))}
    filtered = index.search(parse_query("ceasefire"), since=START, story_ids=["s-sudan"])
    assert filtered and all(hit.score == pytest.approx(plain[hit.article_id]) for hit in filtered)


def test_story_ids_filter(index):
    assert found(index, "ceasefire", story_ids=["s-sudan"]) == {"a07", "a08"}
    assert found(index, "ceasefire", story_ids={"s-sudan", "s-ceasefire", "nope"}) == {"a05", "a06", "a07", "a08"}
    assert found(index, "ceasefire", story_ids=[]) == set()
    hit = index.search(parse_query("khartoum"))[0]
    assert (hit.article_id, hit.story_id) == ("a07", "s-sudan")


def test_limit_keeps_the_best(index):
    everything = index.search(parse_query("musk"), limit=100)
    assert len(everything) == 6
    assert index.search(parse_query("musk"), limit=3) == everything[:3]
    with pytest.raises(ValueError):
        index.search(parse_query("musk"), limit=0)


def test_readding_replaces_and_delete_removes(index):
    assert index.count() == len(CORPUS)
    later = START + timedelta(days=5)
    index.add_and_commit([SearchDocument("a07", "s-sudan", "Truce in Sudan", "Khartoum is calm.", later, later)])
    assert index.count() == len(CORPUS)
    assert "a07" not in found(index, "ceasefire")
    assert found(index, "truce") == {"a07"}
    # The same id twice in one batch keeps the last.
    index.add_and_commit([
        SearchDocument("new", "s-x", "First draft", "alpha", later, later),
        SearchDocument("new", "s-x", "Second draft", "beta", later, later),
    ])
    assert index.count() == len(CORPUS) + 1
    assert found(index, "draft") == {"new"} and found(index, "alpha") == set()
    assert index.delete(["a07", "new", "unknown"]) == 2
    index.commit()
    assert index.count() == len(CORPUS) - 1
    assert found(index, "truce OR draft") == set()


def test_state_file_round_trip_and_staleness(tmp_path):
    folder = tmp_path / "search"
    with SearchIndex(folder) as index:
        assert index.state == IndexState(1, "newswatch_en_v1", 0, None)
        assert index.is_current(0, None)
        first = documents()[:10]
        index.add_and_commit(first)
        latest = max(document.ingested_at for document in first)
        assert index.state.documents == 10 and index.state.ingested_until == latest
        assert index.is_current(10, latest)
        assert not index.is_current(11, latest)
        assert not index.is_current(10, latest + timedelta(seconds=1))
        # Adding older documents never moves ingested_until back.
        index.add_and_commit([SearchDocument("old", "s", None, "old text", START, START - timedelta(days=30))])
        assert index.state.ingested_until == latest
        index.delete(["old"])
        index.commit()
    assert read_state(folder) == IndexState(1, "newswatch_en_v1", 10, latest)
    assert [name for name in os.listdir(folder) if name.endswith(".tmp")] == []
    with SearchIndex(folder) as reopened:
        assert reopened.is_current(10, latest)
        assert reopened.count() == 10
        reopened.clear()
        assert reopened.count() == 0 and reopened.state == IndexState(1, "newswatch_en_v1", 0, None)
    assert read_state(tmp_path / "missing") is None


def test_index_without_state_file_is_not_current(index):
    (index.folder / STATE_FILE).unlink()
    with SearchIndex(index.folder) as reopened:
        assert reopened.state is None
        assert not reopened.is_current(len(CORPUS), START + timedelta(days=1, hours=29))
        assert reopened.count() == len(CORPUS)


def test_uncommitted_changes_are_rolled_back_on_close(tmp_path):
    folder = tmp_path / "search"
    with SearchIndex(folder) as index:
        index.add(documents()[:3])
        assert index.count() == 0
    with SearchIndex(folder) as reopened:
        assert reopened.count() == 0


def test_naive_times_are_refused(tmp_path):
    with SearchIndex(tmp_path / "search") as index:
        with pytest.raises(ValueError, match="seen_at must be timezone-aware"):
            index.add([SearchDocument("a", "s", None, "x", datetime(2026, 1, 1), START)])


def test_a_second_index_searches_while_the_first_holds_the_writer(index):
    with SearchIndex(index.folder) as reader:
        assert found(reader, '"elon musk"') == {"a00", "a03", "a04"}
        with pytest.raises(SearchIndexBusy, match="being written by another process"):
            reader.add(documents()[:1])
        later = START + timedelta(days=9)
        index.add_and_commit([SearchDocument("late", "s-late", "Late news", "late", later, later)])
        reader.refresh()
        assert found(reader, "late") == {"late"}
        assert reader.state.documents == len(CORPUS) + 1
        assert reader.is_current(len(CORPUS) + 1, later)
        index.close()
        reader.add_and_commit([SearchDocument("after", "s-late", "After", "after", later, later)])
        assert reader.count() == len(CORPUS) + 2


def test_another_process_holding_the_writer(tmp_path):
    folder = tmp_path / "search"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from datetime import datetime, UTC
            from pathlib import Path
            from extract.search_index import SearchDocument, SearchIndex
            now = datetime(2026, 11, 1, tzinfo=UTC)
            index = SearchIndex(Path({str(folder)!r}))
            index.add_and_commit([SearchDocument("child", "s", "From the child", "written elsewhere", now, now)])
            print("ready", flush=True)
            sys.stdin.readline()
            index.close()
        """)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        with SearchIndex(folder) as reader:
            assert found(reader, "elsewhere") == {"child"}
            with pytest.raises(SearchIndexBusy):
                reader.delete(["child"])
            child.communicate("done\n", timeout=30)
            assert reader.delete(["child"]) == 1
            reader.commit()
            assert reader.count() == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.parametrize("damage", [
    "meta garbage", "segment missing", "segment truncated", "segment overwritten", "meta missing", "state garbage",
])
def test_damage_is_a_search_index_error_and_discard_allows_a_rebuild(index, damage):
    folder = index.folder
    index.close()
    segment = next(path for path in folder.iterdir() if path.suffix == ".idx")
    if damage == "meta garbage":
        (folder / "meta.json").write_text("{not json", encoding="utf-8")
    elif damage == "segment missing":
        segment.unlink()
    elif damage == "segment truncated":
        with open(segment, "r+b") as file:
            file.truncate(10)
    elif damage == "segment overwritten":
        # Makes tantivy panic (pyo3's PanicException, a BaseException) rather than raise an error.
        size = segment.stat().st_size
        with open(segment, "r+b") as file:
            file.seek(size // 10)
            file.write(b"\xff" * max(8, size // 10))
    elif damage == "meta missing":
        (folder / "meta.json").unlink()
    else:
        (folder / STATE_FILE).write_text("{", encoding="utf-8")
    with pytest.raises(SearchIndexError) as caught:
        with SearchIndex(folder) as damaged:
            damaged.search(parse_query("musk"))
    assert "rebuild" in str(caught.value) and "\n" not in str(caught.value)
    discard(folder)
    assert not folder.exists()
    with SearchIndex(folder) as rebuilt:
        rebuilt.add_and_commit(documents())
        assert found(rebuilt, '"elon musk"') == {"a00", "a03", "a04"}


def test_another_version_is_refused(index):
    index.close()
    state = read_state(index.folder)
    (index.folder / STATE_FILE).write_text(
        IndexState(state.format + 1, state.analyzer, state.documents, state.ingested_until).to_json(), encoding="utf-8"
    )
    with pytest.raises(SearchIndexError, match="another version"):
        SearchIndex(index.folder)


def test_foreign_folders_are_neither_opened_nor_discarded(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(SearchIndexError, match="holds other files"):
        SearchIndex(folder)
    with pytest.raises(SearchIndexError, match="not a search index folder"):
        discard(folder)
    assert (folder / "holiday.jpg").exists()
    discard(tmp_path / "missing")  # nothing to do


def test_index_keeps_no_texts(index):
    """Only ids are stored: the warehouse keeps the texts."""
    size = sum(path.stat().st_size for path in index.folder.iterdir() if path.suffix == ".store")
    assert size < sum(len(text) for *_, text in CORPUS)
