"""The keyword query language: analysis, parsing, what is refused, and matching a batch in memory."""

import random

import pytest

from extract.query import (
    MAX_DEPTH,
    MAX_QUERY_CHARACTERS,
    And,
    BatchMatcher,
    Not,
    Or,
    Phrase,
    QueryError,
    Term,
    analyze,
    parse_query,
    positioned_tokens,
    text_analyzer,
)


def root(text):
    return parse_query(text).root


# --- analysis ---


@pytest.mark.parametrize("text, tokens", [
    ("Élon MUSK invitations", ["elon", "musk", "invit"]),
    ("elon musk invited", ["elon", "musk", "invit"]),
    ("São Paulo", ["sao", "paulo"]),
    ("Straße Łódź Ærø", ["strass", "lodz", "aero"]),
    ("running runs ran", ["run", "run", "ran"]),
    ("covid-19 U.S.", ["covid", "19", "u", "s"]),
    ("!!! — …", []),
])
def test_analyze_folds_case_accents_and_stems(text, tokens):
    assert analyze(text) == tokens


def test_analyzer_is_shared_and_drops_overlong_tokens_keeping_their_position():
    assert text_analyzer() is text_analyzer()
    assert text_analyzer().analyze("Élon") == ["elon"]
    # The limit is 40 UTF-8 bytes, counted before accents are folded.
    assert positioned_tokens("a " + "x" * 40 + " b") == [(0, "a"), (2, "b")]
    assert positioned_tokens("a " + "é" * 20 + " b") == [(0, "a"), (2, "b")]
    assert positioned_tokens("a " + "x" * 39 + " b") == [(0, "a"), (1, "x" * 39), (2, "b")]


# --- parsing ---


def test_adjacent_terms_mean_and():
    assert root("musk gaza") == And((Term("musk"), Term("gaza")))
    assert root("musk AND gaza") == root("musk gaza")


def test_precedence_is_not_then_and_then_or():
    assert root("a OR b c") == Or((Term("a"), And((Term("b"), Term("c")))))
    assert root("a b OR c") == Or((And((Term("a"), Term("b"))), Term("c")))
    assert root("NOT a b") == And((Not(Term("a")), Term("b")))
    assert root("b NOT a OR c") == Or((And((Term("b"), Not(Term("a")))), Term("c")))
    assert root("(a OR b) c") == And((Or((Term("a"), Term("b"))), Term("c")))


def test_phrases_straight_and_curly_quotes():
    elon_musk = Phrase(("elon", "musk"), (0, 1))
    assert root('"Elon Musk"') == elon_musk
    assert root("“Elon Musk”") == elon_musk
    assert root("„Élon musk“") == elon_musk
    assert root('"elon musk" OR tesla') == Or((elon_musk, Term("tesla")))
    assert root('"Musk"') == Term("musk")  # a phrase of one token is a term


def test_a_word_of_several_tokens_is_a_phrase():
    assert root("covid-19") == Phrase(("covid", "19"), (0, 1))
    assert root("U.S. sanctions") == And((Phrase(("u", "s"), (0, 1)), Term("sanction")))


def test_a_phrase_keeps_the_gap_of_a_removed_overlong_word():
    assert root(f'"alpha {"z" * 45} beta"') == Phrase(("alpha", "beta"), (0, 2))


def test_lower_case_operators_are_words():
    assert root("and or not") == And((Term("and"), Term("or"), Term("not")))
    assert root("rock and roll") == And((Term("rock"), Term("and"), Term("roll")))
    assert root("Not") == Term("not")


def test_leading_dash_is_not_and_inner_dash_is_punctuation():
    assert root("ceasefire -hamas") == And((Term("ceasefir"), Not(Term("hama"))))
    assert root('ceasefire -"west bank"') == And((Term("ceasefir"), Not(Phrase(("west", "bank"), (0, 1)))))
    assert root("a -(b OR c)") == And((Term("a"), Not(Or((Term("b"), Term("c"))))))
    assert root("a - b") == And((Term("a"), Term("b")))
    assert root("a --b") == And((Term("a"), Term("b")))


def test_punctuation_words_are_dropped_and_groups_flattened():
    assert root("a !!! b") == And((Term("a"), Term("b")))
    assert root('a "..." b') == And((Term("a"), Term("b")))
    assert root("a (NOT b NOT c)") == And((Term("a"), Not(Term("b")), Not(Term("c"))))
    assert root("a OR (b OR c)") == Or((Term("a"), Term("b"), Term("c")))
    assert root("a AND a") == Term("a")


