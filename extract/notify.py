"""Deliver alerts to notification URLs through Apprise: validate, mask, guard, render, send once.

A watch's notification URLs are Apprise URLs (`json://`, `jsons://`, `mailto://`, `mailtos://`,
`slack://`, `discord://`, `workflows://` for Microsoft Teams, `ntfy://`, `tgram://`, ...; see
https://github.com/caronc/apprise/wiki). `deliver` makes exactly one attempt and says what happened
in a `DeliveryOutcome`; retries, backoff and the delivery log belong to the caller.

Alert payload
-------------
`render_alert` takes the alert payload built by the warehouse; JSON webhooks receive it as is.
Every value is JSON (times are ISO 8601 strings with an offset, UTC)::

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
            "kind": "copy"}]}                    # extract.dedupe: "url", "exact", "copy", "rewrite"
      ]
    }

Titles, names, URLs and queries come from feeds and users: every rendered form shows them as text.
Markdown escapes every ASCII punctuation character and breaks mentions (`@here`), emoji codes and
bare URLs with an invisible word joiner; HTML goes through `html.escape`; only http(s) URLs become
links; the text form has no markup at all.

What each service receives
--------------------------
- JSON webhooks (`json://`, `jsons://`) get Apprise's JSON envelope with the payload added as a
  nested object under `newswatch` (through the plugin's payload extras, the mechanism behind the
  `:key=value` URL arguments), so a receiver reads `body["newswatch"]["alert_id"]`::

      POST /hook HTTP/1.1
      Content-Type: application/json
      User-Agent: newswatch

      {"version": "1.0",
       "title": "newswatch · Storms: Storm hits the coast (5 articles, 3 sources)",
       "message": "New story for watch Storms ...",            # the plain-text form
       "attachments": [],
       "type": "info",
       "newswatch": {"alert_id": "a1b2c3", "kind": "new", "watch": {...}, "story": {...},
                     "articles": [...], "created_at": "..."}}

  The URL's own `:key=value` arguments still rename or drop envelope fields (`:message=text`),
  but `newswatch` always holds the payload. A digest (`extract.digest.digest_message`) arrives the
  same way with `"newswatch": {"kind": "digest", ...the digest...}`.
- E-mail (`mailto://`, `mailtos://`) gets the HTML form as a multipart/alternative message; its
  text/plain part is Apprise's conversion of that HTML (Apprise builds it and it cannot be
  supplied; links keep only their text there). The subject is the title.
- Slack gets the HTML form, which Apprise translates into Slack's own `mrkdwn` dialect (CommonMark
  given directly would reach Slack untranslated, with its backslash escapes showing).
- Other Markdown services (Teams `workflows://`, Discord, ntfy or Telegram with `format=markdown`,
  ...) get the Markdown form. Discord renders Markdown even in its default text mode, so it gets
  Markdown too. Where a service would paste the title unescaped into a Markdown body (no title field
  of its own, or Discord's text mode), the title is put into the body escaped instead.
- Services that take HTML but are not e-mail (Telegram by default) get the text form, which Apprise
  escapes into HTML; text services get the text form.

One attempt, bounded in time
----------------------------
Every attempt gets a fresh plugin from Apprise, adjusted after parsing so the URL cannot undo it:
`retry=0` (Apprise's own retry loop off: retries are the caller's, on later runs), `optional=no`
(an optional service would report a failure as success), redirects off (a redirect would bypass
the SSRF guard and forward credentials), emoji codes off, and the connect and read timeouts
(`cto`/`rto`, used by Apprise's HTTP requests and as the SMTP socket timeout) both set to
`timeout`. The guard's DNS lookup is given `timeout` too. A stalled endpoint therefore costs about
`timeout` seconds; each phase (resolving, connecting, each wait for bytes) is bounded by it, so a
server dripping bytes slowly can take longer. Apprise sends in the calling thread
(`async_mode=False`), so `deliver_all` runs several attempts at once on its own threads.

Logging: Apprise logs through the `apprise` logger (and HTTP through `urllib3`). During an attempt,
a filter on those loggers rewrites every record from the attempt's thread with the URL's secrets
replaced by `****` (exception tracebacks folded into one masked line), at every level, so no
handler ever sees them; the last WARNING-or-worse line becomes `DeliveryOutcome.error`.

SSRF guard
----------
`guard_url` refuses destinations that resolve to loopback, private, link-local, metadata or other
non-public addresses (`extract.fetch.describe_address`; every DNS answer must be public) unless
`allow_private_networks` (`NEWSWATCH_ALLOW_PRIVATE_NETWORKS=1`). The destination is read from the
plugin Apprise builds, not guessed from the URL text:

- e-mail: the SMTP server (`smtp=`, else the URL host; known providers map to their public server);
- Zulip: `<organization>.<hostname>` (a full host name may be given as the organization);
- every plugin whose URL template has a `{host}` token (json, xml, form, ntfy in private mode,
  gotify, Matrix, Mattermost, Rocket.Chat, Home Assistant, Apprise API, MQTT, Nextcloud, Teams
  workflows, ...): the URL host, except the mail APIs whose host token is only the sender's domain
  (Mailgun, SparkPost, SMTP2Go, SendPulse), WeChat (its host is a corporate id), and plugins in a
  mode that posts to the vendor's hosted service (ntfy.sh for `ntfy://topic`, LaMetric cloud,
  Notica and Notifico official, Matrix t2bot) or given no host at all (PushDeer's default server);
- nothing for services that always connect to their own public API (Slack, Discord, Telegram, ...).

For plain-HTTP custom webhooks (json, xml, form) the request is then sent to the checked address
with the original Host header, so a second DNS answer cannot redirect it (DNS rebinding). Other
services resolve again when they connect: over TLS the certificate check stops a rebound
connection; over plain connections (`mailto://` without TLS, `gotify://`, `ntfy://` to a custom
host, ...) a rebinding window remains. Proxies configured in the environment are used by Apprise's
HTTP client; the guard checks the destination, not the proxy.
"""

