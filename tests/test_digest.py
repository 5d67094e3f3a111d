"""monitoring.digest: a digest built from what was read, rendered as Markdown, HTML and JSON, delivered like an alert."""

import html
import json
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from markdown_it import MarkdownIt

from monitoring.alerts import alert_payload
from monitoring.delivery import deliver
from monitoring.digest import ARTICLES_PER_STORY, compose_digest, digest_message, digest_story, render_digest
from monitoring.markup import WORD_JOINER
from tests.receivers import make_webhook_fixture
from tests.sample_messages import parse_html

webhook = make_webhook_fixture()

HOSTILE = "Flood <script>alert(1)</script> [x](javascript:alert(1)) **bold** `code` & <b>"


def make_digest() -> dict:
    """A digest shaped as monitoring.digest documents it, with hostile feed values and datetimes."""
    return {
        "title": "Daily digest",
        "since": datetime(2025, 3, 1, tzinfo=UTC),
        "until": "2025-03-02T00:00:00+00:00",
        "watch": "Storms & floods",
        "generated_at": datetime(2025, 3, 2, 0, 5),  # naive: UTC
        "stories": [
            {"story_id": "s9", "headline": "Storm hits the coast", "article_count": 12, "recent_count": 5,
             "duplicate_count": 3, "source_count": 4, "sources": ["Example News", "Wire"],
             "first_seen_at": "2025-02-28T18:00:00+00:00", "last_seen_at": "2025-03-01T21:40:00+00:00",
             "articles": [
                 {"title": "Storm hits the coast", "url": "https://example.com/a7", "source": "Example News",
                  "seen_at": "2025-03-01T06:00:00+00:00", "duplicate_of": None},
                 {"title": "Storm hits coast", "url": "https://wire.example/x", "source": "Wire",
                  "seen_at": "2025-03-01T07:00:00+00:00", "duplicate_of": "a7"},
             ]},
            {"story_id": "s10", "headline": HOSTILE, "article_count": 1, "recent_count": 1,
             "duplicate_count": 0, "source_count": 1, "sources": ["<img src=x onerror=alert(2)>"],
             "first_seen_at": "2025-03-01T10:00:00+00:00", "last_seen_at": "2025-03-01T10:00:00+00:00",
             "articles": [
                 {"title": "Café " + HOSTILE, "url": "javascript:alert(3)", "source": "Evil_Source *x*",
                  "seen_at": None, "duplicate_of": None},
             ]},
        ],
    }


def test_markdown_has_a_heading_the_period_and_one_numbered_section_per_story():
    rendered = MarkdownIt("commonmark").render(render_digest(make_digest(), "markdown"))
    text = html.unescape(rendered).replace(WORD_JOINER, "")

    assert re.findall(r"<h1>(.*?)</h1>", text) == ["Daily digest"]
    assert re.findall(r"<h2>(.*?)</h2>", text) == ["1. Storm hits the coast", "2. " + HOSTILE]
    assert "2025-03-01 00:00 UTC – 2025-03-02 00:00 UTC · watch Storms & floods · 2 stories" in text
    assert "12 articles, 5 new articles in this period, 3 duplicates, 4 sources" in text
    assert "first seen 2025-02-28 18:00 UTC · last seen 2025-03-01 21:40 UTC" in text
    assert "Sources: Example News, Wire" in text
    assert re.findall(r'<a href="([^"]*)">', rendered) == ["https://example.com/a7", "https://wire.example/x"]
    assert "Wire · seen 2025-03-01 07:00 UTC · copy of an earlier article" in text
    assert "Generated 2025-03-02 00:05 UTC by newswatch." in text


def test_markdown_shows_feed_values_as_text():
    rendered = MarkdownIt("commonmark").render(render_digest(make_digest(), "markdown"))  # raw HTML allowed
    parsed = parse_html(rendered)

    assert "<script" not in rendered and "<img" not in rendered
    assert [tag for tag, _ in parsed.tags if tag in ("code", "strong", "em", "img", "b")] == []
    text = html.unescape("".join(parsed.text)).replace(WORD_JOINER, "")
    assert HOSTILE in text and "Café " + HOSTILE in text
    assert "<img src=x onerror=alert(2)>" in text and "Evil_Source *x*" in text


def test_html_is_a_standalone_document_with_every_value_escaped():
    document = render_digest(make_digest(), "html")
    parsed = parse_html(document)

    assert document.startswith("<!DOCTYPE html>") and document.rstrip().endswith("</html>")
    assert "<script" not in document.lower()
    assert '<meta charset="utf-8">' in document
    tags = {tag for tag, _ in parsed.tags}
    assert tags <= {"html", "head", "meta", "title", "body", "div", "p", "strong", "table", "tr", "td",
                    "ul", "li", "a", "br", "span"}, tags
    # No external resources, no event handlers, styles only inline.
    assert "style" not in tags and "link" not in tags and "img" not in tags
    for _, attrs in parsed.tags:
        assert not any(name.startswith("on") or name in ("src", "srcset", "background") for name in attrs)
        assert "url(" not in (attrs.get("style") or "") and "@import" not in (attrs.get("style") or "")
    assert [attrs["href"] for tag, attrs in parsed.tags if tag == "a"] == [
        "https://example.com/a7", "https://wire.example/x"]
    text = "".join(parsed.text)
    assert HOSTILE in text and "<img src=x onerror=alert(2)>" in text and "Storms & floods" in text
    assert "&lt;script&gt;" in document and "&amp; &lt;b&gt;" in document
    assert "<title>Daily digest</title>" in document


