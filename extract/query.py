"""The keyword query language shared by full-text search and by watches (saved queries that alert).

A query is words, "exact phrases", the operators AND, OR and NOT, and parentheses:

    musk gaza                       both words (adjacent terms mean AND)
    "elon musk" OR tesla            the phrase, or the word
    (musk AND gaza) OR "elon musk"  parentheses group
    ceasefire NOT hamas             NOT binds tightest: ceasefire AND (NOT hamas)
    ceasefire -hamas                a leading dash is NOT too

- Operators are upper-case only: `and`, `or` and `not` are ordinary words. Precedence is
  NOT > AND > OR, so `a OR b c` is `a OR (b AND c)` and `NOT a b` is `(NOT a) AND b`.
- A dash means NOT where it starts a word and is followed by a letter, a digit, a quote or `(`
  (`-hamas`, `-"elon musk"`, `-(a OR b)`); `-5` is therefore NOT 5. Elsewhere (`covid-19`, a lone
  `-`) the dash is punctuation.
- Straight quotes and curly quotes delimit phrases: “ ” „ ‟ or " opens one, and “ ” ‟ or "
  closes it (so “English”, ”Swedish” and „German“ quoting all work).
- Every word and phrase goes through the index's analyzer (`analyze`): split on anything not a
  letter or digit, lower-cased, accents folded to ASCII, English Porter stemming ("Élon" → "elon",
  "invitations" and "invited" → "invit", "São Paulo" → "sao", "paulo"). A word that analyzes to
  several tokens (`covid-19`, `U.S.`) is matched as a phrase, like a quoted one; a phrase of one
  token is a plain term; a word or phrase that analyzes to nothing (pure punctuation) is dropped.
- A term matches an article when it occurs in the title or in the text; a phrase when its tokens
  are consecutive within the title or within the text (never across the two).

A pure negation would match every article, so negation is only allowed where it subtracts from
something positive. Precisely, a query is refused unless, after nested groups of the same
operator are flattened (`a (NOT b NOT c)` is `a AND NOT b AND NOT c`):

- the whole query has a positive part: a word or phrase not under NOT (`NOT a` is refused);
- every alternative of an OR has one (`a OR NOT b` and `(NOT a) OR b` are refused);
- NOT negates something that has one (`NOT NOT a` and `a NOT (NOT b)` are refused).

`a AND NOT b`, `a NOT b`, `a -b` and `(a OR b) NOT (c OR "d e")` are fine. Inputs are bounded
(`MAX_QUERY_CHARACTERS`, `MAX_DEPTH` levels of parentheses) so no query can exhaust the recursion
or build an unbounded index query. Error positions count characters from 1.
"""

from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Union

import tantivy

MAX_QUERY_CHARACTERS = 1_000
MAX_DEPTH = 20
# Tokens of this many UTF-8 bytes or more (before folding) are dropped: they are base64 blobs,
# hashes or run-together scripts rather than words, and would only swell the term dictionary
# (tantivy's own default tokenizer uses the same limit).
MAX_TOKEN_BYTES = 40
# The name the index registers the analyzer under and records in its state file: change it
# whenever the analyzer changes, so that indexes built with the old one are seen as another version.
ANALYZER_NAME = "newswatch_en_v1"

_OPERATORS = {"AND": "and", "OR": "or", "NOT": "not"}
_OPENING_QUOTES = frozenset('"“”„‟')
_CLOSING_QUOTES = frozenset('"“”‟')
_WORD_BREAKS = frozenset("()") | _OPENING_QUOTES


