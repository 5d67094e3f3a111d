"""Feed health as people read it: each feed with why it needs attention, the same in every place that shows it.

`newswatch feeds` and `newswatch status`, the API's `/feeds`, the dashboard's Feeds page and the
maintenance run's feed-health artifact all list feeds through `feed_health` (the rule itself is
`warehouse.feeds.attention_reasons`).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from warehouse.feeds import FeedRecord, attention_reasons


@dataclass(frozen=True)
class FeedHealth:
    """A feed and why it needs a look (nothing when it is fine)."""

    feed: FeedRecord
    attention: list[str]


def feed_health(feeds: list[FeedRecord], now: datetime, silent_feed_days: float) -> list[FeedHealth]:
    """Every feed, in the order given, with why it needs attention: failing, or silent for `silent_feed_days`."""
    silent_after = timedelta(days=silent_feed_days)
    return [FeedHealth(feed, attention_reasons(feed, now, silent_after)) for feed in feeds]


def needing_attention(feeds: list[FeedRecord], now: datetime, silent_feed_days: float) -> list[FeedHealth]:
    """The feeds that need attention, in the order given, with why."""
    return [health for health in feed_health(feeds, now, silent_feed_days) if health.attention]
