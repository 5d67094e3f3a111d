"""Atom feeds (RFC 4287) of stories, for feed readers: a watch's alerts, or a saved search.

One entry per story. Its id is the story's (`story_entry_id`), which never changes, so a reader
shows each story once however often it fetches the feed; when the story grows, its entry keeps
its id and gets a later `updated`, and readers show it as updated rather than as a new item.

The XML is built as an element tree with lxml, never as text: every title, name and URL that
came from a feed is data, escaped by the serializer. Characters XML cannot hold (control
characters a feed may carry) are dropped, and only http(s) URLs become links.
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lxml import etree

ATOM_NAMESPACE = "http://www.w3.org/2005/Atom"
XHTML_NAMESPACE = "http://www.w3.org/1999/xhtml"
MEDIA_TYPE = "application/atom+xml; charset=utf-8"
GENERATOR = "newswatch"

_ATOM = f"{{{ATOM_NAMESPACE}}}"
_XHTML = f"{{{XHTML_NAMESPACE}}}"
# What XML 1.0 cannot hold at all: C0 controls but tab and line breaks, lone surrogates, U+FFFE/U+FFFF.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def story_entry_id(story_id: str) -> str:
    """The entry id of a story: the same in every feed, on every run and after every restart."""
    return f"urn:newswatch:story:{story_id}"


def xml_text(value: object) -> str:
    """A value as text XML can hold: characters XML 1.0 forbids are dropped."""
    return _NOT_XML.sub("", "" if value is None else str(value))


def is_web_url(url: str | None) -> bool:
    """Whether a URL may become a link: http(s) only (never javascript:, data: or file:)."""
    return bool(url) and re.match(r"^https?://[^\s]+$", url, re.IGNORECASE) is not None


def atom_time(moment: datetime) -> str:
    """RFC 3339 in UTC, as Atom's date constructs want it (a naive time is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Link:
    """An atom:link."""

    href: str
    rel: str = "alternate"
    type: str | None = None
    title: str | None = None


@dataclass(frozen=True)
class ListedArticle:
    """An article as an entry's content lists it: its title, link, source, time and what it duplicates."""

    title: str
    url: str | None
    source: str | None
    seen_at: datetime | None
    note: str | None = None


@dataclass(frozen=True)
class Entry:
    """One story of a feed."""

    id: str
    title: str
    updated: datetime
    published: datetime | None = None
    summary: str | None = None
    links: list[Link] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    articles: list[ListedArticle] = field(default_factory=list)
    articles_not_listed: int = 0


@dataclass(frozen=True)
class Feed:
    """A feed: its own id and title, when it last changed, and its entries (newest first)."""

    id: str
    title: str
    updated: datetime
    links: list[Link] = field(default_factory=list)
    subtitle: str | None = None
    author: str = GENERATOR
    entries: list[Entry] = field(default_factory=list)


def _child(parent: etree._Element, tag: str, text: object = None, **attributes: str | None) -> etree._Element:
    element = etree.SubElement(parent, tag, {key: xml_text(value) for key, value in attributes.items() if value is not None})
    if text is not None:
        element.text = xml_text(text)
    return element


def _link(parent: etree._Element, link: Link) -> None:
    _child(parent, f"{_ATOM}link", href=link.href, rel=link.rel, type=link.type, title=link.title)


def _content(entry: etree._Element, item: Entry) -> None:
    """The story's articles as an XHTML list (type="xhtml": an element tree, no markup in strings)."""
    content = _child(entry, f"{_ATOM}content", type="xhtml")
    division = etree.SubElement(content, f"{_XHTML}div", nsmap={None: XHTML_NAMESPACE})
    listing = etree.SubElement(division, f"{_XHTML}ul")
    for article in item.articles:
        entry_item = etree.SubElement(listing, f"{_XHTML}li")
        title = article.title or article.url or "(untitled)"
        if is_web_url(article.url):
            _child(entry_item, f"{_XHTML}a", title, href=article.url)
        else:
            _child(entry_item, f"{_XHTML}span", title)
        seen = article.seen_at and f"{atom_time(article.seen_at)[:16].replace('T', ' ')} UTC"
        details = [part for part in (article.source, seen, article.note) if part]
        if details:
            last = entry_item[-1]
            last.tail = xml_text(" — " + " · ".join(details))
    if item.articles_not_listed:
        _child(division, f"{_XHTML}p", f"and {item.articles_not_listed} more articles")


def render_feed(feed: Feed) -> bytes:
    """The feed as an Atom 1.0 document (UTF-8, with its XML declaration)."""
    root = etree.Element(f"{_ATOM}feed", nsmap={None: ATOM_NAMESPACE})
    _child(root, f"{_ATOM}id", feed.id)
    _child(root, f"{_ATOM}title", feed.title, type="text")
    if feed.subtitle:
        _child(root, f"{_ATOM}subtitle", feed.subtitle, type="text")
    _child(root, f"{_ATOM}updated", atom_time(feed.updated))
    author = _child(root, f"{_ATOM}author")
    _child(author, f"{_ATOM}name", feed.author)
    _child(root, f"{_ATOM}generator", GENERATOR)
    for link in feed.links:
        _link(root, link)
    for item in feed.entries:
        entry = _child(root, f"{_ATOM}entry")
        _child(entry, f"{_ATOM}id", item.id)
        _child(entry, f"{_ATOM}title", item.title or "(untitled)", type="text")
        _child(entry, f"{_ATOM}updated", atom_time(item.updated))
        if item.published is not None:
            _child(entry, f"{_ATOM}published", atom_time(item.published))
        for link in item.links:
            _link(entry, link)
        for term in item.categories:
            _child(entry, f"{_ATOM}category", term=term)
        if item.summary:
            _child(entry, f"{_ATOM}summary", item.summary, type="text")
        _content(entry, item)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
