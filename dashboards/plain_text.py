"""Text from feeds, pages and files (titles, names, URLs, messages) shown as plain text, never as markup.

Streamlit (1.67) reads Markdown in `st.markdown`, headings, captions, alerts, widget labels and
metric values: GitHub-flavoured Markdown plus KaTeX (`$x^2$`), directives (`:red[...]`), icon and
emoji shortcodes (`:material/home:`, `:smile:`) and typographic arrows and dashes (` -> `, ` -- `).
A backslash escape stops the syntax, but some rewrites run on the parsed text, after the escapes
are gone: bare URLs, `www.` names and e-mail addresses become links, shortcodes icons or emoji,
` -- ` a dash. An invisible word joiner inside each of those patterns stops them too.

Tables (`st.dataframe` text columns), select-box options and `st.html` with escaped text show
text as it is; only absolute http(s) URLs become links (`http_link`).
"""

import re
import string

# Zero-width and invisible; unlike a zero-width space it allows no line break.
WORD_JOINER = "\u2060"
# CommonMark lets a backslash escape every ASCII punctuation character (and nothing else).
_PUNCTUATION = frozenset(string.punctuation)
# Line breaks would start new blocks (lists, headings, code); HTML shows any run of spaces as one.
_WHITESPACE = re.compile(r"\s+")
# Where Streamlit's rewrites of parsed text would match: after ":" ("https://", ":smile:",
# ":material/home:") and "@" (e-mail addresses), between "www" and ".", and inside "->", "<-",
# "<->", "--", ">=", "<=" and "~=".
_JOINER_PLACES = re.compile(r"(?<=[:@])|(?<=www)(?=\.)|(?<=[-<>~=])(?=[-<>=])", re.IGNORECASE)
_HTTP_URL = re.compile(r"https?://[^\s/?#]+\S*", re.IGNORECASE)


def plain(text: str | None, empty: str = "(untitled)") -> str:
    """Markdown that Streamlit shows as exactly this text on one line (`empty` for no text)."""
    if not text:
        return empty
    joined = _JOINER_PLACES.sub(WORD_JOINER, _WHITESPACE.sub(" ", text))
    return "".join("\\" + character if character in _PUNCTUATION else character for character in joined)


def http_link(url: str | None) -> str | None:
    """The URL when it is an absolute http(s) URL, the only kind shown as a link; else None."""
    return url if url and _HTTP_URL.fullmatch(url) else None