import html
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote, unquote

import apprise
from apprise import NotifyBase, NotifyFormat, NotifyType

from extract.fetch import describe_address

logger = logging.getLogger(__name__)

APPRISE_WIKI = "https://github.com/caronc/apprise/wiki"

# Apprise's parsing is the same for every attempt; the asset only carries defaults.
_ASSET = apprise.AppriseAsset(
    app_id="newswatch",
    app_desc="newswatch news monitoring",
    app_url="https://github.com/newswatch",
    async_mode=False,  # send in the calling thread: deliver_all owns concurrency, logs stay per thread
    default_service_retry=0,
    http_redirects=False,
    interpret_emojis=False,  # ":fire:" in a feed title stays text; URLs cannot turn this back on
    secure_logging=True,
)

# Query arguments whose values are settings, not secrets; every other value is masked on display.
_PUBLIC_ARGUMENTS = frozenset({
    "auth", "avatar", "batch", "bcc", "blocks", "cc", "content", "cto", "detect", "emojis",
    "fields", "footer", "footer_logo", "format", "from", "image", "mdv", "method", "mode", "name",
    "optional", "overflow", "pa", "port", "preview", "priority", "redirect", "retry", "rto",
    "silent", "smtp", "store", "timestamp", "to", "tts", "tz", "verify", "wait", "wrap",
})
# Mail APIs whose {host} token is the sender's domain, and WeChat's corporate id: not destinations.
_HOST_IS_NOT_DESTINATION = frozenset({"mailgun", "sparkpost", "smtp2go", "sendpulse", "wechat"})
# Plugin modes that post to the vendor's hosted service whatever the URL's host part holds:
# ntfy.sh and LaMetric's cloud ("cloud"), Notica and Notifico ("official"), Matrix's t2bot.io.
_HOSTED_MODES = frozenset({"cloud", "official", "t2bot"})
# Plugins that send plain HTTP to the URL host and let us pin the checked address.
_PINNABLE_PLUGINS = ("NotifyJSON", "NotifyXML", "NotifyForm")
_RETIRED_SCHEMES = {
    "msteams": "msteams:// is no longer supported by Apprise (Microsoft retired Office 365 "
               "connectors); use a Teams Workflows URL (workflows://...) instead",
}
_MASK = "****"
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
_TOKEN_LIKE = re.compile(r"^(?=.*[0-9])(?=.*[A-Za-z]).{8,}$|^.{16,}$")


