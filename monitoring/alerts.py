"""An alert's content: its payload (what is stored and what JSON webhooks receive) and its rendered forms.

Alert payload
-------------
`alert_payload` builds it when the alert is decided (the story's summary is `monitoring.summary`'s);
`render_alert` renders it; JSON webhooks receive it as is. Every value is JSON (times are ISO 8601
strings with an offset, UTC)::

    {
      "alert_id": "a1b2c3",                      # str, unique per (watch, story, kind)
      "kind": "new",                             # "new" story or "developing" (grew since)
      "created_at": "2025-03-01T09:30:00+00:00",
      "watch": {"id": "w1", "name": "Storms",    # exactly one of:
                "query": "storm OR hurricane"},  #   "query": keyword query, or
                                                 #   "like": text a semantic watch compares with
      "story": {
        "story_id": "s9", "headline": "Storm hits the coast",
        "article_count": 5,                      # articles in the story, duplicates included
        "duplicate_count": 2, "source_count": 3,
        "sources": ["Example News", "Daily Planet", "Wire"],
        "first_seen_at": "2025-03-01T06:00:00+00:00",
        "last_seen_at": "2025-03-01T09:10:00+00:00"
      },
      "articles": [                              # the story's originals, in the order to show
        {"article_id": "a7", "title": "Storm hits the coast", "url": "https://example.com/a7",
         "source": "Example News", "published_at": "2025-03-01T06:00:00+00:00",  # or null
         "duplicate_of": null, "duplicate_kind": null,
         "duplicates": [                         # copies of this article folded under it
           {"title": "Storm hits coast", "url": "https://wire.example/x", "source": "Wire",
            "kind": "copy"}]}                    # extract.dedupe: "url", "exact", "copy", "rewrite"; "translation"
      ]
    }

Every feed value is shown as text in every form (`monitoring.markup`). A digest becomes the same
kind of message (`monitoring.digest.digest_message`); `monitoring.delivery` sends either.
"""

import html
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from monitoring.markup import (
    LINK_STYLE, MUTED_STYLE, count, escape_markdown, format_time, html_document, html_link, markdown_link, plain_text,
    sources_line, to_json_value,
)
from monitoring.summary import story_summary

# A story's payload lists at most this many of its original articles (the latest ones).
PAYLOAD_ARTICLES = 50


@dataclass(frozen=True)
class AlertMessage:
    """One message in every form a service may want; `payload` is what JSON webhooks get."""

    title: str  # plain text, one line (the e-mail subject)
    markdown: str  # CommonMark, every feed value escaped
    html: str  # a complete HTML document, inline styles only
    text: str  # plain text
    payload: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable


class Watch(Protocol):
    """What a payload says about the watch (`warehouse.watches.WatchRecord` has it)."""

    watch_id: int
    name: str
    query: str | None
    like_text: str | None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def alert_payload(alert_id: str, kind: str, now: datetime, watch: Watch, story: dict, members: list[dict]) -> dict:
    """The JSON payload of an alert (its shape is in the module docstring): the story with its duplicates folded.

    Args:
        alert_id: The alert's key (`monitoring.policy.alert_id_for`).
        kind: "new" or "developing".
        now: When the alert was decided.
        watch: The watch that alerts.
        story: The story, as `warehouse.queries.list_stories(..., details=True)` reads it.
        members: Its articles, as `warehouse.queries.story_articles(..., details=True)` reads them.
    """
    originals = [m for m in members if not m["duplicate_of"]]
    copies: dict[str, list[dict]] = {}
    for member in members:
        if member["duplicate_of"]:
            copies.setdefault(member["duplicate_of"], []).append(member)
    shown = originals[-PAYLOAD_ARTICLES:]
    watch_part = {"id": watch.watch_id, "name": watch.name}
    watch_part.update({"query": watch.query} if watch.query is not None else {"like": watch.like_text})
    summary = story_summary(story)
    return {
        "alert_id": alert_id,
        "kind": kind,
        "created_at": now.isoformat(),
        "watch": watch_part,
        "story": {**summary, "first_seen_at": _iso(summary["first_seen_at"]), "last_seen_at": _iso(summary["last_seen_at"])},
        "articles": [
            {
                "article_id": article["article_id"],
                "title": article["title"],
                "url": article["url"],
                "source": article["source_name"],
                "published_at": _iso(article["published_at"]),
                "duplicate_of": None,
                "duplicate_kind": None,
                "duplicates": [
                    {"title": copy["title"], "url": copy["url"], "source": copy["source_name"], "kind": copy["duplicate_kind"]}
                    for copy in copies.get(article["article_id"], [])
                ],
            }
            for article in shown
        ],
        "articles_not_listed": len(originals) - len(shown),
    }


