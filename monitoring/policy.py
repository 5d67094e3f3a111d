"""When a watch alerts: the rule, as a pure function of what a batch's matches left behind.

A watch alerts once per story ("new"), when the story has matched (through any article, in this
batch or an earlier one) and has at least the watch's `min_articles` articles from `min_sources`
sources. Later, when the story has grown to `developing_factor` times its size at the watch's last
alert on it, the watch alerts once more ("developing"), at most once a (UTC) day.

An alert's id is a hash of (watch, story, kind, and for a developing story the day): deciding
the same alert twice gives the same id, so the warehouse stores it once, whatever reruns.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime


@dataclass(frozen=True)
class AlertCandidate:
    """A story a watch has matched, as the rule sees it: the watch's thresholds, the story now, the earlier alerts."""

    watch_id: int
    story_id: str
    min_articles: int
    min_sources: int
    article_count: int  # the story's articles now, duplicates included
    source_count: int  # its distinct sources now
    last_kind: str | None = None  # the kind of the watch's latest alert on the story; None: never alerted
    last_article_count: int | None = None  # the story's articles at that alert
    developing_days: frozenset[date] = frozenset()  # the UTC days of its "developing" alerts


@dataclass(frozen=True)
class DecidedAlert:
    """An alert the rule decided: its stable key, watch, story and kind ("new" or "developing")."""

    alert_id: str
    watch_id: int
    story_id: str
    kind: str


def alert_id_for(watch_id: int, story_id: str, kind: str, day: str = "") -> str:
    """Stable key of an alert: receivers can dedupe on it too."""
    return hashlib.sha256(f"{watch_id}\0{story_id}\0{kind}\0{day}".encode("utf-8")).hexdigest()[:16]


def meets_thresholds(article_count: int, source_count: int, min_articles: int, min_sources: int) -> bool:
    """Whether a story is big enough for a watch's first alert on it (`--min-articles`, `--min-sources`)."""
    return article_count >= min_articles and source_count >= min_sources


def utc_day(moment: datetime) -> date:
    """The UTC calendar day of a moment (a naive one is taken as UTC)."""
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)).date()


def decide_alerts(candidates: Iterable[AlertCandidate], now: datetime, developing_factor: float) -> list[DecidedAlert]:
    """The alerts a batch sets off (see the module docstring for the rule).

    Args:
        candidates: Every (watch, story) pair matched so far among the stories the batch created or
            grew, with the story's size now and the watch's earlier alerts on it.
        now: The batch's time.
        developing_factor: How many times bigger than at its last alert a story must be to alert again.

    Returns:
        The alerts decided, in the order of `candidates`.
    """
    today = utc_day(now)
    decided = []
    for candidate in candidates:
        watch_id, story_id = candidate.watch_id, candidate.story_id
        if candidate.last_kind is None:
            if meets_thresholds(candidate.article_count, candidate.source_count, candidate.min_articles,
                                candidate.min_sources):
                decided.append(DecidedAlert(alert_id_for(watch_id, story_id, "new"), watch_id, story_id, "new"))
        elif (candidate.article_count >= developing_factor * candidate.last_article_count
              and today not in candidate.developing_days):
            day = today.isoformat()  # the UTC day the once-a-day rule counts, as the id says it
            decided.append(DecidedAlert(alert_id_for(watch_id, story_id, "developing", day), watch_id, story_id,
                                        "developing"))
    return decided
