"""robots.txt: each origin's rules loaded once and shared by concurrent fetches."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

logger = logging.getLogger(__name__)


def robots_url(url: str) -> str:
    """The robots.txt URL that governs `url` (same scheme, host and port; no credentials)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/robots.txt"


def parse_robots(body: bytes) -> RobotFileParser:
    """Parse a robots.txt body, tolerating bad bytes."""
    rules = RobotFileParser()
    rules.parse(body.decode("utf-8", "replace").splitlines())
    return rules


class RobotsCache:
    """Answers "may this user agent fetch this URL?", loading each origin's robots.txt once.

    Args:
        user_agent: Our User-Agent; rules are matched on its product token (before the "/").
        load: Fetches a robots.txt URL; returns the body of a 2xx response, else None.
    """

    def __init__(self, user_agent: str, load: Callable[[str], Awaitable[bytes | None]]):
        self.user_agent = user_agent
        self._load = load
        self._rules: dict[str, asyncio.Future[RobotFileParser | None]] = {}

    async def allows(self, url: str) -> bool:
        """Whether robots.txt lets us fetch `url`.

        Args:
            url: Absolute http(s) URL.

        Returns:
            False only when the origin's robots.txt was read and disallows the URL. A missing
            robots.txt (4xx) allows everything, as RFC 9309 says. For 5xx and unreachable files
            RFC 9309 says to assume "disallow all"; we allow instead, because we fetch only pages
            a site links from its own feeds, at a polite rate, and a flaky robots.txt should not
            hide the news.
        """
        location = robots_url(url)
        if location not in self._rules:
            self._rules[location] = asyncio.ensure_future(self._load_rules(location))
        # Shielded: one cancelled caller must not cancel the load that others are waiting for.
        rules = await asyncio.shield(self._rules[location])
        return rules is None or rules.can_fetch(self.user_agent, url)

    def close(self) -> None:
        """Cancel loads still in flight."""
        for pending in self._rules.values():
            pending.cancel()

    async def _load_rules(self, location: str) -> RobotFileParser | None:
        body = await self._load(location)
        if body is None:
            logger.info("no usable %s; allowing all", location)
            return None
        return parse_robots(body)