@dataclass(frozen=True)
class _AlertView:
    """The plain-text pieces of one alert, shared by its three renderings."""

    intro: str  # "New story" or "Developing story"
    watch_name: str
    query_kind: str  # "query" or "like"
    query: str
    headline: str
    size: str  # "5 articles (2 duplicates) from 3 sources"
    sources: str
    seen: str  # "First seen ..., last seen ..."
    footer: str  # "Alert <id> · <created>"
    articles: list[dict]


def _alert_view(payload: dict) -> _AlertView:
    """Read the pieces every rendering shows from a (JSON-normalised) payload."""
    watch, story = payload["watch"], payload["story"]
    if watch.get("query") is None and watch.get("like") is not None:
        query_kind, query = "like", watch.get("like")
    else:
        query_kind, query = "query", watch.get("query")
    return _AlertView(
        intro="Developing story" if payload.get("kind") == "developing" else "New story",
        watch_name=plain_text(watch.get("name"), "watch"),
        query_kind=query_kind,
        query=plain_text(query),
        headline=plain_text(story.get("headline"), "(untitled story)"),
        size=(f"{count(story.get('article_count'), 'article')} "
              f"({count(story.get('duplicate_count'), 'duplicate')}) "
              f"from {count(story.get('source_count'), 'source')}"),
        sources=sources_line(story.get("sources")),
        seen=(f"First seen {format_time(story.get('first_seen_at'))}, "
              f"last seen {format_time(story.get('last_seen_at'))}"),
        footer=f"Alert {plain_text(payload.get('alert_id'))} · {format_time(payload.get('created_at'))}",
        articles=[article for article in payload.get("articles") or [] if isinstance(article, dict)],
    )


def _alert_title(payload: dict) -> str:
    """`newswatch · <watch name>: <headline> (5 articles, 3 sources)`, plain text."""
    watch, story = payload["watch"], payload["story"]
    return (f"newswatch · {plain_text(watch.get('name'), 'watch')}: "
            f"{plain_text(story.get('headline'), '(untitled story)')} "
            f"({count(story.get('article_count'), 'article')}, {count(story.get('source_count'), 'source')})")


def render_alert(payload: dict) -> AlertMessage:
    """Render the messages for one alert.

    Args:
        payload: The alert payload, shaped as the module docstring describes.

    Returns:
        An `AlertMessage` with the title, the Markdown, HTML and text forms, and the payload itself
        (datetimes turned into ISO strings) for JSON webhooks.

    Raises:
        ValueError: When the payload has no `alert_id`, `watch` or `story`.
    """
    if not isinstance(payload, dict) or not payload.get("alert_id"):
        raise ValueError("alert payload has no alert_id")
    if not isinstance(payload.get("watch"), dict) or not isinstance(payload.get("story"), dict):
        raise ValueError("alert payload needs a watch and a story object")
    payload = to_json_value(payload)
    view, title = _alert_view(payload), _alert_title(payload)
    return AlertMessage(title=title, markdown=_alert_markdown(view), html=_alert_html(title, view),
                        text=_alert_text(view), payload=payload)


def _duplicates(article: dict) -> list[dict]:
    """The copies folded under an article."""
    return [duplicate for duplicate in article.get("duplicates") or [] if isinstance(duplicate, dict)]


_DUPLICATE_LABELS = {"url": "same page", "exact": "exact copy", "copy": "copy", "rewrite": "rewrite", "translation": "translation"}


def _duplicate_label(duplicate: dict) -> str:
    """How a copy relates to its original, from its dedupe kind (`copy`, `rewrite`, ...)."""
    kind = plain_text(duplicate.get("kind"))
    return _DUPLICATE_LABELS.get(kind, f"duplicate ({kind})" if kind else "duplicate")


def _article_details(article: dict) -> str:
    """`Example News · 2025-03-01 06:00 UTC`, plain text (either part may be missing)."""
    parts = (plain_text(article.get("source")), format_time(article.get("published_at"), ""))
    return " · ".join(part for part in parts if part)


