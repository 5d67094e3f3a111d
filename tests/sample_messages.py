"""Alert payloads shaped as `monitoring.alerts` documents them, and an HTML reader for rendered messages."""

from html.parser import HTMLParser

HOSTILE_TITLE = "Storm <script>alert(1)</script> [x](javascript:alert(1)) **bold** `code` @everyone"


def make_payload(**changes) -> dict:
    """An alert payload shaped as monitoring.alerts documents it."""
    payload = {
        "alert_id": "al-1",
        "kind": "new",
        "created_at": "2025-03-01T09:30:00+00:00",
        "watch": {"id": "w1", "name": "Storms", "query": "storm OR hurricane"},
        "story": {
            "story_id": "s9", "headline": "Storm hits the coast", "article_count": 5,
            "duplicate_count": 2, "source_count": 3, "sources": ["Example News", "Daily Planet", "Wire"],
            "first_seen_at": "2025-03-01T06:00:00+00:00", "last_seen_at": "2025-03-01T09:10:00+00:00",
        },
        "articles": [
            {"article_id": "a7", "title": "Storm hits the coast", "url": "https://example.com/a7",
             "source": "Example News", "published_at": "2025-03-01T06:00:00+00:00",
             "duplicate_of": None, "duplicate_kind": None,
             "duplicates": [{"title": "Storm hits coast", "url": "https://wire.example/x", "source": "Wire",
                             "kind": "rewrite"}]},
            {"article_id": "a8", "title": "Coast braces for more", "url": "https://planet.example/b",
             "source": "Daily Planet", "published_at": None, "duplicate_of": None, "duplicate_kind": None,
             "duplicates": []},
        ],
    }
    payload.update(changes)
    return payload


def hostile_payload() -> dict:
    """A payload whose every feed value tries to be markup."""
    payload = make_payload()
    payload["watch"]["name"] = "Watch <b>&amp;</b>"
    payload["story"]["headline"] = HOSTILE_TITLE
    payload["story"]["sources"] = ["<img src=x onerror=alert(1)>", "[src](javascript:alert(2))"]
    payload["articles"][0]["title"] = HOSTILE_TITLE
    payload["articles"][0]["url"] = "javascript:alert(3)"
    payload["articles"][0]["source"] = "Evil_Source *x*"
    payload["articles"][0]["duplicates"][0]["title"] = "<a href='https://evil.example'>dup</a>"
    payload["articles"][0]["duplicates"][0]["url"] = "data:text/html,<script>alert(4)</script>"
    payload["articles"][1]["title"] = "Link with ) and ] inside"
    payload["articles"][1]["url"] = "https://planet.example/b?q=(1)&r=[2]<x>"
    return payload


class HtmlParts(HTMLParser):
    """Start tags with attributes, and the text content (comments and declarations noted apart)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.comments: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def handle_comment(self, data):
        self.comments.append(data)


def parse_html(markup: str) -> HtmlParts:
    """The start tags, text and comments of an HTML text."""
    parser = HtmlParts()
    parser.feed(markup)
    parser.close()
    return parser
