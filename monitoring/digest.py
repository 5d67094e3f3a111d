"""A digest: the biggest or fastest-growing stories of a period, built from what was read and rendered.

It renders as Markdown, HTML or JSON, and as a message for every kind of service.

`compose_digest` builds it from the stories and articles the warehouse read (`flows.digest` reads
them); `render_digest` and `digest_message` render it. Its shape (times are datetimes or ISO 8601
strings; naive ones are taken as UTC)::

    {
      "title": "Daily digest",                   # str
      "since": "2025-03-01T00:00:00+00:00",      # the period, start included
      "until": "2025-03-02T00:00:00+00:00",      # end excluded
      "watch": "Storms",                         # the watch's name, or None for all stories
      "generated_at": "2025-03-02T00:05:00+00:00",
      "stories": [                               # in the order to show them
        {
          "story_id": "s9", "headline": "Storm hits the coast",
          "article_count": 12,                   # all articles of the story, duplicates included
          "recent_count": 5,                     # articles seen in the period (the growth)
          "duplicate_count": 3, "source_count": 4,
          "sources": ["Example News", "Wire"],
          "first_seen_at": "2025-02-28T18:00:00+00:00",
          "last_seen_at": "2025-03-01T21:40:00+00:00",
          "articles": [                          # the top few, as the builder chose them
            {"title": "Storm hits the coast", "url": "https://example.com/a7",
             "source": "Example News", "seen_at": "2025-03-01T06:00:00+00:00",
             "duplicate_of": None}           # the original's article id for a copy
          ]
        }
      ]
    }

As in alerts (`monitoring.markup`), every value is shown as text in every format: Markdown escapes it, HTML
goes through `html.escape`, and only http(s) URLs become links. The HTML form is a standalone
document for mail clients: inline styles, no scripts, no external resources.
"""

import html
import json
from datetime import UTC, datetime

from monitoring.markup import (
    LINK_STYLE, MUTED_STYLE, count, escape_markdown, format_time, html_document, html_link, markdown_link, plain_text,
    sources_line, to_json_value,
)
from monitoring.alerts import AlertMessage
from monitoring.summary import story_summary

FORMATS = ("markdown", "html", "json")
# Articles listed under each story of a digest.
ARTICLES_PER_STORY = 5


def digest_story(story: dict, members: list[dict], since: datetime, until: datetime) -> dict:
    """A story as a digest lists it: its summary with `recent_count`, and its latest originals seen in [since, until).

    Args:
        story: A story of `warehouse.queries.list_stories(..., details=True, growing_since=since)`.
        members: Articles of `warehouse.queries.story_articles(..., details=True)` (any story's; its own are used).
    """
    articles = [m for m in members if m["story_id"] == story["story_id"] and since <= m["seen_at"] < until]
    return {
        **story_summary(story, recent_count=True),
        "articles": [
            {"title": m["title"], "url": m["url"], "source": m["source_name"], "seen_at": m["seen_at"],
             "duplicate_of": m["duplicate_of"]}
            for m in sorted((m for m in articles if not m["duplicate_of"]), key=lambda m: m["seen_at"], reverse=True)
        ][:ARTICLES_PER_STORY],
    }


def compose_digest(
    stories: list[dict], members: list[dict], since: datetime, until: datetime, *, watch: str | None = None,
    title: str | None = None,
) -> dict:
    """The digest of [since, until) (shaped as the module docstring describes), generated now.

    Args:
        stories: The period's stories as read (`digest_story` says how).
        members: Their articles as read.
        since: The period's start (included).
        until: Its end (excluded).
        watch: The watch's name when the digest is one watch's.
        title: The title (else `newswatch digest`, or `newswatch digest: <watch>`).

    Returns:
        The stories ranked by the articles seen in the period, then by size.
    """
    listed = [digest_story(story, members, since, until) for story in stories]
    # Growth within the period first, then size: list_stories already orders by recent articles.
    listed.sort(key=lambda story: (-story["recent_count"], -story["article_count"]))
    return {
        "title": title or (f"newswatch digest: {watch}" if watch else "newswatch digest"),
        "since": since,
        "until": until,
        "watch": watch,
        "generated_at": datetime.now(UTC),
        "stories": listed,
    }


def _stories(digest: dict) -> list[dict]:
    """The digest's story objects (anything else in the list is skipped)."""
    return [story for story in digest.get("stories") or [] if isinstance(story, dict)]