def _alert_markdown(view: _AlertView) -> str:
    """The alert as CommonMark, every value escaped."""
    md = escape_markdown
    query = f" ({view.query_kind}: {md(view.query)})" if view.query else ""
    lines = [f"{view.intro} for watch **{md(view.watch_name)}**{query}", "", f"**{md(view.headline)}**", "",
             md(view.size) + (f": {md(view.sources)}" if view.sources else ""), "", md(view.seen), ""]
    for number, article in enumerate(view.articles, start=1):
        details = md(_article_details(article))
        lines.append(f"{number}. {markdown_link(md(article.get('title'), '(untitled)'), article.get('url'))}"
                     + (f" — {details}" if details else ""))
        for duplicate in _duplicates(article):
            label = markdown_link(md(duplicate.get("title"), "(untitled)"), duplicate.get("url"))
            source = md(duplicate.get("source"))
            lines.append(f"    - {md(_duplicate_label(duplicate))}: {label}"
                         + (f" — {source}" if source else ""))
    lines += ["", md(view.footer)]
    return "\n".join(lines).strip() + "\n"


def _alert_text(view: _AlertView) -> str:
    """The alert as plain text."""
    query = f" ({view.query_kind}: {view.query})" if view.query else ""
    lines = [f"{view.intro} for watch {view.watch_name}{query}", "", view.headline,
             view.size + (f": {view.sources}" if view.sources else ""), view.seen, ""]
    for number, article in enumerate(view.articles, start=1):
        lines.append(f"{number}. {plain_text(article.get('title'), '(untitled)')}")
        extras = (_article_details(article), plain_text(article.get("url")))
        lines += [f"   {extra}" for extra in extras if extra]
        for duplicate in _duplicates(article):
            parts = (plain_text(duplicate.get("title"), "(untitled)"), plain_text(duplicate.get("source")),
                     plain_text(duplicate.get("url")))
            lines.append(f"   - {_duplicate_label(duplicate)}: "
                         + " · ".join(part for part in parts if part))
    lines += ["", view.footer]
    return "\n".join(lines).strip() + "\n"


def _alert_html(title: str, view: _AlertView) -> str:
    """The alert as a standalone HTML document, every value escaped."""
    esc = lambda value: html.escape(value, quote=True)  # noqa: E731 (short local alias)
    small = f"font-size:12px;{MUTED_STYLE}"
    query = f" ({esc(view.query_kind)}: {esc(view.query)})" if view.query else ""
    sources = f": {esc(view.sources)}" if view.sources else ""
    parts = [
        f'<p style="margin:0 0 6px;font-size:13px;{MUTED_STYLE};">{esc(view.intro)} for watch '
        f"<strong>{esc(view.watch_name)}</strong>{query}</p>\n",
        # A bold paragraph rather than <h1>: Apprise turns it into bold text for Slack, not "# ...".
        f'<p style="margin:0 0 10px;font-size:20px;line-height:1.3;">'
        f"<strong>{esc(view.headline)}</strong></p>\n",
        f'<p style="margin:0 0 4px;font-size:14px;">{esc(view.size)}{sources}</p>\n',
        f'<p style="margin:0 0 16px;font-size:13px;{MUTED_STYLE};">{esc(view.seen)}</p>\n',
    ]
    if view.articles:
        parts.append('<ol style="margin:0;padding-left:22px;font-size:14px;line-height:1.45;">\n')
    for article in view.articles:
        label = esc(plain_text(article.get("title"), "(untitled)"))
        details = _article_details(article)
        parts.append(f'<li style="margin:0 0 10px;">{html_link(label, article.get("url"), LINK_STYLE)}'
                     + (f'<br><span style="{small};">{esc(details)}</span>' if details else ""))
        duplicates = _duplicates(article)
        if duplicates:
            parts.append(f'\n<ul style="margin:4px 0 0;padding-left:18px;{small};">\n')
        for duplicate in duplicates:
            label = esc(plain_text(duplicate.get("title"), "(untitled)"))
            link = html_link(label, duplicate.get("url"), LINK_STYLE)
            source = plain_text(duplicate.get("source"))
            parts.append(f"<li>{esc(_duplicate_label(duplicate))}: {link}"
                         + (f" — {esc(source)}" if source else "") + "</li>\n")
        parts.append("</ul></li>\n" if duplicates else "</li>\n")
    if view.articles:
        parts.append("</ol>\n")
    parts.append(f'<p style="margin:16px 0 0;{small};">{esc(view.footer)}</p>\n')
    return html_document(title, "".join(parts))
