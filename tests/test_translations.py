"""Translations: an article in another language that renders a stored or earlier one is its `translation` duplicate.

The fixtures (`tests/fixtures/languages/`) are an English article, its German translation and a
German article on another bridge closure (same kind of event, other names and numbers).
"""

import shutil
from pathlib import Path

import numpy as np
import pytest

from extract.translations import (
    MODEL_KEY, MultilingualEncoder, TranslationRules, is_translation, number_share, numbers, supported,
)
from flows.ingest import ingest_fixtures
from flows.settings import Settings

LANGUAGES = Path(__file__).parent / "fixtures" / "languages"
ENGLISH, GERMAN, OTHER_GERMAN = "kessling_bridge_en.txt", "kessling_bridge_de.txt", "marnfeld_bridge_de.txt"
RULES = TranslationRules(high=0.84, low=0.7)


def test_numbers_are_the_same_in_every_script_and_notation():
    assert numbers("42,000 cars; 42.000 Autos; ４２０００ 台") == {"42000"}
    assert numbers("at 6:30 a.m., 38 million") == {"630", "38"}
    assert number_share(frozenset({"1", "2", "3"}), frozenset({"1", "2", "3", "4", "5"})) == (1.0, 3)
    assert number_share(frozenset(), frozenset({"1"})) == (0.0, 0)


def test_the_rule_needs_a_high_cosine_or_a_lower_one_with_the_numbers_kept():
    kept, other = frozenset({"14", "38", "42000", "120"}), frozenset({"18500", "1972", "311", "90"})
    assert is_translation(0.9, other, kept, RULES)  # close enough alone
    assert is_translation(0.75, kept, kept | {"7"}, RULES)
    assert not is_translation(0.75, kept, other, RULES)  # same kind of event, other figures
    assert not is_translation(0.75, frozenset({"14", "38"}), frozenset({"14", "38"}), RULES)  # too few numbers to tell
    assert not is_translation(0.65, kept, kept, RULES)  # under the lower bar


def test_supported_languages_are_those_of_the_encoder():
    assert supported("de") and supported("pt-BR") and supported("zh")
    assert not supported("is") and not supported(None) and not supported("")


def test_the_encoder_puts_a_translation_close_and_another_event_far():
    texts = [(LANGUAGES / name).read_text(encoding="utf-8") for name in (ENGLISH, GERMAN, OTHER_GERMAN)]
    vectors = MultilingualEncoder().embed(texts)
    assert vectors.shape == (3, 512) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    cosines = vectors @ vectors.T
    assert cosines[0, 1] >= RULES.low and cosines[0, 1] > cosines[0, 2] + 0.1 and cosines[1, 2] < RULES.low
    assert is_translation(float(cosines[0, 1]), numbers(texts[0]), numbers(texts[1]), RULES)


def _rows(query, db):
    return {url.rsplit("/", 1)[1]: (article_id, duplicate_of, kind, story, language) for url, article_id, duplicate_of, kind, story, language in
            query(db, "SELECT url, article_id, duplicate_of, duplicate_kind, story_id, language FROM articles")}


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("runs", [[[ENGLISH], [GERMAN, OTHER_GERMAN]], [[ENGLISH, GERMAN, OTHER_GERMAN]]], ids=["stored", "in-batch"])
def test_a_translation_is_linked_to_its_original_and_joins_its_story(tmp_path, query, runs):
    db = tmp_path / "nw.duckdb"
    for number, names in enumerate(runs):
        folder = tmp_path / f"run{number}"
        folder.mkdir()
        for name in names:
            shutil.copy(LANGUAGES / name, folder / name)
        ingest_fixtures(folder, db, Settings())
    rows = _rows(query, db)
    assert {name: row[4] for name, row in rows.items()} == {ENGLISH: "en", GERMAN: "de", OTHER_GERMAN: "de"}
    # The one seen first is the original; in one batch of undated files, the first by name.
    original, translation = (ENGLISH, GERMAN) if len(runs) == 2 else (GERMAN, ENGLISH)
    assert rows[translation][1:3] == (rows[original][0], "translation")
    assert rows[translation][3] == rows[original][3]
    assert rows[OTHER_GERMAN][1] is None and rows[original][1] is None
    (vectors,) = query(db, "SELECT count(*) FROM embeddings WHERE model = ?", [MODEL_KEY])[0]
    assert vectors == 3  # each article once, the stored English one included


@pytest.mark.usefixtures("prefect_server")
def test_one_language_never_loads_the_multilingual_model_and_a_setting_turns_it_off(tmp_path, query):
    db = tmp_path / "nw.duckdb"
    ingest_fixtures(_english_seeds(tmp_path), db, Settings())
    assert query(db, "SELECT count(*) FROM embeddings WHERE model = ?", [MODEL_KEY]) == [(0,)]
    off = tmp_path / "off.duckdb"
    folder = tmp_path / "both"
    folder.mkdir()
    for name in (ENGLISH, GERMAN):
        shutil.copy(LANGUAGES / name, folder / name)
    ingest_fixtures(folder, off, Settings(translations=False))
    rows = _rows(query, off)
    assert rows[GERMAN][2] is None
    assert query(off, "SELECT count(*) FROM embeddings WHERE model = ?", [MODEL_KEY]) == [(0,)]


def _english_seeds(tmp_path: Path) -> Path:
    from tests.seed_site import SEEDS

    folder = tmp_path / "seeds"
    shutil.copytree(SEEDS, folder)
    return folder
