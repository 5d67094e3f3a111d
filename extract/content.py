"""Turn raw article text or HTML into a clean `Article`: normalise, strip boilerplate, find a title."""

import codecs
import functools
import hashlib
import itertools
import logging
import re
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

import py3langid
import trafilatura
from charset_normalizer import from_bytes
from charset_normalizer.constant import IANA_SUPPORTED
from charset_normalizer.md import mess_ratio

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
_DOCUMENT_CHARSET = re.compile(
    rb"""<meta\b[^>]*?charset\s*=\s*["']?\s*([\w.:-]+)|\A\s*<\?xml\b[^>]*?encoding\s*=\s*["']([\w.:-]+)""",
    re.IGNORECASE,
)
_CHARSET_SCAN_BYTES = 16 * 1024
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"\x28\xb5\x2f\xfd")  # gzip, zstd: a body compressed twice
_BYTE_ORDER_MARKS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                     (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# Labels that pages use for a charset whose superset they really mean (the WHATWG Encoding
# Standard decodes them this way too): "iso-8859-1" pages carry windows-1252 quotes and euro signs.
_SUPERSETS = {"ascii": "cp1252", "iso8859-1": "cp1252", "iso8859-9": "cp1254", "tis-620": "cp874",
              "iso8859-11": "cp874", "gb2312": "gb18030", "gbk": "gb18030", "euc_kr": "cp949",
              "shift_jis": "cp932", "big5": "big5hkscs"}
_LABELS_PYTHON_LACKS = {"windows-874": "cp874", "windows-31j": "cp932", "x-sjis": "cp932", "x-gbk": "gb18030"}
# Text charsets only: Python also has codecs such as base64, rot13 or punycode, and utf-7 can hide markup.
_CHARSETS = frozenset(codecs.lookup(name).name for name in IANA_SUPPORTED if name != "utf_7")
_WIDE_CODECS = ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be")
# A decoding is taken to be garbled when the visible text's pieces that hold non-ASCII characters
# average this much "mess" (charset_normalizer's share of suspicious characters, capped at 1 per
# piece). Measured on 700 real pages (A2_trafilatura_eval/dev) in their right charset: at most 0.11;
# the Polish, Ukrainian, Arabic and Chinese ones among them, encoded in their legacy charsets and
# read as windows-1252: 0.52 to 1.
# (Swaps between two Latin charsets, such as windows-1252 for windows-1257, can look clean: the
# order of the candidates in `decode_html` settles those.)
_MAX_MESS = 0.2
_MESS_PIECE_CHARS = 512
_MESS_PIECES = 100
_MARKUP = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->|<[^>]*>", re.IGNORECASE | re.DOTALL)
_C1_CONTROL = re.compile("[\x80-\x9f]")
# Soft hyphens, zero-width and bidi marks, and icon-font characters (private use) are frequent in
# real pages and look suspicious to the measure.
_UNSCORED = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\ue000-\uf8ff]")

# windows-1252 with its five unassigned bytes mapped to the C1 controls, as browsers decode it
# (Python's codec refuses them, and latin-1 would turn quotes and the euro sign into controls).
_WINDOWS_1252 = "".join(bytes([byte]).decode("cp1252", errors="replace").replace("\ufffd", chr(byte))
                        for byte in range(256))


def _windows_1252_for_bad_utf8(error: UnicodeError) -> tuple[str, int]:
    """A codec error handler: bytes that are not UTF-8 are read as windows-1252."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return codecs.charmap_decode(error.object[error.start:error.end], "strict", _WINDOWS_1252)[0], error.end


# Pages that mix UTF-8 with stray windows-1252 bytes (a template in one, an editor in the other)
# are common; this reads each part in its own encoding.
codecs.register_error("newswatch-windows-1252", _windows_1252_for_bad_utf8)


@functools.cache
def _codec_name(label: str) -> str | None:
    """The Python codec for a charset label, or None for an unknown or non-text one (utf-7, base64...)."""
    label = label.strip().strip("\"'").lower()
    try:
        name = codecs.lookup(_LABELS_PYTHON_LACKS.get(label, label)).name
    except (LookupError, ValueError):
        return None
    name = _SUPERSETS.get(name, name)
    return name if name in _CHARSETS else None


def _decode_strictly(body: bytes, codec: str) -> str | None:
    """The body in one charset, or None when some bytes are not valid in it."""
    try:
        if codec == "cp1252":
            return codecs.charmap_decode(body, "strict", _WINDOWS_1252)[0]
        return body.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def _reads_as_text(html: str) -> bool:
    """Whether the page's visible text looks like real writing rather than mis-decoded bytes."""
    text = _UNSCORED.sub("", " ".join(_MARKUP.sub(" ", html).split()))
    pieces = (text[start:start + _MESS_PIECE_CHARS] for start in range(0, len(text), _MESS_PIECE_CHARS))
    # A C1 control character is what bytes 0x80-0x9f become in the wrong charset; text never has one.
    scored = [1.0 if _C1_CONTROL.search(piece) else min(mess_ratio(piece, 10.0), 1.0)
              for piece in itertools.islice((piece for piece in pieces if not piece.isascii()), _MESS_PIECES)]
    return not scored or sum(scored) / len(scored) < _MAX_MESS