class NotifyError(ValueError):
    """A notification URL that cannot be used; the message is one sentence for the user."""


class DeliveryRefused(NotifyError):
    """A valid notification URL whose destination is off limits (the SSRF guard)."""


@dataclass(frozen=True)
class AlertMessage:
    """One message in every form a service may want; `payload` is what JSON webhooks get."""

    title: str  # plain text, one line (the e-mail subject)
    markdown: str  # CommonMark, every feed value escaped
    html: str  # a complete HTML document, inline styles only
    text: str  # plain text
    payload: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable


@dataclass(frozen=True)
class DeliveryOutcome:
    """The result of one delivery attempt."""

    ok: bool
    error: str | None = None  # one line, no secrets; None when ok


# ---------------------------------------------------------------------------------------------
# Text helpers shared with extract.digest


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


# ---------------------------------------------------------------------------------------------
# Rendering one alert

_FONT = "font-family:Arial,Helvetica,sans-serif"
MUTED_STYLE = "color:#5f6368"
LINK_STYLE = "color:#1a56db;text-decoration:underline"


def sources_line(sources: object, limit: int = 8) -> str:
    """Source names as plain text, at most `limit` of them and a count of the rest."""
    names = [plain_text(name) for name in sources if plain_text(name)] if isinstance(sources, list) else []
    if len(names) > limit:
        return ", ".join(names[:limit]) + f" and {len(names) - limit} more"
    return ", ".join(names)


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


_DUPLICATE_LABELS = {"url": "same page", "exact": "exact copy", "copy": "copy", "rewrite": "rewrite"}


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


# ---------------------------------------------------------------------------------------------
# Apprise logging: masked while an attempt runs in this thread

_capture_state = threading.local()
_filter_lock = threading.Lock()
_filter_installed = False
_MASKED_LOGGERS = ("apprise", "urllib3.connection", "urllib3.connectionpool", "urllib3.poolmanager",
                   "urllib3.util.retry")


class _Capture:
    """The secrets to hide in this thread's log records, and the last error line seen."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = secrets
        self.errors: list[str] = []  # WARNING and worse, masked, oldest first

    @property
    def last_error(self) -> str | None:
        """The last warning or error line, or None."""
        return self.errors[-1] if self.errors else None


class _MaskingFilter(logging.Filter):
    """Rewrites records logged during a capture in the same thread, secrets replaced by ****."""

    def filter(self, record: logging.LogRecord) -> bool:
        capture: _Capture | None = getattr(_capture_state, "capture", None)
        if capture is None:
            return True
        try:
            text = record.getMessage()
        except Exception:  # bad format arguments must not break the plugin that logged them
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        masked = _hide(text, capture.secrets)
        # Rewrite in place: handlers (and parent loggers' handlers) only ever see the masked text.
        record.msg, record.args = masked, ()
        record.exc_info = record.exc_text = record.stack_info = None
        if record.levelno >= logging.WARNING and plain_text(masked):
            capture.errors.append(plain_text(masked)[:300])
        return True


def _install_filter() -> None:
    """Put one permanent masking filter on Apprise's loggers (adding and removing per call would race)."""
    global _filter_installed
    with _filter_lock:
        if not _filter_installed:
            masking = _MaskingFilter()
            for name in _MASKED_LOGGERS:
                logging.getLogger(name).addFilter(masking)
            _filter_installed = True


@contextmanager
def _captured(secrets: list[str]) -> Iterator[_Capture]:
    """Mask this thread's Apprise log records for the duration of the block."""
    _install_filter()
    capture, outer = _Capture(secrets), getattr(_capture_state, "capture", None)
    _capture_state.capture = capture
    try:
        yield capture
    finally:
        _capture_state.capture = outer


