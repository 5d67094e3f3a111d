"""monitoring.alerts: an alert's Markdown, HTML and text forms, every feed value shown as text."""

import html
import json
import re

import pytest
from markdown_it import MarkdownIt

from monitoring.alerts import render_alert
from monitoring.markup import WORD_JOINER
from tests.sample_messages import HOSTILE_TITLE, hostile_payload, make_payload, parse_html

MESSAGE = render_alert(make_payload())


def test_alert_title_and_counts():
    assert MESSAGE.title == "newswatch · Storms: Storm hits the coast (5 articles, 3 sources)"
    single = render_alert(make_payload(story={**make_payload()["story"], "article_count": 1,
                                              "source_count": 1}))
    assert single.title.endswith("(1 article, 1 source)")
    developing = render_alert(make_payload(kind="developing",
                                           watch={"id": "w2", "name": "Quakes", "like": "earthquake damage"}))
    assert developing.text.startswith("Developing story for watch Quakes (like: earthquake damage)")
    assert "like: earthquake damage" in developing.markdown
    assert "First seen 2025-03-01 06:00 UTC, last seen 2025-03-01 09:10 UTC" in MESSAGE.text
    assert "rewrite: Storm hits coast · Wire · https://wire.example/x" in MESSAGE.text
    json.dumps(MESSAGE.payload)  # JSON-serialisable as it is
    with pytest.raises(ValueError, match="alert_id"):
        render_alert({"watch": {}, "story": {}})


def test_alert_markdown_lists_articles_with_links():
    rendered = MarkdownIt("commonmark").render(MESSAGE.markdown)
    links = re.findall(r'<a href="([^"]*)">([^<]*)</a>', rendered)
    assert links == [("https://example.com/a7", "Storm hits the coast"),
                     ("https://wire.example/x", "Storm hits coast"),
                     ("https://planet.example/b", "Coast braces for more")]
    assert "<ol>" in rendered and "<strong>Storms</strong>" in rendered


def test_hostile_feed_data_stays_text_in_markdown():
    message = render_alert(hostile_payload())
    rendered = MarkdownIt("commonmark").render(message.markdown)  # raw HTML on: escaping must hold
    parsed = parse_html(rendered)

    assert "<script" not in rendered.lower() and "<img" not in rendered.lower()
    hrefs = [attrs.get("href") for tag, attrs in parsed.tags if tag == "a"]
    assert hrefs == ["https://planet.example/b?q=%281%29&r=%5B2%5D%3Cx%3E"]  # only the http(s) URL
    text = html.unescape("".join(parsed.text)).replace(WORD_JOINER, "")
    assert HOSTILE_TITLE in text  # shown exactly, `code`, **bold** and all
    assert "Evil_Source *x*" in text and "[src](javascript:alert(2))" in text
    assert [tag for tag, _ in parsed.tags if tag in ("code", "em", "img")] == []
    assert sum(tag == "strong" for tag, _ in parsed.tags) == 2  # only the watch name and headline
    assert "@everyone" not in message.markdown  # no mention survives for chat services


def test_hostile_feed_data_stays_text_in_html():
    message = render_alert(hostile_payload())
    parsed = parse_html(message.html)

    assert message.html.startswith("<!DOCTYPE html>")
    assert "<script" not in message.html.lower()
    hrefs = [attrs["href"] for tag, attrs in parsed.tags if tag == "a"]
    assert hrefs == ["https://planet.example/b?q=(1)&r=[2]<x>"]  # only the http(s) URL
    assert {tag for tag, _ in parsed.tags} <= {"html", "head", "meta", "title", "body", "div", "p", "strong",
                                               "ol", "ul", "li", "a", "br", "span"}
    assert not any(name.startswith("on") or name == "src" for _, attrs in parsed.tags for name in attrs)
    text = "".join(parsed.text)
    assert HOSTILE_TITLE in text and "<img src=x onerror=alert(1)>" in text
    assert "<a href='https://evil.example'>dup</a>" in text


def test_hostile_feed_data_in_text_and_title_is_plain():
    payload = hostile_payload()
    payload["story"]["headline"] = "Two\nlines \u202eevil\x00"
    message = render_alert(payload)

    assert message.title == "newswatch · Watch <b>&amp;</b>: Two lines evil (5 articles, 3 sources)"
    assert HOSTILE_TITLE in message.text and "javascript:alert(3)" in message.text
    assert "\\" not in message.text  # no Markdown escapes in the plain form