def _articles(story: dict) -> list[dict]:
    """The story's article objects."""
    return [article for article in story.get("articles") or [] if isinstance(article, dict)]


def _period(digest: dict) -> str:
    """`2025-03-01 00:00 UTC – 2025-03-02 00:00 UTC`."""
    return f"{format_time(digest.get('since'))} – {format_time(digest.get('until'))}"


def _size(story: dict) -> str:
    """`12 articles, 5 new in this period, 3 duplicates, 4 sources`."""
    return (f"{count(story.get('article_count'), 'article')}, "
            f"{count(story.get('recent_count'), 'new article', 'new articles')} in this period, "
            f"{count(story.get('duplicate_count'), 'duplicate')}, "
            f"{count(story.get('source_count'), 'source')}")


def _seen(story: dict) -> str:
    """`first seen ... · last seen ...`."""
    return (f"first seen {format_time(story.get('first_seen_at'))} · "
            f"last seen {format_time(story.get('last_seen_at'))}")


def _scope(digest: dict) -> str:
    """`watch Storms · 3 stories`, or `all stories · 3 stories`."""
    watch = plain_text(digest.get("watch"))
    stories = count(len(_stories(digest)), "story", "stories")
    return (f"watch {watch}" if watch else "all stories") + f" · {stories}"


def _article_details(article: dict) -> str:
    """`Example News · seen 2025-03-01 06:00 UTC · copy`, plain text."""
    parts = [plain_text(article.get("source"))]
    if article.get("seen_at"):
        parts.append(f"seen {format_time(article.get('seen_at'))}")
    if article.get("duplicate_of"):
        parts.append("copy of an earlier article")
    return " · ".join(part for part in parts if part)


def _markdown(digest: dict) -> str:
    """The digest as CommonMark, every value escaped."""
    md = escape_markdown
    lines = [f"# {md(digest.get('title'), 'Digest')}", "",
             f"{md(_period(digest))} · {md(_scope(digest))}", ""]
    stories = _stories(digest)
    if not stories:
        lines += ["No stories in this period.", ""]
    for number, story in enumerate(stories, start=1):
        lines += [f"## {number}\\. {md(story.get('headline'), '(untitled story)')}", "",
                  md(_size(story)) + "  ", md(_seen(story)) + "  "]
        sources = sources_line(story.get("sources"))
        lines.append(f"Sources: {md(sources)}" if sources else "Sources: none")
        lines.append("")
        for article in _articles(story):
            details = md(_article_details(article))
            lines.append(f"- {markdown_link(md(article.get('title'), '(untitled)'), article.get('url'))}"
                         + (f" — {details}" if details else ""))
        lines.append("")
    lines.append(f"Generated {md(format_time(digest.get('generated_at')))} by newswatch\\.")
    return "\n".join(lines).strip() + "\n"


def _text(digest: dict) -> str:
    """The digest as plain text (for services that take text)."""
    lines = [plain_text(digest.get("title"), "Digest"), f"{_period(digest)} · {_scope(digest)}", ""]
    stories = _stories(digest)
    if not stories:
        lines += ["No stories in this period.", ""]
    for number, story in enumerate(stories, start=1):
        lines += [f"{number}. {plain_text(story.get('headline'), '(untitled story)')}",
                  f"   {_size(story)}", f"   {_seen(story)}"]
        sources = sources_line(story.get("sources"))
        lines.append(f"   Sources: {sources or 'none'}")
        for article in _articles(story):
            lines.append(f"   - {plain_text(article.get('title'), '(untitled)')}")
            details = _article_details(article)
            for extra in (details, plain_text(article.get("url"))):
                if extra:
                    lines.append(f"     {extra}")
        lines.append("")
    lines.append(f"Generated {format_time(digest.get('generated_at'))} by newswatch.")
    return "\n".join(lines).strip() + "\n"


