"""Fetch URLs politely and defensively: SSRF guard, size and time limits, per-host pacing, robots.txt.

`Fetcher.fetch` never raises for network or HTTP trouble; it returns a `FetchResult` whose `error`
says what went wrong in one line. Retrying is the caller's decision (`next_retry_delay`).

Security notes:
- Every hop is checked before connecting: http/https only, and every address the host resolves to
  must be public (unless `allow_private_networks`). For plain http the request is then sent to the
  checked address (Host header kept), so a second DNS answer cannot redirect it (DNS rebinding).
  For https httpx resolves again; certificate verification against the hostname is what stops a
  rebound connection there, since an internal service cannot present the site's certificate.
- Proxies from the environment are ignored (`trust_env=False`): through a proxy the guard would
  check one address and the proxy would connect to another.
"""

import asyncio
import ipaddress
import logging
import math
import socket
import time
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from extract.robots import RobotsCache

logger = logging.getLogger(__name__)

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_ROBOTS_MAX_BYTES = 512 * 1024
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_ADDRESS_KINDS = ("loopback", "link_local", "multicast", "unspecified", "private", "reserved")


@dataclass(frozen=True)
class FetchPolicy:
    """Limits and manners for one `Fetcher`; times are in seconds, sizes in bytes."""

    user_agent: str = "newswatch/0.1 (+https://github.com/newswatch; news monitoring)"
    connect_timeout: float = 10.0
    read_timeout: float = 20.0  # longest silence while waiting for bytes
    total_timeout: float = 60.0  # one request and its whole body, slow-drip bodies included
    max_redirects: int = 5
    max_bytes: int = 10 * 1024 * 1024  # decoded body cap, enforced while streaming
    global_concurrency: int = 16
    per_host_concurrency: int = 2
    per_host_delay: float = 1.0  # minimum time between request starts to one host
    allow_private_networks: bool = False  # the caller maps NEWSWATCH_ALLOW_PRIVATE_NETWORKS=1 here
    respect_robots: bool = True


@dataclass(frozen=True)
class FetchResult:
    """The outcome of one fetch, redirects included; failures are described, never raised."""

    url: str  # as requested
    final_url: str  # after redirects; on error, the hop that failed or was refused
    status: int | None = None  # None unless a complete response was accepted (2xx, 304 or an HTTP error)
    body: bytes | None = None  # decoded from gzip/deflate; None on error or 304
    content_type: str | None = None  # media type, lower-case, without parameters
    charset: str | None = None  # as declared in Content-Type, lower-case; not applied to body
    # (give it to extract.content.article_from_html, which checks it against the bytes)
    etag: str | None = None
    last_modified: str | None = None
    retry_after: float | None = None  # seconds, from Retry-After
    not_modified: bool = False  # 304 on a conditional request
    error: str | None = None  # one line, e.g. "timeout", "HTTP 500", "disallowed by robots.txt"
    elapsed: float = 0.0  # seconds, waiting for politeness slots included

    @property
    def ok(self) -> bool:
        """True for a usable body or a 304."""
        return self.error is None


class FetchError(Exception):
    """A fetch that cannot go on; the message becomes `FetchResult.error`."""


def describe_address(address: str) -> str | None:
    """Say why an IP address is off limits, or None when it is public.

    Args:
        address: An IPv4 or IPv6 address, possibly with a `%scope` suffix.

    Returns:
        A phrase such as "10.0.0.1 is a private address", or None for a global unicast address.
        IPv6 forms that embed an IPv4 address (mapped, 6to4, Teredo, NAT64) are judged by it too.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = (ip.ipv4_mapped, ip.sixtofour, ip.teredo and ip.teredo[1])
        candidates += [address4 for address4 in embedded if address4]
        if ip in _NAT64:
            candidates.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    for candidate in candidates:
        for kind in _ADDRESS_KINDS:
            if getattr(candidate, f"is_{kind}"):
                article = "an" if kind[0] in "aeiou" else "a"
                return f"{address} is {article} {kind.replace('_', '-')} address"
        if not candidate.is_global:  # e.g. 100.64.0.0/10 (carrier-grade NAT)
            return f"{address} is not a public address"
    return None


async def _resolve_host(host: str, port: int) -> list[str]:
    """All addresses `host` resolves to (a seam for tests, which must not use real DNS)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


async def resolve_safe_address(url: str, *, allow_private_networks: bool) -> str | None:
    """Check a URL before connecting to it.

    Args:
        url: The absolute URL about to be requested.
        allow_private_networks: Skip the address check (and the resolving), for tests and intranets.

    Returns:
        The checked address to connect to, or None when private networks are allowed.

    Raises:
        FetchError: For a scheme other than http/https, a host that does not resolve, or any
            resolved address that is not public.
    """
    target = httpx.URL(url)
    if target.scheme not in ("http", "https"):
        raise FetchError(f"refused: scheme {target.scheme or '(none)'} is not http or https")
    if not target.host:
        raise FetchError("refused: URL has no host")
    if allow_private_networks:
        return None
    host = target.raw_host.decode("ascii")
    try:
        addresses = await _resolve_host(host, target.port or (443 if target.scheme == "https" else 80))
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"cannot resolve {host}: {exc}") from None
    # Refuse if ANY answer is private: connecting code could pick any of them.
    reasons = [reason for reason in map(describe_address, addresses) if reason]
    if reasons or not addresses:
        raise FetchError(f"refused: {reasons[0] if reasons else host + ' has no address'}")
    return addresses[0]


