"""The local HTTP server of `bench/http_server.py` as a pytest fixture, and its helpers for tests.

Usage in a test module::

    from tests.http_server import make_server_fixture, static

    http_server = make_server_fixture()

    def test_something(http_server):
        http_server.route("/feed.xml", static(b"<rss/>", "application/rss+xml"))
        url = http_server.url("/feed.xml")
"""

from collections.abc import Iterator

import pytest

from bench.http_server import Handler, LocalServer, RecordedRequest, closed_port, respond, serve, static

__all__ = ["Handler", "LocalServer", "RecordedRequest", "closed_port", "make_server_fixture", "respond", "serve", "static"]


def make_server_fixture(routes: dict[str, Handler] | None = None, scope: str = "function",
                        name: str = "http_server"):
    """Build a pytest fixture yielding a started `LocalServer`.

    Args:
        routes: Route table the server starts with (copied for each server).
        scope: The pytest fixture scope.
        name: The fixture's name, as test functions request it.

    Returns:
        A fixture function; assign it to a module-level name (or import it into a conftest).
    """

    @pytest.fixture(scope=scope, name=name)
    def local_server() -> Iterator[LocalServer]:
        with serve(dict(routes or {})) as server:
            yield server

    return local_server
