"""The seed articles, and a local news site serving them: three pages behind one RSS feed.

Shared by the test modules (through the `seed_site` fixture in conftest.py, or `serve_seed_site`
on a server of their own). Nothing here touches the network: the site is a `LocalServer` on 127.0.0.1.
"""

import html
from pathlib import Path

from tests.http_server import LocalServer, respond, static

SEEDS = Path(__file__).parent / "fixtures" / "seeds"
ORIGINAL, REWRITE, OTHER = sorted(path.name for path in SEEDS.glob("*.txt"))

HEADLINES = {
    ORIGINAL: "Hamas invites Elon Musk to Gaza to see the destruction",
    REWRITE: "Hamas extends invitation to Elon Musk to visit Gaza",
    OTHER: "Musk declines Hamas invitation to visit Gaza",
}


def page(name: str) -> bytes:
    """The seed article `name` as a news page, with navigation and a footer around it."""
    body = (SEEDS / name).read_text(encoding="utf-8").split(" ", 3)[-1]
    paragraphs = "".join(f"<p>{html.escape(p.strip())}</p>" for p in body.split("\n") if p.strip())
    return (
        f"<!doctype html><html lang='en'><head><title>{HEADLINES[name]}</title></head><body>"
        f"<nav><a href='/'>Home</a></nav><article>{paragraphs}</article>"
        "<footer>Copyright 2023 Example</footer></body></html>"
    ).encode()


def rss(base: str) -> bytes:
    """An RSS feed of the three seed pages on `base` and one entry whose page is gone (404)."""
    items = "".join(
        f"<item><title>Seed {i}</title><link>{base}/a/{name}?utm_source=rss&amp;id={i}</link>"
        f"<pubDate>Wed, 29 Nov 2023 1{i}:00:00 GMT</pubDate><description>Summary of seed {i}</description></item>"
        for i, name in enumerate((ORIGINAL, REWRITE, OTHER))
    )
    missing = (
        f"<item><title>Gone page</title><link>{base}/a/gone</link>"
        "<pubDate>Wed, 29 Nov 2023 15:00:00 GMT</pubDate>"
        "<description>Hamas invited Elon Musk to Gaza; the page has since been removed.</description></item>"
    )
    return f"<?xml version='1.0'?><rss version='2.0'><channel><title>Local</title>{items}{missing}</channel></rss>".encode()


def serve_seed_site(server: LocalServer) -> None:
    """Route the seed site on `server`: /feed.xml (ETag "v1", 304 when matched), /broken.xml (500), /a/<seed>."""
    feed = rss(server.base_url)

    def feed_handler(request):
        if request.headers.get("If-None-Match") == '"v1"':
            respond(request, 304, b"", None, {"ETag": '"v1"'})
        else:
            respond(request, 200, feed, "application/rss+xml", {"ETag": '"v1"'})

    server.route("/feed.xml", feed_handler)
    server.route("/broken.xml", static(b"oops", "text/plain", status=500))
    for name in (ORIGINAL, REWRITE, OTHER):
        server.route(f"/a/{name}", static(page(name)))
