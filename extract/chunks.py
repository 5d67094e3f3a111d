"""Chunking article texts for the embedding model: whole sentences, at most so many word pieces per chunk."""

import re
from collections.abc import Iterator
from itertools import islice

# Sentence ends: terminal punctuation (optionally closed by a quote or bracket) and whitespace.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"”’')\]]))\s+")
# The last whitespace of a text.
_LAST_SPACE = re.compile(r"\s(?=\S*\Z)")


def truncate_text(text: str, max_characters: int | None) -> str:
    """The first `max_characters` of a text, cut at the last whitespace near the limit when there is one."""
    if max_characters is None or len(text) <= max_characters:
        return text
    head = text[:max_characters]
    if text[max_characters].isspace():
        return head
    # Look back a little for a word boundary; a text without one is cut at the limit itself.
    window = max(1, min(1000, max_characters // 10))
    boundary = _LAST_SPACE.search(head, len(head) - window)
    return head[: boundary.start()] if boundary else head


def split_sentences(text: str) -> list[str]:
    """Split text into sentences, never across paragraphs."""
    sentences = []
    for paragraph in text.split("\n"):
        sentences.extend(part for part in _SENTENCE_END.split(paragraph.strip()) if part)
    return sentences


def pack_chunks(text: str, tokenizer, limit: int) -> list[tuple[str, int]]:
    """Pack whole sentences into chunks of at most `limit` word pieces of `tokenizer`.

    Returns:
        (chunk text, token count) pairs covering the whole text, in order.
    """
    sentences = split_sentences(text)
    # One batched call counts every sentence's word pieces (a call per sentence costs more).
    chunks = list(_packed(sentences, tokenizer, limit, len(sentences)))
    return chunks or [(text, max(1, len(tokenizer.tokenize(text))))]


def pack_lead(text: str, tokenizer, limit: int, count: int) -> tuple[list[tuple[str, int]], bool]:
    """The first `count` chunks `pack_chunks` would make of a text, tokenizing only as far as they reach.

    Returns:
        The chunks (at most `count`), and whether they cover the whole text.
    """
    sentences = split_sentences(text)
    if not sentences:
        return pack_chunks(text, tokenizer, limit), True
    # Sentences are counted a growing group at a time, so a long text is tokenized only about as
    # far as its lead and one chunk more (which tells whether the lead is the whole text).
    chunks = list(islice(_packed(sentences, tokenizer, limit, 8), count + 1))
    return chunks[:count], len(chunks) <= count


def _packed(sentences: list[str], tokenizer, limit: int, group: int) -> Iterator[tuple[str, int]]:
    """The chunks of `pack_chunks` in order, word pieces counted `group` sentences at a time (doubling)."""
    current: list[str] = []
    size, start = 0, 0
    while start < len(sentences):
        part = sentences[start : start + group]
        counts = [len(ids) for ids in tokenizer(part, add_special_tokens=False)["input_ids"]]
        for sentence, tokens in zip(part, counts):
            if current and size + tokens > limit:
                yield " ".join(current), size
                current, size = [], 0
            if tokens > limit:
                yield from _split_long(sentence, tokenizer, limit)
            else:
                current.append(sentence)
                size += tokens
        start += len(part)
        group *= 2
    if current:
        yield " ".join(current), size


def _split_long(sentence: str, tokenizer, limit: int) -> list[tuple[str, int]]:
    ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
    pieces = []
    for start in range(0, len(ids), limit):
        window = ids[start : start + limit]
        pieces.append((tokenizer.decode(window), len(window)))
    return pieces