def declared_charsets(body: bytes, charset: str | None = None) -> list[str]:
    """The Python codecs a page is declared in: the HTTP charset first, then the page's own."""
    labels = [charset] if charset else []
    if match := _DOCUMENT_CHARSET.search(body[:_CHARSET_SCAN_BYTES]):
        labels.append((match[1] or match[2]).decode("ascii"))
    return list(dict.fromkeys(codec for label in labels if (codec := _codec_name(label))))


def _mostly_utf8(body: bytes) -> bool:
    """Whether a body that is not valid UTF-8 still holds more UTF-8 characters than invalid bytes.

    Pages that mix the two are common (a template in UTF-8, an editor in windows-1252); a page
    wholly in a legacy charset has only the odd accidental UTF-8 pair, such as "ß" + soft hyphen.
    """
    valid = body.decode("utf-8", errors="ignore")
    return len(valid) - sum(map(str.isascii, valid)) > len(body) - len(valid.encode("utf-8"))


def _decodings(body: bytes, declared: list[str]) -> Iterator[tuple[str, str | None]]:
    """Candidate (how, text) decodings of a body that is not valid UTF-8, best first."""
    mixed = _mostly_utf8(body)
    if mixed:
        yield "UTF-8 with windows-1252 bytes", body.decode("utf-8", errors="newswatch-windows-1252")
    for codec in declared:
        if codec != "utf-8" and codec not in _WIDE_CODECS:
            yield codec, _decode_strictly(body, codec)
    if not mixed:  # the browsers' default for a page without a usable declaration
        yield "cp1252", _decode_strictly(body, "cp1252")
    for guess in from_bytes(body):  # charset_normalizer samples the body itself
        yield guess.encoding, _decode_strictly(body, guess.encoding)


def decode_html(body: bytes, charset: str | None = None) -> str | None:
    """Decode a page's bytes, recovering from a charset declaration that does not match them.

    In order: a byte-order mark; a UTF-16/32 charset from the HTTP header; UTF-8 when every byte
    is valid in it (a page declared iso-8859-1 that is really UTF-8 would otherwise read "cafÃ©").
    Otherwise the first of these whose text reads as real writing: UTF-8 with stray
    windows-1252 bytes when UTF-8 dominates; the declared charsets; windows-1252 (a page declared
    utf-8 whose bytes are windows-1252); charset_normalizer's guesses.

    Args:
        body: The page as served (after any Content-Encoding was undone).
        charset: The charset of the HTTP Content-Type header, if any; the page's own <meta
            charset> or XML declaration is read from the body.

    Returns:
        The page as text, or None when no decoding gives sensible text.
    """
    for mark, codec in _BYTE_ORDER_MARKS:
        if body.startswith(mark) and (text := _decode_strictly(body, codec)) is not None:
            return text
    declared = declared_charsets(body, charset)
    if charset and declared and declared[0] in _WIDE_CODECS:  # only a header can say UTF-16 without a BOM
        if (text := _decode_strictly(body, declared[0])) is not None and _reads_as_text(text):
            return text
    if (text := _decode_strictly(body, "utf-8")) is not None:
        return text
    for how, text in _decodings(body, declared):
        if text is not None and _reads_as_text(text):
            if how not in declared:
                logger.debug("Page declared as %s read as %s", declared or "nothing", how)
            return text
    logger.debug("Page declared as %s gives no sensible text in any charset", declared or "nothing")
    return None


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
    if isinstance(html, bytes) and not html.startswith(_COMPRESSED_MAGIC):  # trafilatura inflates those
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