def test_json_is_the_digest_itself_with_iso_times():
    digest = make_digest()
    rendered = render_digest(digest, "json")

    decoded = json.loads(rendered)
    assert decoded["since"] == "2025-03-01T00:00:00+00:00"
    assert decoded["generated_at"] == "2025-03-02T00:05:00+00:00"
    expected = {**digest, "since": "2025-03-01T00:00:00+00:00", "generated_at": "2025-03-02T00:05:00+00:00"}
    assert decoded == expected
    assert "Café" in rendered  # UTF-8 text, not \u escapes
    assert rendered.startswith("{\n  \"title\"")  # pretty-printed


def test_empty_digest_says_so_in_every_format():
    digest = {**make_digest(), "stories": []}

    assert "No stories in this period." in render_digest(digest, "markdown")
    assert "No stories in this period." in render_digest(digest, "html")
    assert json.loads(render_digest(digest, "json"))["stories"] == []
    assert digest_message(digest).title == "Daily digest (0 stories)"


def test_unknown_format_and_bad_digest_are_clear_errors():
    with pytest.raises(ValueError, match="unknown digest format 'pdf': expected markdown, html, json"):
        render_digest(make_digest(), "pdf")
    with pytest.raises(ValueError, match="list of stories"):
        render_digest({"stories": "none"}, "markdown")


def test_digest_message_is_delivered_like_an_alert(webhook):
    message = digest_message(make_digest())

    assert message.title == "Daily digest (2 stories)"
    assert message.markdown == render_digest(make_digest(), "markdown")
    assert message.html == render_digest(make_digest(), "html")
    assert "Storm hits the coast" in message.text and "\\" not in message.text
    outcome = deliver(webhook.json_url("/digest"), message, allow_private_networks=True)

    assert outcome.ok, outcome
    [request] = webhook.wait_for(1)
    body = request.json()["newswatch"]
    assert body["kind"] == "digest"
    assert [story["story_id"] for story in body["stories"]] == ["s9", "s10"]
    assert body["generated_at"] == "2025-03-02T00:05:00+00:00"


# --- building a digest from what was read -----------------------------------------------------

SINCE = datetime(2025, 3, 1, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=1)


def read_story(story_id: str, article_count: int, recent_count: int, sources=("Wire",)) -> dict:
    """A story as `list_stories(..., details=True)` reads it."""
    return {"story_id": story_id, "headline": f"Headline {story_id}", "article_count": article_count,
            "recent_count": recent_count, "duplicate_count": 1, "sources": list(sources), "original_count": 1,
            "first_seen_at": SINCE - timedelta(hours=5), "last_seen_at": SINCE + timedelta(hours=3)}


def member(story_id: str, number: int, hours: float, duplicate_of: str | None = None) -> dict:
    """An article as `story_articles(..., details=True)` reads it."""
    return {"article_id": f"{story_id}-{number}", "story_id": story_id, "title": f"Title {story_id} {number}",
            "url": f"https://example.com/{story_id}/{number}", "source_name": "Wire", "seen_at": SINCE + timedelta(hours=hours),
            "published_at": SINCE + timedelta(hours=hours), "duplicate_of": duplicate_of,
            "duplicate_kind": "copy" if duplicate_of else None}


def test_compose_digest_ranks_by_growth_then_size_and_lists_the_latest_originals_of_the_period():
    stories = [read_story("big", 40, 2), read_story("fast", 5, 4), read_story("tie", 9, 2)]
    members = [member("fast", number, hours) for number, hours in enumerate((-2, 1, 2, 3, 4, 5, 6, 30))]
    members.append(member("fast", 99, 7, duplicate_of="fast-1"))  # a copy: never listed
    digest = compose_digest(stories, members, SINCE, UNTIL, watch="Storms")

    assert [story["story_id"] for story in digest["stories"]] == ["fast", "big", "tie"]
    assert (digest["title"], digest["since"], digest["until"], digest["watch"]) == (
        "newswatch digest: Storms", SINCE, UNTIL, "Storms")
    fast = digest["stories"][0]
    # Newest first, inside [since, until), originals only, at most ARTICLES_PER_STORY.
    assert [article["title"] for article in fast["articles"]] == [f"Title fast {n}" for n in (6, 5, 4, 3, 2)]
    assert len(fast["articles"]) == ARTICLES_PER_STORY
    assert fast["articles"][0] == {"title": "Title fast 6", "url": "https://example.com/fast/6", "source": "Wire",
                                   "seen_at": SINCE + timedelta(hours=6), "duplicate_of": None}
    assert digest["stories"][1]["articles"] == []
    assert compose_digest([], [], SINCE, UNTIL, title="Mine")["title"] == "Mine"
    assert compose_digest([], [], SINCE, UNTIL)["title"] == "newswatch digest"


def test_alerts_and_digests_summarise_a_story_alike():
    story = read_story("s1", 7, 3, sources=("Daily Planet", "Wire"))
    watch = SimpleNamespace(watch_id=4, name="Storms", query="storm", like_text=None)
    alerted = alert_payload("al-1", "new", UNTIL, watch, story, [member("s1", 1, 2)])["story"]
    listed = digest_story(story, [member("s1", 1, 2)], SINCE, UNTIL)

    assert list(alerted) == ["story_id", "headline", "article_count", "duplicate_count", "source_count", "sources",
                             "first_seen_at", "last_seen_at"]
    assert list(listed) == ["story_id", "headline", "article_count", "recent_count", "duplicate_count", "source_count",
                            "sources", "first_seen_at", "last_seen_at", "articles"]
    for key in ("story_id", "headline", "article_count", "duplicate_count", "source_count", "sources"):
        assert alerted[key] == listed[key], key
    assert (alerted["source_count"], listed["recent_count"]) == (2, 3)
    # The alert's payload is JSON (ISO times); the digest keeps datetimes until it is rendered.
    assert alerted["first_seen_at"] == listed["first_seen_at"].isoformat() == "2025-02-28T19:00:00+00:00"

