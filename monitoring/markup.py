"""Feed values shown as text in Markdown, HTML and plain text: the helpers alert and digest messages share.

Titles, names, URLs and queries come from feeds and users: every rendered form shows them as text.
Markdown escapes every ASCII punctuation character that could start markup and breaks mentions
(`@here`), emoji codes and bare URLs with an invisible word joiner; HTML goes through
`html.escape`; only http(s) URLs become links; the text form has no markup at all.
"""

import html
import re
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

_HTTP_URL = re.compile(r"https?://[^\s/?#]+[^\s]*", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
# C0/C1 controls and the bidirectional overrides that can make text read differently from its bytes.
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
WORD_JOINER = "\u2060"  # invisible, allows no line break
# After ":" (URL schemes, emoji codes), "@" (mentions, e-mail autolinks), "!" (Slack's <!here>),
# and between "www" and ".": where chat services turn plain text into links, pings or emoji.
_JOINER_PLACES = re.compile(r"(?<=[:@!])|(?<=www)(?=\.)", re.IGNORECASE)
# Characters that start inline markup anywhere in CommonMark, GitHub's extensions and chat
# dialects (emphasis, code, links, HTML and entities, tables, strikethrough, spoilers, math).
_MARKDOWN_INLINE = frozenset("\\`*_[]<>&|~$")
# At the start of a value (which may start a line), these would open a block instead.
_MARKDOWN_BLOCK_START = re.compile(r"^(?:[#>+=-]|\d+[.)])")

_FONT = "font-family:Arial,Helvetica,sans-serif"
MUTED_STYLE = "color:#5f6368"
LINK_STYLE = "color:#1a56db;text-decoration:underline"


def plain_text(value: object, empty: str = "") -> str:
    """One line of text: whitespace runs collapsed, control and bidi-override characters removed."""
    if value is None:
        return empty
    text = _WHITESPACE.sub(" ", _INVISIBLE.sub("", str(value))).strip()
    return text or empty


def escape_markdown(value: object, empty: str = "") -> str:
    """CommonMark that shows exactly this text on one line: inline markup characters escaped, autolinks broken.

    Only what could start markup is escaped, so dates, numbers and sentences stay readable in the
    raw Markdown: the inline markup characters everywhere, and a block marker (`#`, `>`, `-`,
    `1.`, ...) at the start of the value.
    """
    text = _JOINER_PLACES.sub(WORD_JOINER, plain_text(value, empty))
    escaped = "".join("\\" + character if character in _MARKDOWN_INLINE else character for character in text)
    start = _MARKDOWN_BLOCK_START.match(escaped)
    if start:
        marker = start.group()
        escaped = (marker[:-1] + "\\" + marker[-1]) + escaped[len(marker):]
    return escaped


def http_url(value: object) -> str | None:
    """The value when it is an absolute http(s) URL, the only kind shown as a link; else None."""
    if not isinstance(value, str):
        return None
    url = value.strip()
    return url if _HTTP_URL.fullmatch(url) else None


def markdown_link(label: str, url: object) -> str:
    """An escaped Markdown link for http(s) URLs; other URLs (or none) give the escaped label only."""
    target = http_url(url)
    if target is None:
        return label
    # Percent-encode what could end the destination early or change its meaning.
    return f"[{label}](<{quote(target, safe=':/?#[]@!$&*+,;=%-._~')}>)"


def html_link(label: str, url: object, style: str = "") -> str:
    """An escaped HTML link for http(s) URLs; `label` must already be escaped."""
    target = http_url(url)
    if target is None:
        return label
    style_attribute = f' style="{style}"' if style else ""
    return f'<a href="{html.escape(target, quote=True)}"{style_attribute}>{label}</a>'


def parse_time(value: object) -> datetime | None:
    """A timezone-aware datetime from a datetime or an ISO 8601 string (naive means UTC); else None."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def format_time(value: object, empty: str = "unknown") -> str:
    """A time for people, in UTC (`2025-03-01 09:30 UTC`); unparsable strings are shown as text."""
    moment = parse_time(value)
    if moment is None:
        return plain_text(value, empty) if isinstance(value, str) else empty
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def count(number: object, noun: str, plural: str | None = None) -> str:
    """`1 article`, `5 articles` (`plural` for nouns that do not just take an "s")."""
    try:
        amount = int(number)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        amount = 0
    return f"{amount} {noun}" if amount == 1 else f"{amount} {plural or noun + 's'}"


def to_json_value(value: Any) -> Any:
    """The value with datetimes as ISO strings (naive ones as UTC) and tuples as lists, for `json.dumps`."""
    if isinstance(value, dict):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(item) for item in value]
    if isinstance(value, datetime):
        return (value.replace(tzinfo=UTC) if value.tzinfo is None else value).isoformat()  # naive is UTC
    if isinstance(value, date):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def sources_line(sources: object, limit: int = 8) -> str:
    """Source names as plain text, at most `limit` of them and a count of the rest."""
    names = [plain_text(name) for name in sources if plain_text(name)] if isinstance(sources, list) else []
    if len(names) > limit:
        return ", ".join(names[:limit]) + f" and {len(names) - limit} more"
    return ", ".join(names)


def html_document(title: str, body: str) -> str:
    """A complete HTML document around `body` (already markup) for mail clients; `title` is text."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(plain_text(title), quote=True)}</title>\n</head>\n"
        f'<body style="margin:0;padding:16px;background:#f4f4f5;{_FONT};color:#1f2328;">\n'
        '<div style="max-width:680px;margin:0 auto;background:#ffffff;border:1px solid #d0d7de;'
        'border-radius:6px;padding:20px;">\n'
        f"{body}</div>\n</body>\n</html>\n"
    )