def _hide(text: str, secrets: list[str]) -> str:
    """The text with every secret (and its percent-encoded form) replaced by ****."""
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            if form:
                text = text.replace(form, _MASK)
    return text


# ---------------------------------------------------------------------------------------------
# Parsing, masking, checking


def _scheme(url: str) -> str:
    """The URL's scheme in lower case, or "" when it has none."""
    scheme, separator, _ = url.partition("://")
    scheme = scheme.strip()
    return scheme.lower() if separator and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme) else ""


def _query_arguments(query: str) -> list[tuple[str, str]]:
    """(key, value) pairs of a query string; unlike parse_qsl a "+" stays a "+" (`+Header=value`)."""
    pairs = []
    for argument in query.split("&"):
        if argument:
            key, _, value = argument.partition("=")
            pairs.append((unquote(key), unquote(value)))
    return pairs


_URL_PARTS = re.compile(r"^[^:/?#]*://(?P<authority>[^/?#]*)(?P<path>[^?#]*)(?:\?(?P<query>[^#]*))?")


def _url_secrets(url: str) -> list[str]:
    """Parts of a URL's text that may be secret: password, token-like user and path parts, query values."""
    parts = _URL_PARTS.match(url)
    if parts is None:
        return [url]
    candidates: list[str] = []
    userinfo, at, _ = parts["authority"].rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if colon:
            candidates.append(password)
        if not colon or _TOKEN_LIKE.match(unquote(user)):
            candidates.append(user)  # a user without a password is often a token (ntfy://tk_...@host)
    segments = re.split(r"[/,]", parts["path"])
    candidates += [segment for segment in segments if _TOKEN_LIKE.match(unquote(segment))]
    for key, value in _query_arguments(parts["query"] or ""):
        if value and (key[:1] in "+-:" or key.lower() not in _PUBLIC_ARGUMENTS):
            candidates.append(value)
    return candidates


def _plugin_secrets(plugin: NotifyBase) -> list[str]:
    """Values of the plugin's tokens that Apprise itself marks private (tokens, keys, passwords)."""
    values: list[str] = []
    for name, spec in type(plugin).template_tokens.items():
        if not spec.get("private"):
            continue
        value = getattr(plugin, spec.get("map_to", name), None)
        for item in value if isinstance(value, (list, tuple, set)) else [value]:
            if isinstance(item, str) and item:
                values.append(item)
    values += [value for value in (getattr(plugin, "password", None),) if isinstance(value, str) and value]
    for mapping in ("headers", "params", "payload_extras"):  # +Header=, -param=, :key= arguments
        values += [str(value) for value in (getattr(plugin, mapping, None) or {}).values() if value]
    if not _destinations(plugin) and isinstance(plugin.host, str) and plugin.host:
        values.append(plugin.host)  # a fixed-host service's "host" is a token (slack://T0001/...)
    return values


def _secrets(url: str, plugin: NotifyBase | None) -> list[str]:
    """Every secret of a URL, longest first so a secret inside another is not half-replaced."""
    found = _url_secrets(url) + (_plugin_secrets(plugin) if plugin is not None else [])
    decoded = [unquote(value) for value in found]
    # Very short values (a one-letter path, "1") would mask unrelated text and protect nothing.
    return sorted({value for value in found + decoded if len(value) >= 3}, key=len, reverse=True)


def _instantiate(url: str) -> NotifyBase | None:
    """Apprise's plugin for the URL, or None; its log lines are masked."""
    with _captured(_url_secrets(url)):
        return apprise.Apprise.instantiate(url, asset=_ASSET)


