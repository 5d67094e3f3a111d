"""Turn raw article text or HTML into a clean `Article`: normalise, strip boilerplate, find a title."""

import functools
import hashlib
import logging
import re
import sys
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime

import py3langid
import trafilatura

from extract.charsets import COMPRESSED_MAGIC, decode_html

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Article:
    """One cleaned article; `text` holds paragraphs separated by a blank line."""

    url: str
    title: str | None
    text: str
    published_at: datetime | None  # timezone-aware UTC
    author: str | None = None
    language: str | None = None  # ISO 639-1 code, e.g. "en"
    site_name: str | None = None
    image_url: str | None = None
    canonical_url: str | None = None  # the page's own rel=canonical (or og:url), when it names another URL


_LINE_BREAKS = re.compile(r"\r\n?|[\v\f\x85\u2028\u2029]")
_INLINE_SPACE = re.compile(r"[^\S\n]+")


@functools.cache
def _invisible_characters() -> re.Pattern:
    """Control (Cc) and format (Cf: zero-width, bidi) characters other than newline and tab.

    Built once from the running Python's Unicode tables (about 0.2 s), then matched in C.
    """
    codes = (chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) in ("Cc", "Cf"))
    return re.compile("[" + "".join(re.escape(c) for c in codes if c not in "\n\t") + "]")


