"""Parse RSS, Atom and JSON Feed bodies into `FeedEntry` objects, refusing hostile XML first."""

import io
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit
from xml.sax import SAXParseException

import courlan
import feedparser
from lxml import etree, html

logger = logging.getLogger(__name__)

MAX_FEED_BYTES = 20_000_000
_PROLOG_BYTES = 64 * 1024  # real prologs take a few hundred bytes; a longer one is refused


class FeedError(Exception):
    """The body is not a usable feed; the message is one sentence."""


@dataclass(frozen=True)
class FeedEntry:
    """One feed item that points at an article."""

    url: str  # absolute and canonical, see `canonicalize_url`
    title: str | None
    published_at: datetime | None  # timezone-aware UTC; the published date, else the updated one
    author: str | None
    summary: str | None  # plain text
    guid: str | None


@dataclass(frozen=True)
class ParsedFeed:
    """A feed's own title and link, and its usable entries."""

    title: str | None
    link: str | None
    entries: tuple[FeedEntry, ...]
    warning: str | None = None  # the error feedparser recovered from, as one line


# Tracking parameters that courlan's own list (utm_*, fbclid, gclid, mc_*, ref, ...) misses.
_EXTRA_TRACKERS = re.compile(r"cmpid|cmp|smid|ncid|ocid|icid|ito|gclsrc|s_kwcid|rb_clickid|wt[._]mc(?:_id)?"
                             r"|_hs(?:enc|mi)|__twitter_impression", re.IGNORECASE)


def canonicalize_url(url: str) -> str:
    """Normalise an absolute URL so that links to the same article compare equal.

    Args:
        url: An absolute http(s) URL.

    Returns:
        The URL with a lower-case scheme and host, no default port, no fragment, "/" for an
        empty path, and sorted query parameters without tracking parameters.

    Raises:
        ValueError: The URL cannot be parsed (for example a broken IPv6 host or port).
    """
    parts = urlsplit(url.strip())
    query = [(k, v) for k, v in parse_qsl(parts.query, True) if not _EXTRA_TRACKERS.fullmatch(k)]
    # Not strict=True: that keeps only ~15 allow-listed parameters (id, p, page, ...), so
    # story.php?sid=1 and ?sid=2 would become one URL and de-duplication would drop one.
    url = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", urlencode(query), ""))
    return courlan.normalize_url(url)