def parse_content_type(value: str | None) -> tuple[str | None, str | None]:
    """Split a Content-Type header into (media type, charset), both lower-case."""
    if not value:
        return None, None
    media_type, *parameters = value.split(";")
    charset = None
    for parameter in parameters:
        name, _, parameter_value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = parameter_value.strip().strip("\"'").lower() or None
    return media_type.strip().lower() or None, charset


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or bad."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def next_retry_delay(consecutive_failures: int, *, retry_after: float | None,
                     base: float = 60, cap: float = 86400) -> float:
    """How long a caller should wait before trying a failing feed again.

    Args:
        consecutive_failures: Failures in a row so far, counting the one just seen.
        retry_after: The server's Retry-After in seconds, if it sent one.
        base: Delay after the first failure, and the shortest delay ever returned after a failure.
        cap: The longest delay ever returned; a feed is slowed down, never disabled.

    Returns:
        Seconds: `retry_after` when given, else `base * 2**(failures - 1)`, either one clamped to
        [base, cap]. Retry-After is floored at `base` because it only says "not before", and a
        scheduler polling every second would be rude; it is capped so a bogus date cannot park a
        feed for years. 0 when there were no failures.
    """
    if retry_after is not None and not math.isnan(retry_after):
        return min(max(retry_after, base), cap)
    if consecutive_failures < 1:
        return 0.0
    return min(base * 2 ** min(consecutive_failures - 1, 64), cap)