def test_canonical_form_shows_analyzed_tokens_and_grouping():
    assert str(parse_query('(Musk AND Gaza) OR "Elon Musk"')) == '(musk AND gaza) OR "elon musk"'
    assert str(parse_query("ceasefire NOT (hamas OR israel)")) == "ceasefir AND NOT (hama OR israel)"
    assert str(parse_query("a OR b c")) == "a OR (b AND c)"
    query = parse_query("  Élon  ")
    assert query.text == "  Élon  " and str(query) == "elon"


def test_operators_inside_quotes_and_tantivy_syntax_are_plain_words():
    assert root('"war AND peace"') == Phrase(("war", "and", "peac"), (0, 1, 2))
    assert root("title:musk^2 *") == Phrase(("titl", "musk", "2"), (0, 1, 2))


@pytest.mark.parametrize("text, message", [
    ("", "the query has nothing to search for"),
    ("  !!! ... ", "the query has nothing to search for"),
    ("(musk gaza))", "unbalanced parenthesis at character 12"),
    ("musk (gaza OR israel", "unbalanced parenthesis at character 6"),
    ("(", "unbalanced parenthesis at character 1"),
    (")", "unbalanced parenthesis at character 1"),
    ('ab "elon', "unterminated quote at character 4"),
    ("ab “elon", "unterminated quote at character 4"),
    ("ceasefire hamas NOT", "NOT needs something to negate at character 17"),
    ("a NOT )", "NOT needs something to negate at character 3"),
    ("NOT a", "a query needs at least one word or phrase that is not negated"),
    ("-a", "a query needs at least one word or phrase that is not negated"),
    ("NOT a NOT b", "a query needs at least one word or phrase that is not negated"),
    ("a OR NOT b", "each side of OR at character 3 needs a word or phrase that is not negated"),
    ("(NOT a) OR b", "each side of OR at character 9 needs a word or phrase that is not negated"),
    ("a OR b OR -c", "each side of OR at character 8 needs a word or phrase that is not negated"),
    ("NOT NOT a", "NOT at character 5 cannot negate a negation"),
    ("a -NOT b", "NOT at character 4 cannot negate a negation"),
    ("a NOT (NOT b)", "NOT at character 3 must negate a word, phrase or group that is not negated itself"),
    ("AND a", "AND at character 1 needs a word, phrase or group on its left"),
    ("OR a", "OR at character 1 needs a word, phrase or group on its left"),
    ("a AND", "AND at character 3 needs a word, phrase or group on its right"),
    ("a OR", "OR at character 3 needs a word, phrase or group on its right"),
    ("a AND OR b", "AND at character 3 needs a word, phrase or group on its right"),
    ("(OR a)", "OR at character 2 needs a word, phrase or group on its left"),
    ("a () b", "the parentheses at character 3 hold nothing to search for"),
    ("a ( ?! ) b", "the parentheses at character 3 hold nothing to search for"),
])
def test_query_errors_say_what_and_where(text, message):
    with pytest.raises(QueryError) as caught:
        parse_query(text)
    assert str(caught.value) == message


def test_query_error_is_a_value_error():
    assert issubclass(QueryError, ValueError)


