"""A local news site for benchmarks: article pages behind RSS feeds, served on 127.0.0.1."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape


class LocalSite:
    """Serves `/feed/<n>.xml` (every `feeds`-th page) and `/page/<key>`; answers 304 to a repeated ETag."""

    def __init__(self, pages: dict[str, bytes], feeds: int = 1, entries: dict[str, dict] | None = None) -> None:
        self.pages = pages
        # Per page, what its feed entry says besides the link: `title`, `published` (RFC 822), `author`.
        self.entries = entries or {}
        keys = sorted(pages)
        self.feed_keys = [keys[index::feeds] for index in range(feeds)]
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.requests = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def feed_urls(self) -> list[str]:
        return [f"{self.base_url}/feed/{index}.xml" for index in range(len(self.feed_keys))]

    def __enter__(self) -> "LocalSite":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def feed(self, index: int) -> bytes:
        items = "".join(self._item(key) for key in self.feed_keys[index])
        return (
            "<?xml version='1.0'?><rss version='2.0' xmlns:dc='http://purl.org/dc/elements/1.1/'>"
            f"<channel><title>feed {index}</title>{items}</channel></rss>"
        ).encode()

    def _item(self, key: str) -> str:
        entry = self.entries.get(key, {})
        parts = [f"<title>{escape(entry.get('title') or key)}</title>", f"<link>{self.base_url}/page/{key}</link>"]
        if entry.get("published"):
            parts.append(f"<pubDate>{escape(entry['published'])}</pubDate>")
        if entry.get("author"):
            parts.append(f"<dc:creator>{escape(entry['author'])}</dc:creator>")
        return f"<item>{''.join(parts)}</item>"


    def _handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                site.requests += 1
                status, body, kind, headers = 404, b"not found", "text/plain", {}
                if self.path.startswith("/feed/") and self.path.endswith(".xml"):
                    index = self.path[6:-4]
                    if index.isdigit() and int(index) < len(site.feed_keys):
                        etag = f'"feed-{index}"'
                        headers = {"ETag": etag}
                        if self.headers.get("If-None-Match") == etag:
                            status, body, kind = 304, b"", None
                        else:
                            status, body, kind = 200, site.feed(int(index)), "application/rss+xml"
                elif self.path.startswith("/page/") and self.path[6:] in site.pages:
                    status, body, kind = 200, site.pages[self.path[6:]], "text/html; charset=utf-8"
                self.send_response(status)
                if kind:
                    self.send_header("Content-Type", kind)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        return Handler


def entry_metadata(pages: dict[str, bytes]) -> dict[str, dict]:
    """What a publisher's feed would say of each page: its title, date and author (read from the page once)."""
    from email.utils import format_datetime
    from datetime import UTC, datetime

    from trafilatura import load_html
    from trafilatura.metadata import extract_metadata

    entries = {}
    for key, html in pages.items():
        tree = load_html(html)
        metadata = extract_metadata(tree) if tree is not None else None
        if metadata is None:
            continue
        published = None
        if metadata.date:
            try:
                published = format_datetime(datetime.fromisoformat(metadata.date).replace(tzinfo=UTC))
            except ValueError:
                pass
        entries[key] = {"title": metadata.title, "published": published, "author": metadata.author}
    return entries
