"""A real HTTP server on 127.0.0.1 for benchmarks and tests: a route table and request recording.

Usage::

    from bench.http_server import serve, static

    with serve({"/feed.xml": static(b"<rss/>", "application/rss+xml")}) as server:
        url = server.url("/feed.xml")

Tests get it as a pytest fixture from `tests/http_server.py`.

A handler receives the `BaseHTTPRequestHandler` and writes the whole response itself, so it can
stream, stall or misbehave; `respond` and `static` cover the ordinary cases.
"""

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

Handler = Callable[[BaseHTTPRequestHandler], None]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it, before its handler ran."""

    method: str
    path: str  # with the query string
    headers: dict[str, str]  # lower-case names


def respond(
    request: BaseHTTPRequestHandler,
    status: int = 200,
    body: bytes = b"",
    content_type: str | None = "text/html; charset=utf-8",
    headers: dict[str, str] | None = None,
) -> None:
    """Send a complete response with a Content-Length."""
    request.send_response(status)
    if content_type is not None:
        request.send_header("Content-Type", content_type)
    for name, value in (headers or {}).items():
        request.send_header(name, value)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    if request.command != "HEAD":
        request.wfile.write(body)


def static(body: bytes, content_type: str | None = "text/html; charset=utf-8", status: int = 200,
           headers: dict[str, str] | None = None) -> Handler:
    """A handler that always sends the same response."""
    return lambda request: respond(request, status, body, content_type, headers)


class LocalServer:
    """A `ThreadingHTTPServer` on 127.0.0.1 and an ephemeral port, serving from a route table.

    Routes match the path without its query; a route ending in `*` matches by prefix. Unknown
    paths get 404. Handlers run on their own threads; long-running ones should poll `stopping`.
    """

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[RecordedRequest] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})

    def route(self, path: str, handler: Handler) -> None:
        """Serve `path` (or a prefix, if it ends in `*`) with `handler`."""
        self.routes[path] = handler

    def url(self, path: str = "/") -> str:
        """The absolute URL of `path` on this server."""
        return self.base_url + path

    def paths_seen(self) -> list[str]:
        """The paths of all requests received so far, in order."""
        with self._lock:
            return [recorded.path for recorded in self.requests]

    def start(self) -> "LocalServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _find(self, path: str) -> Handler | None:
        if path in self.routes:
            return self.routes[path]
        prefixes = [key for key in self.routes if key.endswith("*") and path.startswith(key[:-1])]
        return self.routes[max(prefixes, key=len)] if prefixes else None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class RouteHandler(BaseHTTPRequestHandler):
            def _dispatch(self) -> None:
                recorded = RecordedRequest(self.command, self.path,
                                           {name.lower(): value for name, value in self.headers.items()})
                with server._lock:
                    server.requests.append(recorded)
                handler = server._find(urlsplit(self.path).path)
                try:
                    if handler is None:
                        respond(self, 404, b"not found", "text/plain")
                    else:
                        handler(self)
                except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                    pass  # the client under test gave up on purpose; that is what we test

            do_GET = do_HEAD = do_POST = _dispatch

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep pytest output clean

        return RouteHandler


@contextmanager
def serve(routes: dict[str, Handler] | None = None) -> Iterator[LocalServer]:
    """Run a `LocalServer` for the duration of a `with` block.

    Args:
        routes: Initial route table; more can be added with `LocalServer.route`.

    Returns:
        A context manager yielding the started server; it stops on exit.
    """
    server = LocalServer()
    server.routes.update(routes or {})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def closed_port() -> int:
    """A loopback port nothing listens on (bound by a probe, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