# Document starts that announce an encoding in which "<!ENTITY" is not plain ASCII.
_WIDE_STARTS = ((b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"),
                (b"\xfe\xff", "utf-16-be"), (b"\xff\xfe", "utf-16-le"), (b"\x4c\x6f\xa7\x94", "cp037"))
_XML_ENCODING = re.compile(rb"""\s*<\?xml[^>]*?encoding\s*=\s*["']?([\w.:-]+)""")
_CHARSET = re.compile(r"""charset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)
_ENTITY_DECLARATION = re.compile(r"<!\s*ENTITY", re.IGNORECASE)
_DECLARATION_STOP = re.compile(r"""["'\[>]""")
_ELEMENT_NAME = re.compile(r"<([^\W\d][^\s/>]*)")


def _root_start(text: str) -> int | None:
    """Where the root element's start tag begins, skipping comments, PIs and the DOCTYPE."""
    position = 0
    while (start := text.find("<", position)) >= 0:
        if text.startswith(("<!--", "<?"), start):
            closer = "-->" if text.startswith("<!--", start) else "?>"
            if (end := text.find(closer, start + 2)) < 0:
                return None
            position = end + len(closer)
        elif text.startswith("<!", start):  # the DOCTYPE, or a declaration inside its subset
            position = start + 2
            # Quoted literals may hold "<" and ">", so skip them whole; "[" opens the subset.
            while (stop := _DECLARATION_STOP.search(text, position)) and stop[0] in "\"'":
                if (end := text.find(stop[0], stop.end())) < 0:
                    return None
                position = end + 1
            if not stop:
                return None
            position = stop.end()
        elif _ELEMENT_NAME.match(text, start):
            return start
        else:  # a stray "<"
            position = start + 1
    return None


def _prolog_texts(body: bytes, content_type: str | None) -> list[str]:
    """The start of the body decoded in every encoding a parser might choose for it."""
    head = body[:_PROLOG_BYTES]
    encodings = [name for start, name in _WIDE_STARTS if head.startswith(start)][:1]
    if b"\x00" in head[:64]:  # UTF-16/32 without a byte-order mark
        encodings += ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"]
    if declared := _XML_ENCODING.match(head):
        encodings.append(declared[1].decode("ascii"))
    if charset := _CHARSET.search(content_type or ""):
        encodings.append(charset[1])
    texts = []
    for encoding in dict.fromkeys(encodings + ["utf-8"]):
        try:
            texts.append(head.decode(encoding, errors="replace"))
        except (LookupError, UnicodeError, ValueError):  # unknown, non-text or strict-only codecs
            continue
    return texts


def declares_xml_entities(body: bytes, content_type: str | None = None) -> bool:
    """Tell whether an XML document declares entities before its root element.

    Only the prolog is read, decoded in every encoding a parser could pick, so UTF-16 or UTF-7
    cannot hide a declaration (a commented-out one counts too, which keeps the scan simple).

    Args:
        body: The raw document.
        content_type: The Content-Type header it came with, if any.

    Returns:
        True when an `<!ENTITY` declaration comes before the root element.
    """
    for text in _prolog_texts(body, content_type):
        root = _root_start(text)
        if _ENTITY_DECLARATION.search(text, 0, len(text) if root is None else root):
            return True
    return False


_BLOCK_TAGS = ("address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption",
               "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav",
               "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul")


def _plain_text(value: object, is_html: bool = True) -> str | None:
    """Text without markup and with single spaces, or None when nothing is left."""
    if not isinstance(value, str):
        return None
    if is_html and ("<" in value or "&" in value):
        try:
            root = html.fragment_fromstring(value, create_parent="div")
            for element in list(root.iter("script", "style")):
                element.drop_tree()
            for element in root.iter(*_BLOCK_TAGS):  # keep the words of adjacent blocks apart
                element.text, element.tail = " " + (element.text or ""), " " + (element.tail or "")
            value = root.text_content()
        except (etree.ParserError, ValueError):
            pass  # the raw string is still better than nothing
    return " ".join(value.split()) or None


def _detail_text(value: object, detail: dict | None) -> str | None:
    """A feedparser text field as plain text, stripping markup only when its type is (X)HTML."""
    return _plain_text(value, "html" in str((detail or {}).get("type", "html")))


def _checked_date(value: tuple | str | None) -> datetime | None:
    """A feedparser UTC struct_time or an RFC 3339 string as UTC; None if absent or implausible."""
    try:
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        elif value:
            value = datetime(*value[:6], tzinfo=UTC)
    except (TypeError, ValueError, OverflowError):
        return None
    if not isinstance(value, datetime) or value.year < 1990 or value > datetime.now(UTC) + timedelta(days=2):
        return None
    return value


def _absolute_url(base: str, link: object) -> str | None:
    """The link resolved against `base`, or None when it is missing or cannot be parsed."""
    try:
        return urljoin(base, link.strip()) if isinstance(link, str) and link.strip() else None
    except ValueError:  # e.g. "http://[::1" or a port that is not a number
        return None


def _article_url(feed_url: str, link: object, guid: object) -> str | None:
    """The entry's canonical article URL: its link, else a guid that is an http(s) URL."""
    for candidate in (_absolute_url(feed_url, link), guid.strip() if isinstance(guid, str) else None):
        try:
            parts = urlsplit(candidate or "")
            if parts.scheme.lower() in ("http", "https") and parts.hostname:
                return canonicalize_url(candidate)
        except ValueError:
            continue
    return None


def _parse_json_feed(body: bytes, url: str) -> ParsedFeed:
    """A JSON Feed 1.0/1.1, which feedparser 6 does not read."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise FeedError(f"not a feed: invalid JSON ({type(error).__name__})") from None
    items = data.get("items") if isinstance(data, dict) else None
    is_versioned = isinstance(data, dict) and str(data.get("version")).startswith("https://jsonfeed.org/")
    if not isinstance(items, list) and not is_versioned:
        raise FeedError("not a feed: JSON without a JSON Feed structure")
    entries = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        guid = item.get("id")
        guid = str(guid) if isinstance(guid, str | int) and not isinstance(guid, bool) else None
        authors = item.get("authors") if isinstance(item.get("authors"), list) else [item.get("author")]
        names = [_plain_text(author.get("name"), False) for author in authors if isinstance(author, dict)]
        text = _plain_text(item.get("summary"), False) or _plain_text(item.get("content_text"), False)
        date = _checked_date(item.get("date_published")) or _checked_date(item.get("date_modified"))
        if entry_url := _article_url(url, item.get("url") or item.get("external_url"), guid):
            entries.append(FeedEntry(
                url=entry_url, title=_plain_text(item.get("title"), False), published_at=date,
                author=next(filter(None, names), None), summary=text or _plain_text(item.get("content_html")),
                guid=guid))
    return ParsedFeed(_plain_text(data.get("title"), False), _absolute_url(url, data.get("home_page_url")),
                      tuple(entries))


# feedparser's complaints about a well-formed document (a wrong declared encoding or media type):
# the strict XML parse still succeeded, so an empty feed with one of these is really empty.
_RECOVERED_PROBLEMS = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)


def _describe_ill_formed(error: object, added_lines: int) -> str:
    """What made the document ill-formed, as a phrase for one sentence.

    `added_lines` is how many lines feedparser put before the document (an XML declaration of its
    own when the document has none), so that the line number points into the body as served.
    """
    if isinstance(error, SAXParseException):
        line = max(1, error.getLineNumber() - added_lines)
        return f"XML syntax error at line {line}: {error.getMessage()}"
    text = " ".join(str(error).split()) if error else ""
    return f"{type(error).__name__}: {text}" if text else "the document is not well-formed XML"


def _parse_xml_feed(body: bytes, url: str, content_type: str | None) -> ParsedFeed:
    """An RSS or Atom feed, through feedparser."""
    # Without a content type feedparser assumes ISO-8859-1 and flags every feed; application/xml
    # means "trust the byte-order mark and the XML declaration, else UTF-8".
    headers = {"content-location": url, "content-type": content_type or "application/xml"}
    try:
        # A BytesIO, never bytes or str: feedparser fetches a str that looks like a URL and
        # opens bytes that name an existing file.
        result = feedparser.parse(io.BytesIO(body), response_headers=headers)
    except Exception as error:  # noqa: BLE001 - odd input crashes it, e.g. encoding="punycode"
        raise FeedError(f"feed could not be parsed ({type(error).__name__})") from None
    if not result.entries and not result.get("version"):
        raise FeedError("not a feed: no RSS, Atom or JSON Feed structure found")
    entries = []
    for item in result.entries:
        if entry_url := _article_url(url, item.get("link"), item.get("id")):
            content = (item.get("content") or [{}])[0]
            # dict.get: FeedParserDict.get("updated_parsed") falls back to published with a warning.
            dates = (item.get("published_parsed"), dict.get(item, "updated_parsed"))
            author = (item.get("author_detail") or {}).get("name") or item.get("author")
            entries.append(FeedEntry(
                url=entry_url, title=_detail_text(item.get("title"), item.get("title_detail")),
                published_at=_checked_date(dates[0]) or _checked_date(dates[1]),
                author=_plain_text(author, False),
                # The fuller of the two: content:encoded often carries the whole article.
                summary=max(
                    (_detail_text(item.get("summary"), item.get("summary_detail")),
                     _detail_text(content.get("value"), content)),
                    key=lambda text: len(text or ""),
                ) or None,
                guid=_plain_text(item.get("id"), False)))
    error = result.get("bozo_exception")
    if result.get("bozo") and not entries and not isinstance(error, _RECOVERED_PROBLEMS):
        # A document that is not well-formed and yields no entry is a broken feed, not an empty one.
        has_declaration = _prolog_texts(body, content_type)[0].lstrip("\ufeff").startswith("<?xml")
        raise FeedError(f"not a feed: {_describe_ill_formed(error, 0 if has_declaration else 1)}")
    warning = " ".join(f"{type(error).__name__}: {error}".split()) if result.get("bozo") else None
    title = _detail_text(result.feed.get("title"), result.feed.get("title_detail"))
    return ParsedFeed(title, _absolute_url(url, result.feed.get("link")), tuple(entries), warning)


def parse_feed(body: bytes, *, url: str, content_type: str | None = None,
               max_bytes: int = MAX_FEED_BYTES) -> ParsedFeed:
    """Parse an RSS 0.9x/1.0/2.0, Atom or JSON Feed body without any network or file access.

    Args:
        body: The raw response body.
        url: The feed's URL, against which relative links are resolved.
        content_type: The response's Content-Type header, if any (it may name the charset).
        max_bytes: Larger bodies are refused.

    Returns:
        The feed with one entry per canonical article URL (the first one wins); entries
        without an http(s) link are skipped. `warning` says what feedparser recovered from
        (an ill-formed feed that still gave entries is accepted with a warning).

    Raises:
        FeedError: The body is too large, declares XML entities, holds no feed at all, or is
            ill-formed XML from which no entry could be recovered. A well-formed feed without
            entries is not an error.
    """
    if len(body) > max_bytes:
        raise FeedError(f"feed is larger than {max_bytes} bytes; refused")
    if not body or body.isspace():
        raise FeedError("not a feed: the body is empty")
    if re.match(rb"(?:\xef\xbb\xbf)?\s*\{", body):
        feed = _parse_json_feed(body, url)
    else:
        # Checked before feedparser sees the bytes, and on the prolog only, so it costs nothing.
        if declares_xml_entities(body, content_type):
            raise FeedError("feed declares XML entities; refused")
        head = _prolog_texts(body, content_type)[0]
        if (root := _root_start(head)) is None and len(body) > _PROLOG_BYTES:
            raise FeedError(f"no root element in the first {_PROLOG_BYTES // 1024} KiB; refused")
        if root is not None and _ELEMENT_NAME.match(head, root)[1].lower() == "html":
            raise FeedError("not a feed: looks like an HTML page")
        feed = _parse_xml_feed(body, url, content_type)
    unique = {}
    for entry in feed.entries:
        unique.setdefault(entry.url, entry)
    if len(unique) < len(feed.entries):
        logger.debug("Dropped %d duplicate entries from %s", len(feed.entries) - len(unique), url)
    return ParsedFeed(feed.title, feed.link, tuple(unique.values()), feed.warning)