def _build_analyzer() -> tantivy.TextAnalyzer:
    """The one analyzer of titles, texts and queries."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(MAX_TOKEN_BYTES))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


_ANALYZER = _build_analyzer()


def text_analyzer() -> tantivy.TextAnalyzer:
    """The analyzer the search index registers as `ANALYZER_NAME` (the same object queries use).

    Returns:
        A tantivy TextAnalyzer: simple tokenizer, tokens of 40 bytes or more removed, lower-cased,
        ASCII-folded, English-stemmed.
    """
    return _ANALYZER


def analyze(text: str) -> list[str]:
    """The tokens the search index makes of a text.

    Args:
        text: Any text: a title, an article body, a query word or phrase.

    Returns:
        The analyzed tokens in order, e.g. "Élon MUSK invitations" → ["elon", "musk", "invit"].
    """
    return _ANALYZER.analyze(text)


def positioned_tokens(text: str) -> list[tuple[int, str]]:
    """Tokens of a text with their positions (a removed overlong token leaves a gap).

    Args:
        text: Any text.

    Returns:
        (position, token) pairs; positions start at 0 and grow by one per word, removed or not.
    """
    return [(token.position, token.text) for token in _ANALYZER.pre_tokenize(text).tokens]


class QueryError(ValueError):
    """A query that cannot be parsed or would match everything; the message is one sentence."""


# --- the syntax tree ---


@dataclass(frozen=True)
class Term:
    """One analyzed token."""

    token: str

    def __str__(self) -> str:
        return self.token


@dataclass(frozen=True)
class Phrase:
    """Analyzed tokens that must follow each other; `positions` are relative, from 0.

    Positions are consecutive unless an overlong word the analyzer removes sat in between: the
    phrase then keeps its gap, as the indexed text does.
    """

    tokens: tuple[str, ...]
    positions: tuple[int, ...]

    def __str__(self) -> str:
        return '"' + " ".join(self.tokens) + '"'


@dataclass(frozen=True)
class And:
    """Every positive part matches and no negated part does."""

    parts: tuple["Node", ...]

    def __str__(self) -> str:
        return " AND ".join(f"({part})" if isinstance(part, Or) else str(part) for part in self.parts)


@dataclass(frozen=True)
class Or:
    """At least one part matches."""

    parts: tuple["Node", ...]

    def __str__(self) -> str:
        # And binds tighter, but the parentheses make the grouping obvious to a reader.
        return " OR ".join(f"({part})" if isinstance(part, And) else str(part) for part in self.parts)


@dataclass(frozen=True)
class Not:
    """The part does not match (only ever a part of an And)."""

    part: "Node"

    def __str__(self) -> str:
        return f"NOT ({self.part})" if isinstance(self.part, And | Or) else f"NOT {self.part}"


Node = Union[Term, Phrase, And, Or, Not]


@dataclass(frozen=True)
class Query:
    """A parsed query: the text as typed and its syntax tree.

    `str()` gives a canonical form in analyzed tokens (`(musk AND gaza) OR "elon musk"`), for
    display and logs; stems are not always stable under a second analysis, so it is not meant to
    be parsed again.
    """

    text: str
    root: Node

    def __str__(self) -> str:
        return str(self.root)


# --- parsing ---


@dataclass(frozen=True)
class _Lexeme:
    kind: str  # "word", "phrase", "and", "or", "not", "(", ")"
    position: int  # 1-based character where it starts
    node: Node | None = None


def _is_positive(node: Node) -> bool:
    """Whether a node can match by itself (has a word or phrase not under NOT)."""
    if isinstance(node, Not):
        return False
    if isinstance(node, And):
        return any(_is_positive(part) for part in node.parts)
    if isinstance(node, Or):
        return all(_is_positive(part) for part in node.parts)
    return True


def _combine(kind: type[And] | type[Or], parts: list[Node]) -> Node:
    """An And or Or of parts, nested groups of the same kind flattened and repeats dropped."""
    flat: list[Node] = []
    for part in parts:
        for piece in part.parts if isinstance(part, kind) else (part,):
            if piece not in flat:
                flat.append(piece)
    return flat[0] if len(flat) == 1 else kind(tuple(flat))


def _text_node(text: str) -> Node | None:
    """The Term or Phrase a word or quoted text analyzes to; None when it analyzes to nothing."""
    tokens = positioned_tokens(text)
    if not tokens:
        return None
    if len(tokens) == 1:
        return Term(tokens[0][1])
    first = tokens[0][0]
    return Phrase(tuple(token for _, token in tokens), tuple(position - first for position, _ in tokens))


def _lex(text: str) -> list[_Lexeme]:
    """Split a query into operators, parentheses, words and phrases (empty ones dropped)."""
    lexemes: list[_Lexeme] = []
    index, length = 0, len(text)
    while index < length:
        char = text[index]
        if char.isspace():
            index += 1
        elif char in "()":
            lexemes.append(_Lexeme(char, index + 1))
            index += 1
        elif char in _OPENING_QUOTES:
            end = index + 1
            while end < length and text[end] not in _CLOSING_QUOTES:
                end += 1
            if end == length:
                raise QueryError(f"unterminated quote at character {index + 1}")
            node = _text_node(text[index + 1:end])
            if node is not None:
                lexemes.append(_Lexeme("phrase", index + 1, node))
            index = end + 1
        elif char == "-" and index + 1 < length and (
            text[index + 1].isalnum() or text[index + 1] in _OPENING_QUOTES or text[index + 1] == "("
        ):
            lexemes.append(_Lexeme("not", index + 1))
            index += 1
        else:
            end = index
            while end < length and not text[end].isspace() and text[end] not in _WORD_BREAKS:
                end += 1
            word = text[index:end]
            if word in _OPERATORS:
                lexemes.append(_Lexeme(_OPERATORS[word], index + 1))
            else:
                node = _text_node(word)
                if node is not None:
                    lexemes.append(_Lexeme("word", index + 1, node))
            index = end
    return lexemes


class _Parser:
    """Recursive descent over lexemes: or := and (OR and)*, and := unary (AND? unary)*."""

    _STARTS_OPERAND = frozenset({"word", "phrase", "not", "("})

    def __init__(self, lexemes: list[_Lexeme]):
        self.lexemes = lexemes
        self.index = 0

    def peek(self) -> _Lexeme | None:
        return self.lexemes[self.index] if self.index < len(self.lexemes) else None

    def starts_operand(self) -> bool:
        lexeme = self.peek()
        return lexeme is not None and lexeme.kind in self._STARTS_OPERAND

    def take(self) -> _Lexeme:
        lexeme = self.lexemes[self.index]
        self.index += 1
        return lexeme

    def missing_operand(self, operator: _Lexeme | None) -> QueryError:
        """The error for an operand expected where none is."""
        if operator is not None:
            name = operator.kind.upper()
            if operator.kind == "not":
                return QueryError(f"NOT needs something to negate at character {operator.position}")
            return QueryError(f"{name} at character {operator.position} needs a word, phrase or group on its right")
        found = self.peek()
        if found is None:
            return QueryError("the query has nothing to search for")
        if found.kind == ")":
            return QueryError(f"unbalanced parenthesis at character {found.position}")
        return QueryError(f"{found.kind.upper()} at character {found.position} needs a word, phrase or group on its left")

    def parse_or(self, depth: int, operator: _Lexeme | None = None) -> Node:
        if not self.starts_operand():
            raise self.missing_operand(operator)
        parts = [self.parse_and(depth)]
        operators: list[_Lexeme] = []
        while (lexeme := self.peek()) is not None and lexeme.kind == "or":
            operators.append(self.take())
            if not self.starts_operand():
                raise self.missing_operand(lexeme)
            parts.append(self.parse_and(depth))
        for number, part in enumerate(parts):
            if len(parts) > 1 and not _is_positive(part):
                where = operators[max(number - 1, 0)].position
                raise QueryError(
                    f"each side of OR at character {where} needs a word or phrase that is not negated"
                )
        return _combine(Or, parts)

    def parse_and(self, depth: int) -> Node:
        parts = [self.parse_unary(depth)]
        while (lexeme := self.peek()) is not None:
            if lexeme.kind == "and":
                self.take()
                if not self.starts_operand():
                    raise self.missing_operand(lexeme)
            elif not self.starts_operand():
                break
            parts.append(self.parse_unary(depth))
        return _combine(And, parts)

    def parse_unary(self, depth: int) -> Node:
        lexeme = self.take()
        if lexeme.kind == "not":
            if not self.starts_operand():
                raise self.missing_operand(lexeme)
            following = self.peek()
            # Refused here rather than after parsing, so a chain of NOTs never recurses deeply.
            if following.kind == "not":
                raise QueryError(f"NOT at character {following.position} cannot negate a negation")
            part = self.parse_unary(depth)
            if not _is_positive(part):
                raise QueryError(
                    f"NOT at character {lexeme.position} must negate a word, phrase or group that is not negated itself"
                )
            return Not(part)
        if lexeme.kind == "(":
            if depth >= MAX_DEPTH:
                raise QueryError(f"parentheses are nested more than {MAX_DEPTH} deep at character {lexeme.position}")
            following = self.peek()
            if following is not None and following.kind == ")":
                raise QueryError(f"the parentheses at character {lexeme.position} hold nothing to search for")
            if following is None:
                raise QueryError(f"unbalanced parenthesis at character {lexeme.position}")
            inner = self.parse_or(depth + 1)
            closing = self.peek()
            if closing is None or closing.kind != ")":
                raise QueryError(f"unbalanced parenthesis at character {lexeme.position}")
            self.take()
            return inner
        return lexeme.node


def parse_query(text: str) -> Query:
    """Parse a keyword query (see the module docstring for the syntax and what is refused).

    Args:
        text: The query as the user typed it.

    Returns:
        The parsed Query.

    Raises:
        QueryError: The query is too long, malformed, empty after analysis, or only negative.
    """
    if len(text) > MAX_QUERY_CHARACTERS:
        raise QueryError(f"the query is longer than {MAX_QUERY_CHARACTERS:,} characters")
    lexemes = _lex(text)
    if not lexemes:
        raise QueryError("the query has nothing to search for")
    parser = _Parser(lexemes)
    root = parser.parse_or(0)
    leftover = parser.peek()
    if leftover is not None:
        # parse_or stops only at the end or at a ")" it did not open.
        raise QueryError(f"unbalanced parenthesis at character {leftover.position}")
    if not _is_positive(root):
        raise QueryError("a query needs at least one word or phrase that is not negated")
    return Query(text, root)


# --- matching a batch in memory ---


class BatchMatcher:
    """Which documents of an in-memory batch a query matches, as the search index would decide.

    Built once per batch (an inverted index of token → document → positions, per field), it
    answers each query with set operations, so watches can be checked against every new batch
    without touching the index. Re-using a key replaces the earlier document, as in the index.
    """

    def __init__(self, documents: Iterable[tuple[Hashable, str | None, str]]):
        """Index a batch.

        Args:
            documents: (key, title or None, text) for each document.
        """
        latest = {key: (title, text) for key, title, text in documents}
        self.keys = frozenset(latest)
        # One posting map per field: a phrase must not run from the title into the text.
        self._fields: tuple[dict[str, dict[Hashable, set[int]]], ...] = (defaultdict(dict), defaultdict(dict))
        for key, (title, text) in latest.items():
            for postings, value in zip(self._fields, (title, text)):
                for position, token in positioned_tokens(value or ""):
                    postings[token].setdefault(key, set()).add(position)

    def matches(self, query: Query) -> set[Hashable]:
        """The keys of the documents a query matches.

        Args:
            query: A parsed query.

        Returns:
            The matching keys (a new set).
        """
        return set(self._evaluate(query.root))

    def _evaluate(self, node: Node) -> set[Hashable] | frozenset[Hashable]:
        if isinstance(node, Term):
            found: set[Hashable] = set()
            for postings in self._fields:
                found.update(postings.get(node.token, ()))
            return found
        if isinstance(node, Phrase):
            found = set()
            for postings in self._fields:
                found |= self._phrase_in(postings, node)
            return found
        if isinstance(node, Or):
            found = set()
            for part in node.parts:
                found |= self._evaluate(part)
            return found
        if isinstance(node, Not):
            return self.keys - self._evaluate(node.part)
        positive = sorted((self._evaluate(part) for part in node.parts if not isinstance(part, Not)), key=len)
        found = set(positive[0]).intersection(*positive[1:])
        for part in node.parts:
            if isinstance(part, Not) and found:
                found -= self._evaluate(part.part)
        return found

    @staticmethod
    def _phrase_in(postings: dict[str, dict[Hashable, set[int]]], phrase: Phrase) -> set[Hashable]:
        """Keys whose field holds the phrase's tokens at the phrase's relative positions."""
        lists = [postings.get(token) for token in phrase.tokens]
        if not all(lists):
            return set()
        smallest, *others = sorted(lists, key=len)
        candidates = set(smallest).intersection(*others)
        found = set()
        for key in candidates:
            starts = {position - phrase.positions[0] for position in lists[0][key]}
            for offset, positions in zip(phrase.positions[1:], lists[1:]):
                starts &= {position - offset for position in positions[key]}
                if not starts:
                    break
            if starts:
                found.add(key)
        return found
