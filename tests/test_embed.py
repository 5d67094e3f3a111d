"""Whole-article embeddings with the bundled model: long articles are read to the end."""

import numpy as np
import pytest

from extract.embed import Embedder, split_sentences

OPENING = " ".join(
    f"Paragraph {i} of the council report describes the budget, the schools and the roads of the town." for i in range(30)
)


@pytest.fixture(scope="module")
def embedder():
    return Embedder().load()


def test_sentences_stay_inside_paragraphs():
    assert split_sentences("One. Two!\nThree? “Four.” Five") == ["One.", "Two!", "Three?", "“Four.”", "Five"]


def test_chunks_cover_the_whole_text_within_the_limit(embedder):
    chunks = embedder.chunk(OPENING)
    assert len(chunks) > 2
    assert all(tokens <= embedder.chunk_tokens for _, tokens in chunks)
    assert " ".join(text for text, _ in chunks) == OPENING


def test_text_past_the_model_limit_changes_the_embedding(embedder):
    # Identical openings longer than the model's 256-token window; only the endings differ, so
    # truncation would make the two vectors identical.
    opening = " ".join(OPENING.split(". ")[:16])
    assert len(embedder._model.tokenizer.tokenize(opening)) > 256
    a = opening + (
        " Then a volcano erupted and buried the harbour under ash. Lava flows cut the coastal road."
        " Thousands fled by boat as the mountain kept shaking through the night."
    )
    b = opening + (
        " Then the football team won the national championship final. Fans filled the square to sing."
        " The captain lifted the trophy after a penalty shoot-out in the rain."
    )
    vectors, chunk_counts = embedder.embed([a, b, a])
    assert min(chunk_counts) > 2
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert float(vectors[0] @ vectors[2]) > 0.9999
    assert float(vectors[0] @ vectors[1]) < 0.99


def test_a_sentence_longer_than_a_chunk_is_split(embedder):
    sentence = " ".join(["word"] * 400) + "."
    chunks = embedder.chunk(sentence)
    assert len(chunks) >= 3 and all(tokens <= embedder.chunk_tokens for _, tokens in chunks)