def test_input_is_bounded():
    longest = ("a " * MAX_QUERY_CHARACTERS)[:MAX_QUERY_CHARACTERS]
    assert isinstance(parse_query(longest).root, Term)
    with pytest.raises(QueryError, match="longer than 1,000 characters"):
        parse_query(longest + "b")
    deepest = "(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH
    assert root(deepest) == Term("a")
    with pytest.raises(QueryError, match=f"nested more than {MAX_DEPTH} deep at character {MAX_DEPTH + 1}"):
        parse_query("(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(QueryError, match="cannot negate a negation"):
        parse_query("a " + "NOT " * 240 + "b")


def test_random_inputs_parse_or_fail_with_query_error():
    rng = random.Random(5)
    alphabet = ['a', 'b', 'Élon', '"', '“', '”', '(', ')', '-', ' ', ' ', 'AND', 'OR', 'NOT', '!', 'x-y']
    for _ in range(3000):
        text = " ".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        try:
            query = parse_query(text)
        except QueryError as error:
            assert str(error) and "\n" not in str(error)
        else:
            assert str(query)


# --- matching a batch ---


BATCH = [
    ("musk-gaza", "Elon Musk visits Gaza", "The billionaire met officials."),
    ("musk-met-elon", "Musk met Elon", "Two people called Musk and Elon met."),
    ("title-then-text", "Talks with Elon", "Musk said nothing."),
    ("invited", None, "Élon MUSK was invited to São Paulo."),
    ("ceasefire", "Ceasefire holds", "Hamas and Israel agreed to a ceasefire."),
    ("ceasefire-only", "Ceasefire in Sudan", "Fighting paused in Khartoum."),
]


def test_batch_matcher_terms_phrases_and_negation():
    matcher = BatchMatcher(BATCH)
    keys = lambda text: matcher.matches(parse_query(text))  # noqa: E731
    assert keys('"elon musk"') == {"musk-gaza", "invited"}
    assert keys("elon musk") == {"musk-gaza", "musk-met-elon", "title-then-text", "invited"}
    # A phrase never runs from the title into the text.
    assert "title-then-text" not in keys('"elon musk"')
    assert keys("Élon MUSK invitations") == {"invited"}
    assert keys("sao paulo") == keys('"São Paulo"') == {"invited"}
    assert keys("ceasefire NOT hamas") == {"ceasefire-only"}
    assert keys("ceasefire -hamas") == {"ceasefire-only"}
    assert keys("(gaza OR sudan) AND NOT israel") == {"musk-gaza", "ceasefire-only"}
    assert keys("nobody") == set()


def test_batch_matcher_later_document_replaces_earlier_key():
    matcher = BatchMatcher([("k", "Old headline", "gaza"), ("k", "New headline", "sudan")])
    assert matcher.matches(parse_query("gaza")) == set()
    assert matcher.matches(parse_query("sudan")) == {"k"}


def test_batch_matcher_phrase_with_repeated_token_and_gap():
    matcher = BatchMatcher([
        ("repeat", None, "new new york"),
        ("single", None, "new york"),
        ("gap", None, f"alpha {'z' * 45} beta"),
        ("adjacent", None, "alpha beta"),
    ])
    assert matcher.matches(parse_query('"new new york"')) == {"repeat"}
    assert matcher.matches(parse_query('"new york"')) == {"repeat", "single"}
    assert matcher.matches(parse_query(f'"alpha {"q" * 50} beta"')) == {"gap"}


def _reads(node, fields) -> bool:
    """Whether a query node matches a document read field by field (each a list of (position, token))."""
    if isinstance(node, Term):
        return any(token == node.token for tokens in fields for _, token in tokens)
    if isinstance(node, Phrase):
        for tokens in fields:
            at = {position: token for position, token in tokens}
            starts = [position for position, token in tokens if token == node.tokens[0]]
            if any(all(at.get(start + offset - node.positions[0]) == token
                       for offset, token in zip(node.positions, node.tokens)) for start in starts):
                return True
        return False
    if isinstance(node, Or):
        return any(_reads(part, fields) for part in node.parts)
    if isinstance(node, Not):
        return not _reads(node.part, fields)
    return all(_reads(part, fields) for part in node.parts)


def test_batch_matcher_agrees_with_reading_each_document_for_many_random_queries():
    # The cost of many watches on a big batch is measured in bench/watch_scale.py; this checks the answers.
    rng = random.Random(11)
    words = [f"w{i}" for i in range(300)]
    weights = [1 / (rank + 1) for rank in range(len(words))]
    documents = [
        (i, " ".join(rng.choices(words, weights, k=8)), " ".join(rng.choices(words, weights, k=60)))
        for i in range(300)
    ]
    shapes = ["{a}", "{a} {b}", '"{a} {b}"', "{a} OR {b}", "{a} NOT {b}", "({a} OR {b}) {c}", 'NOT "{a} {b}" {c}']
    queries = [
        parse_query(rng.choice(shapes).format(a=rng.choice(words), b=rng.choice(words), c=rng.choice(words)))
        for _ in range(300)
    ]
    matcher = BatchMatcher(documents)
    read = {key: (positioned_tokens(title), positioned_tokens(text)) for key, title, text in documents}
    matched = 0
    for query in queries:
        expected = {key for key, fields in read.items() if _reads(query.root, fields)}
        assert matcher.matches(query) == expected, str(query)
        matched += bool(expected)
    assert matched > 100  # the random queries do match things