def normalize_text(text: str) -> str:
    """Normalise Unicode and whitespace so equal texts compare equal.

    Args:
        text: Raw text in any line-ending convention.

    Returns:
        NFKC text without control or zero-width characters, single spaces inside lines, stripped
        lines, and paragraphs separated by exactly one blank line.
    """
    text = unicodedata.normalize("NFKC", _LINE_BREAKS.sub("\n", text))
    # Cc covers control characters, Cf the zero-width and bidi marks that scrapers leave behind.
    text = _invisible_characters().sub("", text)
    lines = [_INLINE_SPACE.sub(" ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def text_hash(text: str) -> str:
    """Fingerprint a text for exact-duplicate detection.

    Args:
        text: Article text, cleaned or not.

    Returns:
        The sha256 hex digest of the casefolded words, blind to spacing, quotes and punctuation.
    """
    words = re.findall(r"[^\W_]+", normalize_text(text).casefold())
    return hashlib.sha256(" ".join(words).encode("utf-8")).hexdigest()


_ELLIPSIS = r"(?:…|\.{2,})"
_UI_PHRASE = (
    r"(?i:loading|please wait|advertisement|sponsored(?: content)?|skip to (?:main )?content"
    r"|sign up for (?:our |the )?newsletters?|subscribe(?: now)?|scroll to continue(?: with content)?"
    r"|continue reading)"
)
# A UI fragment glued to real text is only recognisable by the punctuation that separates them.
_UI_PREFIX = re.compile(rf"^{_UI_PHRASE}\b\s*(?:{_ELLIPSIS}|[:|•])\s*")
_UI_SUFFIX = re.compile(rf"(?<=[.!?”\"])\s+{_UI_PHRASE}\b\s*{_ELLIPSIS}?$")
# Right after a seed's date header the rest of the line is scraped, so an unpunctuated fragment
# followed by a capitalised word is still UI text.
_UI_AFTER_HEADER = re.compile(rf"\A[ \t]*{_UI_PHRASE}\b[ \t]*(?:{_ELLIPSIS}|(?=\s*(?:\Z|[A-Z“\"‘'])))")

_CREDIT_LABEL = r"(?:Photo(?:graph)?s?|PHOTOS?|Image|IMAGE|Picture|Pic|Foto|Illustration|Video|Credit|CREDIT)"
_CREDIT_LEAD = rf"{_CREDIT_LABEL}(?: (?i:credits?))?\s*(?::|/|by\b)"
_CREDIT_NAME = r"[A-Z][\w.&'’-]*(?:(?: via| for| of| and)?[ /][A-Z&][\w.&'’-]*){0,6}"
_AGENCY = r"(?:Getty Images|REUTERS|Reuters|AFP|AP|EPA|Shutterstock|Alamy|Xinhua|Anadolu)"
_TEASER = (
    r"^(?:(?i:read more|also read|read also|see also|click here|more from|recommended for you|don[’']t miss"
    r"|related (?:articles|stories|coverage|news|content))\b"
    r"|(?i:read|related|watch|more|listen|see)\s*(?::|»|>>|\||$))"
)
_SHARE_BUTTONS = (
    r"^(?:\d*\s*(?i:share|tweet|e-?mail|print|facebook|twitter|x|linkedin|whatsapp|pinterest|reddit|telegram"
    r"|copy link|save|comments?)\b\W*)+$"
)
_COOKIE_BANNER = (
    r"^(?=.*\b(?i:cookies?)\b)(?=.*\b(?i:we use|(?:web)?site uses|accept|consent|continu\w* to (?:browse|use)"
    r"|(?:privacy|cookie) (?:policy|settings|preferences))\b)"
)
_COPYRIGHT = r"^(?:©|\((?i:c)\)|(?i:copyright)\s*(?:©|\((?i:c)\)|\d{4}))|(?i:all rights reserved)"

# (reason, longest line in words the rule may remove, pattern); the word limits keep a rule
# from deleting a real paragraph that happens to look like boilerplate at one end.
_LINE_RULES = tuple(
    (reason, max_words, re.compile(pattern))
    for reason, max_words, pattern in (
        ("UI text", 8, rf"^\W*{_UI_PHRASE}\W*$"),
        ("photo caption", 40, rf"^\(?(?:File |AP |AFP )?{_CREDIT_LEAD}"),
        ("photo credit", 60, rf"(?:^|[\s(|.–—-]){_CREDIT_LEAD}\s*{_CREDIT_NAME}\)?$"),
        ("photo credit", 60, rf"\([^()]*\b{_AGENCY}\b[^()]*\)\.?$"),
        ("teaser", 30, _TEASER),
        ("share prompt", 12, r"^(?i:share (?:this|on|via)\b|follow us\b|like us on\b|join us on\b)"),
        ("share buttons", 12, _SHARE_BUTTONS),
        ("cookie banner", 80, _COOKIE_BANNER),
        ("copyright notice", 25, _COPYRIGHT),
    )
)


def remove_boilerplate(text: str) -> str:
    """Drop lines that are page furniture rather than article text.

    The rules are generic (UI/status text, captions ending in a photo credit, "Read more"-style
    teasers, share prompts, cookie banners, copyright lines) and anchor on a label plus a length
    limit, so real sentences that merely contain "read" or "photo" stay.

    Args:
        text: Text with one paragraph (or line) per line.

    Returns:
        The text without boilerplate lines or UI fragments at line ends; blank lines are kept,
        so run `normalize_text` afterwards.
    """
    kept = []
    for line in text.split("\n"):
        stripped = _UI_SUFFIX.sub("", _UI_PREFIX.sub("", line.strip()))
        words = len(stripped.split())
        matches = (name for name, limit, rule in _LINE_RULES if words <= limit and rule.search(stripped))
        reason = next(matches, None)
        if reason:
            logger.debug("Removed %s: %.60s", reason, stripped)
        elif stripped or not line.strip():  # a line that was only a UI fragment goes too
            kept.append(stripped)
    return "\n".join(kept)


def _clean_text(text: str) -> str:
    """Normalise, remove boilerplate, and normalise again to close the gaps left behind."""
    return normalize_text(remove_boilerplate(normalize_text(text)))


_BYLINE = re.compile(r"^(?i:by|published|updated|posted|last updated|written by)\b")
_DATE_TOKEN = re.compile(
    r"(?i:\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
    r"|\b(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\b|\b(?:am|pm|gmt|utc|bst|cet|est|edt|pst|pdt|et)\b)"
    r"|\d+(?:st|nd|rd|th)?|[\s,./:+-]"
)
_ABBREVIATIONS = set("mr mrs ms dr st jr sr gen gov sen rep prof no vs inc co".split())
_SENTENCE_END = re.compile(r"[.!?]+[”\"’')\]]*\s+(?=[“\"‘'(\[]?[A-Z0-9])")


def _is_dateline(line: str) -> bool:
    """Whether a line is a byline or a bare date, which precede titles but are never titles."""
    return bool(_BYLINE.match(line)) or (any(c.isdigit() for c in line) and not _DATE_TOKEN.sub("", line))


def _is_headline(line: str) -> bool:
    """Whether a line reads like a headline: short, capitalised, one unpunctuated phrase."""
    words = line.split()
    return (
        2 <= len(words) <= 20
        and len(line) <= 160
        and line[-1] not in ".!:;,"
        and (line[0].isupper() or line[0].isdigit() or line[0] in "“\"‘'")
        and _first_sentence(line) == line  # two sentences are body text, not a headline
        and not _is_dateline(line)
    )


def _first_content_line(text: str) -> str:
    """The first line that is not blank, a byline or a date."""
    return next((line for line in text.split("\n") if line and not _is_dateline(line)), "")


def guess_title(text: str) -> str | None:
    """Find a headline at the top of a text.

    Args:
        text: Clean article text.

    Returns:
        The first line that is not a byline or date, when it looks like a headline; else None.
    """
    line = _first_content_line(text)
    return line if line and _is_headline(line) else None


def _first_sentence(paragraph: str) -> str:
    """The paragraph up to its first sentence end that is not an abbreviation or initial."""
    for match in _SENTENCE_END.finditer(paragraph):
        last_word = paragraph[: match.start()].rsplit(None, 1)[-1]
        if last_word.lower() in _ABBREVIATIONS or re.fullmatch(r"(?:[A-Z]\.)*[A-Z]", last_word):
            continue
        return paragraph[: match.end()].strip()
    return paragraph


def fallback_title(text: str, max_chars: int = 120) -> str:
    """Make a title from the first sentence when the text has no headline.

    Args:
        text: Clean article text.
        max_chars: Longest title to return, ellipsis included.

    Returns:
        The first sentence, cut at a word boundary and ended with "…" when too long; "" for an
        empty text.
    """
    sentence = _first_sentence(_first_content_line(text))
    if len(sentence) <= max_chars:
        return sentence
    cut = sentence[:max_chars].rsplit(" ", 1)[0][: max_chars - 1]  # drop the word cut in half
    return cut.rstrip(" ,;:–—-") + "…"


_DATE_HEADER = re.compile(r"\A\s*(?i:date)[ \t]+(\d{4}-\d{2}-\d{2})\b[ \t]*")
# Recorded with every text extracted from a page, so `newswatch reextract` knows which are stale.
EXTRACTOR = f"trafilatura {trafilatura.__version__}"

_HTML_LANG = re.compile(rb"<html\b[^>]*?\blang\s*=\s*[\"']?([A-Za-z]{2,3})\b", re.IGNORECASE)


def _parse_date(value: str) -> datetime | None:
    """Midnight UTC of a YYYY-MM-DD date (extra time text is ignored), or None if invalid."""
    try:
        day = date.fromisoformat(value.strip()[:10])
    except ValueError:
        logger.debug("Ignoring unparseable date %r", value)
        return None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _split_title(text: str, title: str) -> str:
    """Remove lines equal to the headline from the body, unless nothing else is left."""
    return normalize_text("\n".join(line for line in text.split("\n") if line != title)) or text


def article_from_text(raw: str, url: str, *, published_at: datetime | None = None) -> Article:
    """Build an article from plain text: an optional ``date YYYY-MM-DD`` header, then the body.

    The body may start on the header line, possibly after a UI fragment such as "loading…".

    Args:
        raw: The file's text.
        url: Where the text came from, stored as given.
        published_at: Overrides the date header when given; naive values are taken as UTC.

    Returns:
        The cleaned article; a leading headline line becomes the title and leaves the body,
        otherwise the title is the shortened first sentence.
    """
    header_date = None
    match = _DATE_HEADER.match(raw)
    if match:
        header_date = _parse_date(match.group(1))
        raw = _UI_AFTER_HEADER.sub("", raw[match.end() :], count=1)
    text = _clean_text(raw)
    title = guess_title(text)
    if title:
        text = _split_title(text, title)
    else:
        title = fallback_title(text) or None
    if published_at:  # naive datetimes are taken to be UTC already
        published_at = published_at.replace(tzinfo=published_at.tzinfo or UTC).astimezone(UTC)
    return Article(url, title, text, published_at or header_date, language=detect_language(text))


# --- page bytes to text ---------------------------------------------------------------------------

# Where a page says its own charset: <meta charset>, <meta http-equiv content="...; charset=">, or
# the XML declaration of an XHTML page. Browsers look at the first 1024 bytes; pages that put a
# long script first are common enough to look further.
def article_from_html(
    html: str | bytes, url: str, *, charset: str | None = None, entry_title: str | None = None,
    entry_author: str | None = None,
) -> Article | None:
    """Extract the main text and metadata of an HTML page with trafilatura.

    Args:
        html: The page; bytes are decoded by `decode_html`, which checks the declared charset.
        url: Where the page came from, stored as given.
        charset: The charset named by the HTTP Content-Type header (`FetchResult.charset`), if any.
        entry_title: The title of the page's feed entry, given when the entry also gives its date:
            then trafilatura's date search is skipped (the feed's date wins anyway), the title,
            author, site name, image and canonical URL come from the page's meta tags, JSON-LD
            and headline, and the title is this one when the page names none. The text is the
            same.
        entry_author: The entry's author, if it names one: then the search of the page for a
            byline is skipped too (with `entry_title`).

    Returns:
        The cleaned article, or None when the page has no extractable text, or bytes that give
        no sensible text in any charset.
    """
    if isinstance(html, bytes) and not html.startswith(COMPRESSED_MAGIC):  # trafilatura inflates those
        decoded = decode_html(html, charset)
        if decoded is None:
            return None
        html = decoded
    metadata = None
    if entry_title:
        html = trafilatura.load_html(html)
        if html is None:
            return None
        metadata = page_metadata(html, url, find_author=not entry_author)
    # Measured on the article-extraction benchmark (bench/evaluate_extraction.py): tables often
    # hold article text, and favouring precision drops more boilerplate than text.
    document = trafilatura.bare_extraction(
        html, url=url, with_metadata=metadata is None, include_comments=False, include_tables=True, favor_precision=True
    )
    if document is None or not document.text:
        return None
    if metadata is not None:
        for name in ("title", "author", "url", "sitename", "image"):
            setattr(document, name, getattr(metadata, name))
        document.title = document.title or entry_title
    # trafilatura writes one paragraph per line; articles separate paragraphs by a blank line.
    text = _clean_text(re.sub(r"\n+", "\n\n", document.text))
    if not text:
        return None
    title = normalize_text(document.title) if document.title else guess_title(text)
    if title:
        text = _split_title(text, title)
    # trafilatura only reports a language when asked to filter by one: trust <html lang>, else detect.
    language = document.language or _declared_language(html)
    # trafilatura reports the page's rel=canonical or og:url as its url, else the url it was given.
    canonical = document.url if document.url and document.url != url and _is_article_url(document.url) else None
    return Article(
        url=url,
        title=title or fallback_title(text) or None,
        text=text,
        published_at=_parse_date(document.date) if document.date else None,
        author=document.author or None,
        language=language.lower()[:2] if language else detect_language(text),
        site_name=document.sitename or None,
        image_url=document.image or None,
        canonical_url=canonical,
    )


def page_metadata(tree, url: str, *, find_author: bool = True):
    """A page's title, author, site name, image and canonical URL from its meta tags, JSON-LD, headline and canonical link.

    trafilatura's own pieces of `extract_metadata`, without its date search, categories, tags and
    licence (what `article_from_html` skips when the feed entry gives the date) and, unless
    `find_author`, without its search of the page for a byline. Returns a
    `trafilatura.settings.Document`.
    """
    from trafilatura.metadata import (
        META_URL, examine_meta, extract_author, extract_meta_json, extract_sitename, extract_title, extract_url,
    )

    metadata = examine_meta(tree)
    if metadata.author and " " not in metadata.author:  # as trafilatura: a single word is a handle, not a name
        metadata.author = None
    try:
        metadata = extract_meta_json(tree, metadata)
    except Exception:  # noqa: BLE001 - malformed JSON-LD on a page is not the article's problem
        pass
    if not metadata.title:  # the page's own headline (<title>, <h1>): cheap, and what the full path finds
        metadata.title = extract_title(tree)
    if not metadata.author and find_author:
        metadata.author = extract_author(tree)
    if not metadata.url:
        metadata.url = extract_url(tree, url)
    if not metadata.sitename:
        metadata.sitename = extract_sitename(tree)
    if metadata.sitename:
        metadata.sitename = metadata.sitename.lstrip("@")
        if metadata.sitename and "." not in metadata.sitename and not metadata.sitename[0].isupper():
            metadata.sitename = metadata.sitename.title()
    elif metadata.url and (host := META_URL.match(metadata.url)):
        metadata.sitename = host[1]
    metadata.clean_and_trim()
    return metadata


def _declared_language(html) -> str | None:
    """The language code of `<html lang>` of a page (text, bytes or a parsed tree), if any."""
    if isinstance(html, (str, bytes)):
        found = _HTML_LANG.search((html.encode("utf-8", "replace") if isinstance(html, str) else html)[:4096])
        return found.group(1).decode("ascii") if found else None
    found = _HTML_LANG.search(f"<html lang='{html.get('lang') or ''}'>".encode("utf-8", "replace"))
    return found.group(1).decode("ascii") if found else None


def _is_article_url(url: str) -> bool:
    """A canonical link worth trusting: http(s) with a path (sites that point every page home are ignored)."""
    match = re.match(r"https?://[^/?#]+(/[^?#]*)?", url)
    return bool(match and match.group(1) and match.group(1).strip("/"))


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code of the text's language, or None when the text is too short to tell."""
    sample = text[:2000]
    if len(sample) < 40:
        return None
    code, _ = py3langid.classify(sample)
    return code