def _open_decoder(content_encoding: str | None):
    """A zlib decompressor for the body's encoding, or None for an unencoded body."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(32 + zlib.MAX_WBITS)  # accepts gzip and zlib headers alike
    # We only send Accept-Encoding: gzip, deflate; brotli is not installed.
    raise FetchError(f"unsupported content encoding {encoding}")


async def _read_body(response: httpx.Response, max_bytes: int) -> bytes:
    """Read and decode the body, stopping as soon as it exceeds `max_bytes`.

    Decoding here rather than through httpx keeps each decoded piece at most `max_bytes + 1`:
    httpx inflates a whole network chunk at once, and 64 KiB of a gzip bomb is 64 MiB of zeros.
    """
    if response.is_stream_consumed:  # built in memory, e.g. by httpx.MockTransport; already decoded
        if len(response.content) > max_bytes:
            raise FetchError(f"body larger than {max_bytes} bytes")
        return response.content
    decoder = _open_decoder(response.headers.get("content-encoding"))
    chunks: list[bytes] = []
    size = 0
    try:
        async for raw in response.aiter_raw():
            data = decoder.decompress(raw, max_bytes - size + 1) if decoder else raw
            size += len(data)
            if size > max_bytes:
                raise FetchError(f"body larger than {max_bytes} bytes")
            chunks.append(data)
        tail = decoder.flush() if decoder else b""
    except zlib.error as exc:
        raise FetchError(f"undecodable body: {exc}") from None
    if size + len(tail) > max_bytes:
        raise FetchError(f"body larger than {max_bytes} bytes")
    return b"".join(chunks) + tail


def _describe(exc: httpx.HTTPError) -> str:
    message = (str(exc).splitlines() or [""])[0] or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return f"connection failed: {message}"
    return f"{type(exc).__name__}: {message}"


class Fetcher:
    """Fetches URLs under a `FetchPolicy`; an async context manager owning one `httpx.AsyncClient`.

    Pacing and robots.txt state live in the instance, so share one Fetcher across a run.
    """

    def __init__(self, policy: FetchPolicy = FetchPolicy(), *,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.policy = policy
        self._client = httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,  # every hop goes through the SSRF guard and robots check
            trust_env=False,
            timeout=httpx.Timeout(connect=policy.connect_timeout, read=policy.read_timeout,
                                  write=policy.read_timeout, pool=policy.connect_timeout),
            limits=httpx.Limits(max_connections=policy.global_concurrency),
            headers={"User-Agent": policy.user_agent, "Accept-Encoding": "gzip, deflate"},
        )
        self._slots = asyncio.Semaphore(policy.global_concurrency)
        self._host_slots: dict[str, asyncio.Semaphore] = {}
        self._host_next_start: dict[str, float] = {}
        self._robots = RobotsCache(policy.user_agent, self._load_robots)

    async def __aenter__(self) -> "Fetcher":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client and drop pending robots.txt fetches."""
        self._robots.close()
        await self._client.aclose()

    async def fetch(self, url: str, *, etag: str | None = None, last_modified: str | None = None,
                    accept: tuple[str, ...] | None = None, check_robots: bool = False) -> FetchResult:
        """Fetch one URL, following redirects, within the policy's limits.

        Args:
            url: Absolute http(s) URL.
            etag: ETag from the previous fetch, sent as If-None-Match.
            last_modified: Last-Modified from the previous fetch, sent as If-Modified-Since.
            accept: Allowed media types; any other Content-Type fails without reading the body.
            check_robots: Obey the host's robots.txt (if the policy respects robots at all).

        Returns:
            A `FetchResult`; `error` is set for every failure, including HTTP error statuses.
        """
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        robots = check_robots and self.policy.respect_robots
        return await self._fetch(url, headers, accept, robots, self.policy.max_bytes)

    async def _fetch(self, url: str, headers: dict[str, str], accept: tuple[str, ...] | None,
                     check_robots: bool, max_bytes: int) -> FetchResult:
        started = time.monotonic()
        current, seen = url, {url}
        try:
            for _ in range(self.policy.max_redirects + 1):
                if check_robots and not await self._robots.allows(current):
                    raise FetchError("disallowed by robots.txt")
                outcome = await self._send(current, headers, accept, max_bytes)
                if isinstance(outcome, FetchResult):
                    return replace(outcome, url=url, elapsed=time.monotonic() - started)
                if outcome in seen:
                    raise FetchError("redirect loop")
                seen.add(outcome)
                current = outcome
            raise FetchError("too many redirects")
        except (FetchError, httpx.InvalidURL) as exc:
            error = str(exc) if isinstance(exc, FetchError) else f"invalid URL: {exc}"
            logger.debug("fetch %s failed at %s: %s", url, current, error)
            return FetchResult(url=url, final_url=current, error=error, elapsed=time.monotonic() - started)

    async def _send(self, url: str, headers: dict[str, str], accept: tuple[str, ...] | None,
                    max_bytes: int) -> FetchResult | str:
        """One request without redirects; returns the result, or the absolute URL to go to next."""
        target, allow_private = httpx.URL(url), self.policy.allow_private_networks
        try:
            async with asyncio.timeout(self.policy.connect_timeout):
                address = await resolve_safe_address(url, allow_private_networks=allow_private)
        except TimeoutError:
            raise FetchError(f"cannot resolve {target.host}: timeout") from None
        request_url, request_headers = target, dict(headers)
        if address and target.scheme == "http":
            # Connect to the address we checked, not to whatever a second lookup returns.
            request_url = target.copy_with(host=address)
            request_headers["Host"] = target.netloc.decode("ascii")
        async with self._host_turn(target.host), self._slots:
            try:
                async with asyncio.timeout(self.policy.total_timeout):
                    async with self._client.stream("GET", request_url, headers=request_headers) as response:
                        return await self._read(url, response, accept, max_bytes)
            except (TimeoutError, httpx.TimeoutException):
                raise FetchError("timeout") from None
            except httpx.HTTPError as exc:
                raise FetchError(_describe(exc)) from None

    async def _read(self, url: str, response: httpx.Response, accept: tuple[str, ...] | None,
                    max_bytes: int) -> FetchResult | str:
        status = response.status_code
        if status in _REDIRECT_STATUSES and response.headers.get("location"):
            return str(httpx.URL(url).join(response.headers["location"]).copy_with(fragment=None))
        content_type, charset = parse_content_type(response.headers.get("content-type"))
        result = FetchResult(
            url=url, final_url=url, status=status, content_type=content_type, charset=charset,
            etag=response.headers.get("etag"), last_modified=response.headers.get("last-modified"),
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
        if status == 304:
            return replace(result, not_modified=True)
        if not 200 <= status < 300:
            return replace(result, error=f"HTTP {status}")
        if accept is not None and content_type not in accept:
            raise FetchError(f"unexpected content type {content_type or '(none)'}")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise FetchError(f"body larger than {max_bytes} bytes")
        return replace(result, body=await _read_body(response, max_bytes))

    @asynccontextmanager
    async def _host_turn(self, host: str) -> AsyncIterator[None]:
        """Hold one of the host's slots, starting no sooner than `per_host_delay` after the last start."""
        slot = self._host_slots.setdefault(host, asyncio.Semaphore(self.policy.per_host_concurrency))
        async with slot:
            now = asyncio.get_running_loop().time()
            start = max(now, self._host_next_start.get(host, now))
            # Book the start before sleeping (no await in between), so the next caller queues behind it.
            self._host_next_start[host] = start + self.policy.per_host_delay
            await asyncio.sleep(start - now)
            yield

    async def _load_robots(self, url: str) -> bytes | None:
        """A robots.txt body through the same guarded path, without a robots check of its own."""
        return (await self._fetch(url, {}, None, False, _ROBOTS_MAX_BYTES)).body
