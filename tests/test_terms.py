"""Entity-like term extraction."""

from extract.terms import extract_terms


def test_names_and_numbers_not_sentence_starts():
    terms = extract_terms(
        "Quake hits Aceh",
        "After the quake, police in Aceh said 12 people died. Police said Sutopo Purwo Nugroho spoke. Officials' homes fell.",
    )
    assert {"aceh", "12", "sutopo", "purwo", "nugroho"} <= set(terms)
    assert "after" not in terms and "quake" not in terms and "officials" not in terms
    assert "police" not in terms  # only ever capitalised at a sentence start
    assert terms["aceh"] == 2


def test_possessives_and_thousands_are_normalised():
    terms = extract_terms(None, "He praised Israel's army. Israel said 40,000 tons fell.")
    assert terms["israel"] == 2 and "40000" in terms
