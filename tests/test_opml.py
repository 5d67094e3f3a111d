"""Reading and writing OPML subscription lists in extract.opml."""

import time

import pytest

from extract.opml import OpmlError, OpmlFeed, read_opml, write_opml

NESTED = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="1.0">
  <head><title>My subscriptions</title></head>
  <body>
    <outline text="Top level" title="Top level" type="rss" xmlUrl="https://top.example.org/rss"/>
    <outline text="News">
      <outline text="World" xmlUrl="https://world.example.org/feed.xml"/>
      <outline text="Deeper">
        <outline title="Deep title" text="Deep text" xmlurl="http://deep.example.org/atom"/>
        <outline text="Duplicate of world" xmlUrl="https://world.example.org/feed.xml"/>
      </outline>
    </outline>
    <outline text="Gopher" xmlUrl="gopher://old.example.org/feed"/>
    <outline text="Local file" xmlUrl="file:///etc/passwd"/>
    <outline text="Relative" xmlUrl="/feed.xml"/>
    <outline text="Folder without a feed" htmlUrl="https://site.example.org/"/>
    <outline xmlUrl="  https://untitled.example.org/feed  "/>
  </body>
</opml>
"""


def test_round_trip():
    feeds = [
        OpmlFeed("https://a.example.org/feed?x=1&y=2", 'Quotes "and" <angle> & ampersands'),
        OpmlFeed("https://b.example.org/rss", "Ünïcödé — 日本語"),
        OpmlFeed("http://c.example.org/atom", None),
    ]
    text = write_opml(feeds)

    assert text.startswith("<?xml version='1.0' encoding='UTF-8'?>")
    assert '<opml version="2.0">' in text and "<title>newswatch feeds</title>" in text
    assert "&amp;" in text and "&lt;angle&gt;" in text
    assert read_opml(text) == feeds
    assert read_opml(text.encode("utf-8")) == feeds


def test_round_trip_of_nothing_and_a_custom_title():
    text = write_opml([], title="Empty & <odd>")

    assert read_opml(text) == []
    assert "<title>Empty &amp; &lt;odd&gt;</title>" in text


def test_characters_xml_cannot_hold_are_dropped():
    text = write_opml([OpmlFeed("https://a.example.org/", "bell\x07 and form feed\x0c")])

    assert read_opml(text) == [OpmlFeed("https://a.example.org/", "bell and form feed")]


def test_nested_outlines_http_only_and_deduplicated():
    assert read_opml(NESTED) == [
        OpmlFeed("https://top.example.org/rss", "Top level"),
        OpmlFeed("https://world.example.org/feed.xml", "World"),
        OpmlFeed("http://deep.example.org/atom", "Deep title"),
        OpmlFeed("https://untitled.example.org/feed", None),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not well-formed"),
        (b"<opml><body><outline xmlUrl='https://a.example.org/'></body>", "not well-formed"),
        (b"this is not xml", "not well-formed"),
        (b'<?xml version="1.0"?><rss version="2.0"><channel/></rss>', "root element is <rss>"),
    ],
)
def test_bad_input(data, message):
    with pytest.raises(OpmlError, match=message):
        read_opml(data)


@pytest.mark.parametrize(
    "declaration",
    [
        '<!ENTITY xxe SYSTEM "file:///etc/passwd">',
        '<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">',
        '<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;',
    ],
    ids=["external", "laughs", "parameter"],
)
def test_entity_declarations_are_refused(declaration):
    data = (
        f"<?xml version='1.0'?><!DOCTYPE opml [{declaration}]>"
        "<opml version='2.0'><body><outline text='&xxe;' xmlUrl='https://a.example.org/'/></body></opml>"
    ).encode()
    started = time.perf_counter()

    with pytest.raises(OpmlError, match=r"^OPML declares XML entities; refused$") as error:
        read_opml(data)
    assert "root:" not in str(error.value)
    assert time.perf_counter() - started < 0.1


def test_plain_doctype_without_entities_is_fine():
    data = (
        b'<!DOCTYPE opml SYSTEM "http://127.0.0.1:9/opml.dtd">'
        b'<opml><body><outline xmlUrl="https://a.example.org/"/></body></opml>'
    )

    assert read_opml(data) == [OpmlFeed("https://a.example.org/", None)]