def _load(url: str) -> NotifyBase:
    """The plugin for a URL, or NotifyError saying in one sentence why there is none."""
    text = url.strip() if isinstance(url, str) else ""
    if not text:
        raise NotifyError("the notification URL is empty")
    scheme = _scheme(text)
    with _captured(_url_secrets(text)) as capture:
        plugin = apprise.Apprise.instantiate(text, asset=_ASSET)
    if plugin is not None:
        return plugin
    if not scheme:
        raise NotifyError(f"not a notification URL (expected scheme://..., see {APPRISE_WIKI}): "
                          f"{mask_url(text)}")
    if scheme in _RETIRED_SCHEMES:
        raise NotifyError(_RETIRED_SCHEMES[scheme])
    manager = apprise.NotificationManager()
    if scheme in ("http", "https"):
        raise NotifyError(f"no notification service recognises this {scheme}:// URL; for a generic "
                          f"webhook use json:// or jsons:// ({mask_url(text)})")
    if scheme not in manager.schemas(include_disabled=True):
        raise NotifyError(f"unknown notification scheme '{scheme}' (see {APPRISE_WIKI})")
    if scheme not in manager.schemas(include_disabled=False):
        raise NotifyError(f"{scheme}:// notifications are not available on this system")
    # Apprise's reason helps ("Invalid ~From~ email specified"), unless it repeats the URL.
    reasons = [line for line in capture.errors if "://" not in line]
    reason = f" ({reasons[-1].rstrip('.')})" if reasons else ""
    raise NotifyError(f"invalid {scheme}:// URL{reason}: {mask_url(text)}")


def check_url(url: str) -> str:
    """Validate a notification URL without sending anything.

    Args:
        url: An Apprise URL, e.g. `jsons://hooks.example.com/alerts` or `mailtos://...`.

    Returns:
        The URL as given, stripped of surrounding whitespace.

    Raises:
        NotifyError: For an empty or malformed URL or a scheme Apprise does not know; the message
            shows the URL masked.
    """
    _load(url)
    return url.strip()


def mask_url(url: str) -> str:
    """A notification URL for display, with every secret hidden.

    Args:
        url: Any string that is meant to be a notification URL.

    Returns:
        Apprise's privacy form of the URL (`url(privacy=True)`) with the query arguments as given,
        every value that is not a plain setting (`format`, `to`, `priority`, ...) shown as `****`,
        and every password, private token (as Apprise's plugin declares them), `+header`,
        `-param` and `:payload` value, and token-like path segment (8+ characters mixing letters
        and digits, or 16+ characters) replaced by `****` wherever it shows. A URL Apprise cannot
        parse shows only its scheme: `foo://****`, or `****` without one.
    """
    text = url.strip() if isinstance(url, str) else ""
    scheme = _scheme(text)
    fallback = f"{scheme}://{_MASK}" if scheme else _MASK
    plugin = _instantiate(text) if scheme else None
    if plugin is None:
        return fallback
    display = plugin.url(privacy=True)
    base = display.split("?", 1)[0]
    query = text.split("?", 1)[1].split("#", 1)[0] if "?" in text else ""
    arguments = []
    for key, value in _query_arguments(query):
        public = key[:1] not in "+-:" and key.lower() in _PUBLIC_ARGUMENTS
        shown = quote(value, safe="@,") if public or not value else _MASK
        arguments.append(f"{quote(key, safe='+-:')}={shown}")
    masked = base + ("?" + "&".join(arguments) if arguments else "")
    masked = _hide(masked, _secrets(text, plugin))
    return masked if _scheme(masked) else fallback


def _destinations(plugin: NotifyBase) -> list[tuple[str, int | None]]:
    """The (host, port) pairs the plugin connects to that come from the URL, not from Apprise."""
    name = type(plugin).__name__
    if name == "NotifyEmail":
        return [(plugin.smtp_host or plugin.host or "", plugin.port)]
    if name == "NotifyZulip":
        return [(f"{plugin.organization}.{plugin.hostname}", None)]
    if plugin.secure_protocol in _HOST_IS_NOT_DESTINATION or plugin.protocol in _HOST_IS_NOT_DESTINATION:
        return []
    if str(getattr(plugin, "mode", "")) in _HOSTED_MODES:
        return []
    if "host" in type(plugin).template_tokens and plugin.host:
        return [(plugin.host, plugin.port)]
    return []  # no {host} token, or an empty one: the service's own public API host


def _resolve(host: str, port: int | None) -> list[str]:
    """Every address `host` resolves to (a seam for tests, which must not use real DNS)."""
    return [info[4][0] for info in socket.getaddrinfo(host, port or 0, type=socket.SOCK_STREAM)]