def _html(digest: dict) -> str:
    """The digest as a standalone HTML document, every value escaped."""
    esc = lambda value: html.escape(value, quote=True)  # noqa: E731 (short local alias)
    title = plain_text(digest.get("title"), "Digest")
    parts = [f'<p style="margin:0 0 4px;font-size:22px;line-height:1.3;"><strong>{esc(title)}</strong></p>\n',
             f'<p style="margin:0 0 18px;font-size:13px;{MUTED_STYLE};">{esc(_period(digest))} · '
             f"{esc(_scope(digest))}</p>\n"]
    stories = _stories(digest)
    if not stories:
        parts.append('<p style="margin:0;font-size:14px;">No stories in this period.</p>\n')
    for number, story in enumerate(stories, start=1):
        headline = plain_text(story.get("headline"), "(untitled story)")
        sources = sources_line(story.get("sources"))
        parts.append(
            '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" '
            'style="border-collapse:collapse;border-top:1px solid #d0d7de;margin:0 0 14px;">\n'
            '<tr><td style="padding:12px 10px 0 0;vertical-align:top;font-size:18px;width:28px;'
            f'{MUTED_STYLE};">{number}.</td>\n<td style="padding:12px 0 0;vertical-align:top;">\n'
            f'<p style="margin:0 0 6px;font-size:17px;line-height:1.3;"><strong>{esc(headline)}</strong>'
            "</p>\n"
            f'<p style="margin:0 0 2px;font-size:13px;">{esc(_size(story))}</p>\n'
            f'<p style="margin:0 0 2px;font-size:13px;{MUTED_STYLE};">{esc(_seen(story))}</p>\n'
            f'<p style="margin:0 0 8px;font-size:13px;{MUTED_STYLE};">Sources: {esc(sources or "none")}</p>\n'
        )
        articles = _articles(story)
        if articles:
            parts.append('<ul style="margin:0;padding-left:18px;font-size:14px;line-height:1.45;">\n')
            for article in articles:
                label = esc(plain_text(article.get("title"), "(untitled)"))
                details = _article_details(article)
                parts.append(f'<li style="margin:0 0 6px;">{html_link(label, article.get("url"), LINK_STYLE)}'
                             + (f'<br><span style="font-size:12px;{MUTED_STYLE};">{esc(details)}</span>'
                                if details else "") + "</li>\n")
            parts.append("</ul>\n")
        parts.append("</td></tr>\n</table>\n")
    parts.append(f'<p style="margin:8px 0 0;font-size:12px;{MUTED_STYLE};">Generated '
                 f"{esc(format_time(digest.get('generated_at')))} by newswatch.</p>\n")
    return html_document(title, "".join(parts))


def _json(digest: dict) -> str:
    """The digest itself as pretty-printed JSON."""
    return json.dumps(to_json_value(digest), indent=2, ensure_ascii=False) + "\n"


def render_digest(digest: dict, format: str) -> str:
    """Render a digest.

    Args:
        digest: The digest, shaped as the module docstring describes.
        format: `markdown`, `html` (a standalone document) or `json` (the digest itself,
            pretty-printed, non-ASCII kept as UTF-8 text, datetimes as ISO strings).

    Returns:
        The rendered digest, ending with a newline.

    Raises:
        ValueError: For another format, or a digest that is not an object with a list of stories.
    """
    renderers = {"markdown": _markdown, "html": _html, "json": _json}
    if format not in renderers:
        raise ValueError(f"unknown digest format {format!r}: expected {', '.join(FORMATS)}")
    if not isinstance(digest, dict) or not isinstance(digest.get("stories", []), list):
        raise ValueError("a digest must be an object with a list of stories")
    return renderers[format](digest)


def digest_message(digest: dict) -> AlertMessage:
    """The digest as a message for `monitoring.delivery.deliver`.

    Args:
        digest: The digest, shaped as the module docstring describes.

    Returns:
        An `AlertMessage` titled `<title> (<n> stories)` with the Markdown, HTML and text forms;
        its payload, which JSON webhooks receive under `newswatch`, is the digest with
        `"kind": "digest"` added and datetimes as ISO strings.

    Raises:
        ValueError: For a digest that is not an object with a list of stories.
    """
    if not isinstance(digest, dict) or not isinstance(digest.get("stories", []), list):
        raise ValueError("a digest must be an object with a list of stories")
    stories = count(len(_stories(digest)), "story", "stories")
    title = f"{plain_text(digest.get('title'), 'Digest')} ({stories})"
    payload = {"kind": "digest", **to_json_value(digest)}
    payload["kind"] = "digest"  # the discriminator receivers rely on, whatever the digest held
    return AlertMessage(title=title, markdown=_markdown(digest), html=_html(digest), text=_text(digest),
                        payload=payload)
