"""The word-level difference between a duplicate and its original, as escaped, highlighted HTML."""

import difflib
import html
import re
from dataclasses import dataclass

# Words with the whitespace that follows them, so the text keeps its line breaks.
_WORD = re.compile(r"\S+\s*")
# Above this many words on both sides, let difflib skip very frequent words to stay fast.
_EXACT_LIMIT = 5000

REMOVED_STYLE = "background-color: rgba(255, 80, 80, 0.28); text-decoration: line-through;"
ADDED_STYLE = "background-color: rgba(60, 180, 75, 0.30); text-decoration: none;"
TEXT_STYLE = "white-space: pre-wrap; line-height: 1.55; font-size: 0.95rem;"


@dataclass(frozen=True)
class Difference:
    """Both texts as HTML, with what only one side has highlighted."""

    original_html: str
    duplicate_html: str
    common_share: float  # share of words in common, 0–1 (difflib's ratio)
    removed_words: int  # words of the original missing from the duplicate
    added_words: int  # words of the duplicate missing from the original


def _marked(tokens: list[str], tag: str, style: str) -> str:
    """These tokens wrapped in one highlight, the trailing whitespace left outside."""
    text = "".join(tokens)
    body = text.rstrip()
    return f'<{tag} style="{style}">{html.escape(body)}</{tag}>{html.escape(text[len(body):])}'


def word_difference(original: str, duplicate: str) -> Difference:
    """Compare two texts word by word.

    Every piece of text is HTML-escaped; only the highlight tags are markup. Words only in the
    original are struck through in red, words only in the duplicate marked in green.

    Args:
        original: The original article's text.
        duplicate: The duplicate's text.

    Returns:
        Both sides as HTML fragments (to be shown with `TEXT_STYLE`), and how much they share.
    """
    left = _WORD.findall(original.strip())
    right = _WORD.findall(duplicate.strip())
    matcher = difflib.SequenceMatcher(
        None, [token.strip() for token in left], [token.strip() for token in right],
        autojunk=min(len(left), len(right)) > _EXACT_LIMIT,
    )
    original_parts, duplicate_parts = [], []
    removed = added = 0
    for operation, left_start, left_end, right_start, right_end in matcher.get_opcodes():
        if operation == "equal":
            original_parts.append(html.escape("".join(left[left_start:left_end])))
            duplicate_parts.append(html.escape("".join(right[right_start:right_end])))
            continue
        if left_end > left_start:
            original_parts.append(_marked(left[left_start:left_end], "del", REMOVED_STYLE))
            removed += left_end - left_start
        if right_end > right_start:
            duplicate_parts.append(_marked(right[right_start:right_end], "ins", ADDED_STYLE))
            added += right_end - right_start
    return Difference("".join(original_parts), "".join(duplicate_parts), matcher.ratio(), removed, added)