def _resolve_within(host: str, port: int | None, timeout: float) -> list[str]:
    """`_resolve` with a time limit: the system resolver has none of its own that we control."""
    outcome: dict[str, Any] = {}

    def lookup() -> None:
        try:
            outcome["addresses"] = _resolve(host, port)
        except Exception as exc:  # handed to the caller below
            outcome["error"] = exc

    # A daemon thread, so a resolver that never answers cannot keep the process alive.
    worker = threading.Thread(target=lookup, name="newswatch-resolve", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise DeliveryRefused(f"refused: cannot resolve {host} (no answer within {timeout:g} s)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["addresses"]


def _check_destinations(plugin: NotifyBase, allow_private_networks: bool, timeout: float) -> dict[str, str]:
    """Refuse non-public destinations; returns {host: checked address} for the hosts resolved."""
    checked: dict[str, str] = {}
    for host, port in _destinations(plugin):
        host = host.strip().strip("[]")
        if not host:
            raise NotifyError("the notification URL has no host")  # e.g. mailto:// without a server
        if allow_private_networks:
            continue
        try:
            addresses = _resolve_within(host, port, timeout)
        except (OSError, UnicodeError) as exc:
            raise DeliveryRefused(f"refused: cannot resolve {host} ({exc.strerror or exc})") from None
        # Refuse if ANY answer is private: the connecting code could pick any of them.
        reasons = [reason for reason in map(describe_address, addresses) if reason]
        if reasons or not addresses:
            raise DeliveryRefused(f"refused: {reasons[0] if reasons else host + ' has no address'} "
                                  "(set NEWSWATCH_ALLOW_PRIVATE_NETWORKS=1 to allow private networks)")
        checked[host] = addresses[0]
    return checked


def guard_url(url: str, *, allow_private_networks: bool, timeout: float = 10.0) -> None:
    """Refuse a notification URL whose network destination is not public (the SSRF guard).

    Args:
        url: An Apprise URL.
        allow_private_networks: Allow loopback, private, link-local and metadata destinations
            (`NEWSWATCH_ALLOW_PRIVATE_NETWORKS=1`, for tests and intranets); nothing is resolved then.
        timeout: Seconds to wait for the DNS answers.

    Raises:
        NotifyError: For a URL that `check_url` rejects.
        DeliveryRefused: When any address the destination host resolves to is not public, or the
            host does not resolve. Services with a fixed public API host (Slack, Discord,
            Telegram, ...) always pass; the module docstring lists what is checked.
    """
    _check_destinations(_load(url), allow_private_networks, timeout)


# ---------------------------------------------------------------------------------------------
# Delivery


def _compose(plugin: NotifyBase, message: AlertMessage) -> tuple[str, str, NotifyFormat]:
    """The (title, body, body format) to hand Apprise for this service (see the module docstring)."""
    name, service_format = type(plugin).__name__, plugin.notify_format
    if name == "NotifyEmail":
        return message.title, message.html, NotifyFormat.HTML
    if name == "NotifySlack" and service_format == NotifyFormat.MARKDOWN:
        return message.title, message.html, NotifyFormat.HTML  # Apprise translates HTML to mrkdwn
    if service_format == NotifyFormat.MARKDOWN or name == "NotifyDiscord":
        # Apprise would prepend the title unescaped where the service has no title field, and
        # Discord's text mode pastes it into the rendered content: put it in escaped instead.
        if plugin.title_maxlen <= 0 or service_format != NotifyFormat.MARKDOWN:
            return "", f"**{escape_markdown(message.title)}**\n\n{message.markdown}", NotifyFormat.MARKDOWN
        return message.title, message.markdown, NotifyFormat.MARKDOWN
    # HTML services other than e-mail (Telegram accepts only a few tags) and text services: the
    # text form, which Apprise escapes itself when the service wants HTML.
    return message.title, message.text, NotifyFormat.TEXT


def _prepare(plugin: NotifyBase, message: AlertMessage, checked: dict[str, str], timeout: float) -> None:
    """Fix the attempt's settings on the plugin, whatever its URL said."""
    plugin.retry = 0
    plugin.optional = False
    plugin.redirects = False
    plugin.socket_connect_timeout = plugin.socket_read_timeout = float(timeout)
    plugin.interpret_emojis = False
    name = type(plugin).__name__
    if name == "NotifyJSON":
        plugin.payload_extras["newswatch"] = message.payload
    host = (plugin.host or "").strip("[]")
    if name in _PINNABLE_PLUGINS and not plugin.secure and host in checked:
        # Connect to the address we checked, not to whatever a second lookup returns.
        address = checked[host]
        headers = {key.lower(): key for key in plugin.headers}
        if "host" not in headers:
            plugin.headers["Host"] = host if plugin.port is None else f"{host}:{plugin.port}"
        plugin.host = f"[{address}]" if ":" in address else address


def deliver(url: str, message: AlertMessage, *, allow_private_networks: bool = False,
            timeout: float = 10.0) -> DeliveryOutcome:
    """Send one message to one notification URL, once.

    Args:
        url: An Apprise URL.
        message: The message, usually from `render_alert` or `extract.digest.digest_message`.
        allow_private_networks: Let the SSRF guard pass loopback and private destinations.
        timeout: Seconds allowed for resolving the host (where the guard does), for connecting and
            for each wait for the server's answer.

    Returns:
        `DeliveryOutcome(ok=True)` when the service accepted the message; otherwise ok=False and
        a one-line `error` without secrets (an invalid URL, a refused destination, or the last
        warning Apprise logged, e.g. an HTTP status or a connection error). Never raises for
        delivery failures.
    """
    text = url.strip() if isinstance(url, str) else ""
    try:
        plugin = _load(text)
        checked = _check_destinations(plugin, allow_private_networks, timeout)
    except NotifyError as exc:
        return DeliveryOutcome(False, str(exc))
    secrets = _secrets(text, plugin)
    with _captured(secrets) as capture:
        _prepare(plugin, message, checked, timeout)
        title, body, body_format = _compose(plugin, message)
        notifier = apprise.Apprise(asset=_ASSET)
        notifier.add(plugin)
        started = time.monotonic()
        try:
            delivered = notifier.notify(body=body, title=title, body_format=body_format,
                                        notify_type=NotifyType.INFO)
        except Exception as exc:  # a plugin bug must not stop the other deliveries of a run
            logger.warning("delivery to %s raised %s", mask_url(text), type(exc).__name__)
            return DeliveryOutcome(False, f"{plugin.service_name}: unexpected {type(exc).__name__}")
    if delivered:
        return DeliveryOutcome(True, None)
    error = _hide(capture.last_error or f"{plugin.service_name} notification failed", secrets)
    elapsed = time.monotonic() - started
    if elapsed >= 0.9 * timeout:
        # Apprise logs the cause of a connection error (e.g. a read timeout) only at DEBUG level.
        error = f"{error.rstrip('.')} (gave up after {elapsed:.1f} s; timeout {timeout:g} s)"
    logger.info("delivery to %s failed: %s", mask_url(text), error)
    return DeliveryOutcome(False, error)


def deliver_all(deliveries: list[tuple[str, AlertMessage]], *, allow_private_networks: bool = False,
                timeout: float = 10.0, concurrency: int = 4) -> list[DeliveryOutcome]:
    """Deliver several messages at once, each with one attempt.

    Args:
        deliveries: (URL, message) pairs.
        allow_private_networks: As for `deliver`.
        timeout: As for `deliver`, per attempt.
        concurrency: Attempts running at the same time (threads); a slow endpoint holds up only
            its own thread.

    Returns:
        One `DeliveryOutcome` per pair, in input order.
    """
    if not deliveries:
        return []
    # Load Apprise's plugin table once, before threads would race to do it.
    apprise.NotificationManager().schemas()
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(deliveries))),
                            thread_name_prefix="newswatch-notify") as pool:
        futures = [pool.submit(deliver, url, message, allow_private_networks=allow_private_networks,
                               timeout=timeout) for url, message in deliveries]
        return [future.result() for future in futures]
