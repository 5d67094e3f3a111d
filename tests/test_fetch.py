"""extract.fetch against a real HTTP server on 127.0.0.1, plus in-process transports for SSRF cases.

No test sends traffic beyond loopback: public-looking addresses are only ever handed to an
`httpx.MockTransport`, and hostnames are resolved through a patched resolver.
"""

import asyncio
import email.utils
import gzip
import socket
import threading
import time
import tracemalloc
import zlib
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import pytest

from extract import fetch as fetch_module
from extract.fetch import (
    FetchError,
    Fetcher,
    FetchPolicy,
    FetchResult,
    describe_address,
    next_retry_delay,
    parse_content_type,
    parse_retry_after,
    resolve_safe_address,
)
from tests.http_server import make_server_fixture, respond, static

MB = 1024 * 1024
# Loopback is private, so the server tests must allow private networks; SSRF tests turn it off.
LOCAL = FetchPolicy(allow_private_networks=True, per_host_delay=0, connect_timeout=1, read_timeout=0.5,
                    total_timeout=5, max_bytes=MB)
GUARDED = FetchPolicy(per_host_delay=0, connect_timeout=1, read_timeout=0.5, total_timeout=5)
PUBLIC_IP = "93.184.215.14"  # only ever given to MockTransport


def _build_gzip_bomb(decoded_size: int = 200 * MB) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MB)
    parts = [compressor.compress(zeros) for _ in range(decoded_size // MB)]
    return b"".join(parts) + compressor.flush()


GZIP_BOMB = _build_gzip_bomb()
BIG_CHUNK = bytes(64 * 1024)

http_server = make_server_fixture()


def fetch_one(url: str, policy: FetchPolicy = LOCAL, transport=None, **kwargs) -> FetchResult:
    async def go() -> FetchResult:
        async with Fetcher(policy, transport=transport) as fetcher:
            return await fetcher.fetch(url, **kwargs)

    return asyncio.run(go())


def fetch_many(urls: list[str], policy: FetchPolicy = LOCAL, **kwargs) -> list[FetchResult]:
    async def go() -> list[FetchResult]:
        async with Fetcher(policy) as fetcher:
            return await asyncio.gather(*(fetcher.fetch(url, **kwargs) for url in urls))

    return asyncio.run(go())


def recording_transport(handler=None) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """An in-process transport: nothing leaves the process, and every request is recorded."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request) if handler else httpx.Response(200, text="hello")

    return httpx.MockTransport(handle), seen


# --- handlers ------------------------------------------------------------------------------------

def send_head(request, status=200, content_type="text/html", headers=None):
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    for name, value in (headers or {}).items():
        request.send_header(name, value)
    request.end_headers()
    request.wfile.flush()


LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"


def conditional(request):
    if request.headers.get("If-None-Match") == '"v1"':
        respond(request, 304, headers={"ETag": '"v1"'})
    else:
        respond(request, 200, b"<p>v1</p>", headers={"ETag": '"v1"', "Last-Modified": LAST_MODIFIED})


def make_endless(server, pause: float, chunk: bytes, limit: int | None = None, seconds: float = 4.0):
    """Headers, then `chunk` every `pause` seconds until the client leaves, the server stops, `limit`
    bytes are sent or `seconds` have passed (so a client that never gives up fails the test, not hangs it)."""

    def handler(request):
        send_head(request)
        sent, deadline = 0, time.monotonic() + seconds
        while not server.stopping.is_set() and (limit is None or sent < limit):
            if time.monotonic() > deadline:
                break
            request.wfile.write(chunk)
            request.wfile.flush()
            sent += len(chunk)
            if pause:
                server.stopping.wait(pause)

    return handler


def make_stalled(server, seconds: float, status=200, content_type="text/html", headers=None, first=b""):
    """Send the head (and `first` bytes), then go silent: a client that reads the body times out."""

    def handler(request):
        send_head(request, status, content_type, headers)
        request.wfile.write(first)
        request.wfile.flush()
        server.stopping.wait(seconds)

    return handler


# --- success, conditional GET, headers -----------------------------------------------------------

def test_ok_html_and_user_agent(http_server):
    http_server.route("/ok", static(b"<html>hi</html>"))
    result = fetch_one(http_server.url("/ok"))
    assert result.ok and result.status == 200 and result.body == b"<html>hi</html>"
    assert (result.content_type, result.charset) == ("text/html", "utf-8")
    assert result.final_url == result.url == http_server.url("/ok")
    assert http_server.requests[0].headers["user-agent"] == LOCAL.user_agent


def test_conditional_get_gives_not_modified(http_server):
    http_server.route("/etag", conditional)
    first = fetch_one(http_server.url("/etag"))
    assert first.etag == '"v1"' and first.last_modified.startswith("Wed, 21 Oct 2015")
    second = fetch_one(http_server.url("/etag"), etag=first.etag, last_modified=first.last_modified)
    assert second.ok and second.not_modified and second.status == 304 and second.body is None
    seen = http_server.requests[1].headers
    assert seen["if-none-match"] == '"v1"' and seen["if-modified-since"] == first.last_modified
    assert "if-none-match" not in http_server.requests[0].headers


def test_gzip_body_is_decoded(http_server):
    packed = gzip.compress(b"<p>packed</p>" * 100)
    http_server.route("/gz", static(packed, headers={"Content-Encoding": "gzip"}))
    result = fetch_one(http_server.url("/gz"))
    assert result.ok and result.body == b"<p>packed</p>" * 100


def test_charset_reported_but_body_left_as_bytes(http_server):
    http_server.route("/wrong", static(b"caf\xe9", "text/html; charset=utf-8"))
    http_server.route("/missing", static(b"caf\xe9", "text/html"))
    http_server.route("/odd", static(b"caf\xe9", 'Text/HTML; Charset="ISO-8859-1"'))
    wrong, missing, odd = (fetch_one(http_server.url(path)) for path in ("/wrong", "/missing", "/odd"))
    assert wrong.body == missing.body == odd.body == b"caf\xe9"
    assert (wrong.charset, missing.charset, odd.charset) == ("utf-8", None, "iso-8859-1")
    assert odd.content_type == "text/html"


def test_parse_content_type():
    assert parse_content_type(None) == (None, None)
    assert parse_content_type("application/rss+xml;charset='UTF-8';q=1") == ("application/rss+xml", "utf-8")


# --- HTTP errors and Retry-After -----------------------------------------------------------------

def test_http_errors_and_retry_after(http_server):
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    http_server.route("/500", static(b"boom", status=500))
    http_server.route("/429", static(b"slow down", status=429, headers={"Retry-After": "7"}))
    http_server.route("/503", static(b"later", status=503, headers={"Retry-After": when}))
    error, limited, unavailable = (fetch_one(http_server.url(path)) for path in ("/500", "/429", "/503"))
    assert not error.ok and error.error == "HTTP 500" and error.status == 500 and error.body is None
    assert limited.error == "HTTP 429" and limited.retry_after == 7
    assert unavailable.error == "HTTP 503" and 100 < unavailable.retry_after <= 121


def test_parse_retry_after():
    now = datetime(2015, 10, 21, 7, 28, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now) == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now) == 0  # in the past
    assert parse_retry_after("soon", now) is None and parse_retry_after(None) is None


def test_connection_refused_is_a_result():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = fetch_one(f"http://127.0.0.1:{port}/")
    assert result.status is None and result.error.startswith("connection failed")


# --- timeouts ------------------------------------------------------------------------------------

def test_read_timeout(http_server):
    def sleepy(request):
        http_server.stopping.wait(30)  # silent before even the status line
        respond(request, 200, b"late")

    http_server.route("/sleepy", sleepy)
    started = time.monotonic()
    result = fetch_one(http_server.url("/sleepy"))
    assert result.error == "timeout" and result.status is None
    assert time.monotonic() - started < 15  # the 0.5 s read timeout, not the 30 s silence


def test_slow_drip_hits_total_timeout(http_server):
    # A byte every 0.2 s never trips the 0.5 s read timeout; only the total timeout stops it.
    http_server.route("/drip", make_endless(http_server, 0.2, b"x", seconds=30))
    started = time.monotonic()
    result = fetch_one(http_server.url("/drip"), policy=replace(LOCAL, total_timeout=1.0))
    assert result.error == "timeout" and result.body is None
    assert 0.9 < time.monotonic() - started < 15  # the 1 s total timeout, not the 30 s drip


# --- redirects -----------------------------------------------------------------------------------

def test_redirect_followed(http_server):
    http_server.route("/old", static(b"", status=301, headers={"Location": "/new#frag"}))
    http_server.route("/new", static(b"new"))
    result = fetch_one(http_server.url("/old"))
    assert result.ok and result.body == b"new" and result.final_url == http_server.url("/new")


def test_redirect_loop(http_server):
    http_server.route("/a", static(b"", status=302, headers={"Location": "/b"}))
    http_server.route("/b", static(b"", status=302, headers={"Location": http_server.url("/a")}))
    result = fetch_one(http_server.url("/a"))
    assert result.error == "redirect loop"
    assert http_server.paths_seen() == ["/a", "/b"]


def test_too_many_redirects(http_server):
    http_server.route("/r/*", lambda request: respond(
        request, 302, headers={"Location": f"/r/{int(request.path.rsplit('/', 1)[1]) + 1}"}))
    result = fetch_one(http_server.url("/r/0"), policy=replace(LOCAL, max_redirects=3))
    assert result.error == "too many redirects" and result.final_url == http_server.url("/r/4")
    assert http_server.paths_seen() == ["/r/0", "/r/1", "/r/2", "/r/3"]


# --- size limits ---------------------------------------------------------------------------------

def _peak_memory(call) -> tuple[object, int]:
    tracemalloc.start()
    try:
        value = call()
        return value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_huge_streamed_body_stops_at_cap(http_server):
    # 50 MB written in 64 KB chunks without a Content-Length: only streaming can stop it.
    http_server.route("/huge", make_endless(http_server, 0, BIG_CHUNK, limit=50 * MB))
    result, peak = _peak_memory(lambda: fetch_one(http_server.url("/huge")))
    assert result.error == f"body larger than {MB} bytes" and result.body is None
    assert peak < 8 * MB


def test_declared_length_over_cap_is_refused_before_reading(http_server):
    # Announces 50 MB, sends 1 KB, then stalls: reading would end in "timeout", not this error.
    declared = {"Content-Length": str(50 * MB)}
    http_server.route("/declared", make_stalled(http_server, 30, headers=declared, first=bytes(1024)))
    started = time.monotonic()
    result = fetch_one(http_server.url("/declared"))
    assert result.error == f"body larger than {MB} bytes"
    assert time.monotonic() - started < 15  # the server stalls for 30 s after the head


def test_gzip_bomb_stops_at_cap_with_small_memory(http_server):
    assert len(GZIP_BOMB) < MB  # the compressed size is under the cap, so only decoding can catch it
    http_server.route("/bomb", static(GZIP_BOMB, headers={"Content-Encoding": "gzip"}))
    result, peak = _peak_memory(lambda: fetch_one(http_server.url("/bomb")))
    assert result.error == f"body larger than {MB} bytes"
    assert peak < 8 * MB  # inflating a whole 64 KB network chunk at once would take ~64 MB


def test_unsupported_content_encoding(http_server):
    http_server.route("/br", static(b"\x0b\x02\x80hi\x03", headers={"Content-Encoding": "br"}))
    assert fetch_one(http_server.url("/br")).error == "unsupported content encoding br"


# --- content type --------------------------------------------------------------------------------

def test_unexpected_content_type_is_not_read(http_server):
    # The body never ends; reading it would give "timeout" instead.
    http_server.route("/image", make_stalled(http_server, 30, content_type="image/png", first=b"\x89PNG"))
    http_server.route("/page", static(b"<p>x</p>", "application/xhtml+xml"))
    started = time.monotonic()
    result = fetch_one(http_server.url("/image"), accept=("text/html", "application/xhtml+xml"))
    assert result.error == "unexpected content type image/png" and result.body is None
    assert time.monotonic() - started < 15  # the server stalls for 30 s after the head
    assert fetch_one(http_server.url("/page"), accept=("text/html", "application/xhtml+xml")).ok


# --- robots.txt ----------------------------------------------------------------------------------

def test_robots_disallow_blocks_without_requesting(http_server):
    http_server.route("/robots.txt", static(b"User-agent: *\nDisallow: /private\n", "text/plain"))
    http_server.route("/private", static(b"secret"))
    http_server.route("/public", static(b"news"))
    urls = [http_server.url(path) for path in ("/private", "/public", "/private/x")]
    private, public, again = fetch_many(urls, check_robots=True)
    assert private.error == "disallowed by robots.txt" and again.error == "disallowed by robots.txt"
    assert public.ok and public.body == b"news"
    assert sorted(http_server.paths_seen()) == ["/public", "/robots.txt"]  # robots.txt fetched once


def test_robots_rules_for_our_agent(http_server):
    rules = b"User-agent: newswatch\nDisallow: /\n\nUser-agent: *\nAllow: /\n"
    http_server.route("/robots.txt", static(rules, "text/plain"))
    assert fetch_one(http_server.url("/page"), check_robots=True).error == "disallowed by robots.txt"


@pytest.mark.parametrize("status", [404, 500])
def test_missing_or_broken_robots_allows(http_server, status):
    http_server.route("/robots.txt", static(b"Disallow: /", "text/plain", status=status))
    http_server.route("/page", static(b"ok"))
    assert fetch_one(http_server.url("/page"), check_robots=True).ok


def test_robots_not_fetched_unless_asked(http_server):
    http_server.route("/robots.txt", static(b"User-agent: *\nDisallow: /\n", "text/plain"))
    http_server.route("/page", static(b"ok"))
    assert fetch_one(http_server.url("/page")).ok
    assert fetch_one(http_server.url("/page"), check_robots=True,
                     policy=replace(LOCAL, respect_robots=False)).ok
    assert http_server.paths_seen() == ["/page", "/page"]


# --- SSRF guard ----------------------------------------------------------------------------------

def test_loopback_refused_without_request(http_server):
    http_server.route("/", static(b"internal"))
    result = fetch_one(http_server.url("/"), policy=GUARDED)
    assert result.error == "refused: 127.0.0.1 is a loopback address" and result.status is None
    assert http_server.requests == []


@pytest.mark.parametrize(("url", "error"), [
    ("http://169.254.169.254/latest/meta-data", "refused: 169.254.169.254 is a link-local address"),
    ("http://10.0.0.1/", "refused: 10.0.0.1 is a private address"),
    ("http://[::ffff:10.0.0.1]/", "refused: ::ffff:10.0.0.1 is a private address"),
    ("http://0.0.0.0:8080/", "refused: 0.0.0.0 is an unspecified address"),
    ("ftp://127.0.0.1/file", "refused: scheme ftp is not http or https"),
    ("file:///etc/passwd", "refused: scheme file is not http or https"),
])
def test_unsafe_destinations_refused_before_connecting(url, error):
    transport, seen = recording_transport()  # a broken guard would show up here, not on the network
    result = fetch_one(url, policy=GUARDED, transport=transport)
    assert result.error == error and seen == []


@pytest.mark.parametrize("target", ["http://10.0.0.1/admin", "http://169.254.169.254/latest/meta-data",
                                    "http://127.0.0.1:2375/", "file:///etc/passwd"])
def test_redirect_hop_to_unsafe_destination_refused(target):
    transport, seen = recording_transport(lambda request: httpx.Response(302, headers={"Location": target}))
    result = fetch_one(f"http://{PUBLIC_IP}/start", policy=GUARDED, transport=transport)
    assert result.error.startswith("refused: ") and result.final_url.endswith(httpx.URL(target).path)
    assert [str(request.url) for request in seen] == [f"http://{PUBLIC_IP}/start"]


def test_hostname_pinned_to_checked_address(monkeypatch):
    async def fake_resolve(host, port):
        return {"news.example": [PUBLIC_IP]}[host]

    monkeypatch.setattr(fetch_module, "_resolve_host", fake_resolve)
    transport, seen = recording_transport()
    result = fetch_one("http://news.example:8080/story", policy=GUARDED, transport=transport)
    assert result.ok and result.final_url == "http://news.example:8080/story"
    assert seen[0].url.host == PUBLIC_IP and seen[0].headers["host"] == "news.example:8080"


def test_any_private_answer_refuses_and_dns_failure_reported(monkeypatch):
    async def fake_resolve(host, port):
        if host == "rebind.example":
            return [PUBLIC_IP, "10.1.2.3"]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(fetch_module, "_resolve_host", fake_resolve)
    transport, seen = recording_transport()
    assert fetch_one("http://rebind.example/", policy=GUARDED, transport=transport).error == \
        "refused: 10.1.2.3 is a private address"
    assert fetch_one("http://nowhere.example/", policy=GUARDED, transport=transport).error.startswith(
        "cannot resolve nowhere.example")
    assert seen == []


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.0.0.1", "private"), ("192.168.1.1", "private"),
    ("172.16.0.1", "private"), ("169.254.169.254", "link-local"), ("fe80::1%eth0", "link-local"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("240.0.0.1", "private"), ("::ffff:169.254.169.254", "private"), ("2002:a00:1::1", "private"),
    ("64:ff9b::a9fe:a9fe", "reserved"), ("100.64.0.1", "not a public"), ("fc00::1", "private"),
])
def test_describe_address_refuses_non_public(address, kind):
    assert kind in describe_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", PUBLIC_IP, "2001:4860:4860::8888"])
def test_describe_address_allows_public(address):
    assert describe_address(address) is None


def test_resolve_safe_address_literal():
    public = asyncio.run(resolve_safe_address(f"https://{PUBLIC_IP}/", allow_private_networks=False))
    assert public == PUBLIC_IP
    assert asyncio.run(resolve_safe_address("http://10.0.0.1/", allow_private_networks=True)) is None
    with pytest.raises(FetchError, match="is a private address"):
        asyncio.run(resolve_safe_address("http://10.0.0.1/", allow_private_networks=False))


# --- politeness ----------------------------------------------------------------------------------

def test_per_host_concurrency(http_server):
    lock, state = threading.Lock(), {"now": 0, "max": 0}

    def busy(request):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.2)
        with lock:
            state["now"] -= 1
        respond(request, 200, b"ok")

    http_server.route("/busy", busy)
    results = fetch_many([http_server.url("/busy")] * 6, policy=replace(LOCAL, per_host_concurrency=2))
    assert all(result.ok for result in results)
    assert state["max"] == 2  # never more than 2, and the 2 really ran side by side


def test_per_host_delay_spaces_starts(http_server):
    starts: list[float] = []
    def paced(request):
        starts.append(time.monotonic())
        respond(request, 200, b"ok")

    http_server.route("/paced", paced)
    policy = replace(LOCAL, per_host_delay=0.3, per_host_concurrency=3)
    assert all(result.ok for result in fetch_many([http_server.url("/paced")] * 3, policy=policy))
    gaps = [later - earlier for earlier, later in zip(sorted(starts), sorted(starts)[1:])]
    assert len(gaps) == 2 and min(gaps) >= 0.25


# --- scheduling helper ---------------------------------------------------------------------------

def test_next_retry_delay():
    assert next_retry_delay(0, retry_after=None) == 0
    assert [next_retry_delay(n, retry_after=None) for n in (1, 2, 3)] == [60, 120, 240]
    assert next_retry_delay(20, retry_after=None) == 86400
    assert next_retry_delay(10**9, retry_after=None) == 86400
    assert next_retry_delay(5, retry_after=7) == 60  # floored at base
    assert next_retry_delay(1, retry_after=600) == 600  # Retry-After wins over the exponential
    assert next_retry_delay(1, retry_after=10**9) == 86400  # capped
    assert next_retry_delay(3, retry_after=None, base=1, cap=3) == 3
