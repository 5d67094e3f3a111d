"""Read and write OPML subscription lists, the format feed readers import and export."""

import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from lxml import etree

from extract.feeds import declares_xml_entities

logger = logging.getLogger(__name__)

# No entity expansion, no DTD, no network: an OPML file is untrusted user input.
_PARSER_OPTIONS = {"resolve_entities": False, "no_network": True, "load_dtd": False, "huge_tree": False}
# Characters XML 1.0 cannot hold at all, not even escaped.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class OpmlError(Exception):
    """The data is not a usable OPML document; the message is one sentence."""


@dataclass(frozen=True)
class OpmlFeed:
    """One subscription: the feed's URL and its display title."""

    url: str
    title: str | None


def _is_web_url(url: str) -> bool:
    """Whether the URL is an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(url)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def read_opml(data: bytes | str) -> list[OpmlFeed]:
    """Read the feeds of an OPML document.

    Every outline with an `xmlUrl` counts, however deeply nested in folders; the title comes
    from `title`, else `text`. Non-http(s) URLs are skipped and repeated URLs kept once.

    Args:
        data: The document; a str is encoded as UTF-8 first.

    Returns:
        The feeds in document order.

    Raises:
        OpmlError: The data declares XML entities, is not well-formed, or is not OPML.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if declares_xml_entities(data):
        raise OpmlError("OPML declares XML entities; refused")
    try:
        root = etree.fromstring(data, etree.XMLParser(**_PARSER_OPTIONS))
    except etree.XMLSyntaxError as error:
        raise OpmlError(f"OPML is not well-formed XML: {error}") from None
    if etree.QName(root).localname.lower() != "opml":
        raise OpmlError(f"not an OPML document: the root element is <{etree.QName(root).localname}>")
    feeds: dict[str, OpmlFeed] = {}
    for outline in root.iter("{*}outline"):
        # Exporters disagree on the attribute's case (xmlUrl, xmlurl, xmlURL).
        attributes = {name.lower(): value for name, value in outline.attrib.items()}
        url = attributes.get("xmlurl", "").strip()
        if not _is_web_url(url):
            if url:
                logger.debug("Skipping non-http feed URL %.80s", url)
            continue
        title = (attributes.get("title") or attributes.get("text") or "").strip() or None
        feeds.setdefault(url, OpmlFeed(url=url, title=title))
    return list(feeds.values())


def write_opml(feeds: list[OpmlFeed], title: str = "newswatch feeds") -> str:
    """Write feeds as an OPML 2.0 document.

    Args:
        feeds: The feeds, written in this order.
        title: The document's title.

    Returns:
        The document as UTF-8 XML text, with every value escaped; `read_opml` reads it back to
        the same feeds (titles are stripped, characters XML cannot hold are dropped).
    """
    root = etree.Element("opml", version="2.0")
    etree.SubElement(etree.SubElement(root, "head"), "title").text = _NOT_XML.sub("", title)
    body = etree.SubElement(root, "body")
    for feed in feeds:
        # OPML 2.0 requires `text`; an empty one keeps a missing title missing on the way back.
        outline = etree.SubElement(body, "outline", type="rss", text=_NOT_XML.sub("", feed.title or ""))
        if feed.title:
            outline.set("title", _NOT_XML.sub("", feed.title))
        outline.set("xmlUrl", _NOT_XML.sub("", feed.url))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True).decode("utf-8")
