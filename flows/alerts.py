"""Watches and alerts in a run: match each batch's articles, decide alerts with its load, deliver them after.

Every ingest run (fixtures or feeds, from the command line or on a schedule) evaluates every
watch against the stories each batch created or grew: the batch's matches go into the batch's
load transaction, where `record_alerts` reads what the rule needs (`warehouse.watches`), decides
(`monitoring.policy`) and stores the alerts with their payloads, so an alert is never decided
twice nor lost. After the run, every delivery that is due is attempted
(`deliver_due_alerts`): a failing endpoint is retried on later runs with exponential backoff,
then marked failed; it never fails the run, and one slow or failing endpoint never holds up the
others.
"""

import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np

from extract.query import QueryError, parse_query
from flows.embedding import embedding_model_key, get_embedder
from flows.settings import Settings
from monitoring.alerts import AlertMessage, alert_payload, render_alert
from monitoring.delivery import deliver
from monitoring.policy import AlertCandidate, decide_alerts
from monitoring.watches import WatchRule, match_articles
from warehouse.connection import open_warehouse
from warehouse.queries import list_stories, story_articles
from warehouse.sql import transaction
from warehouse.watches import (
    ArticleMatch, DeliveryAttempt, NewAlert, WatchRecord, due_deliveries, list_watches, matched_stories,
    record_delivery_attempts, record_matches, store_alerts,
)

logger = logging.getLogger(__name__)

# Endpoints attempted at once.
DELIVERY_CONCURRENCY = 4


def watch_rules(watches: list[WatchRecord], settings: Settings) -> list[WatchRule]:
    """What each watch looks for, ready to match: parsed queries and description vectors of the pipeline's model.

    A description embedded with another model (the setting changed since) is embedded again here.
    """
    rules = []
    model = embedding_model_key(settings)
    stale = [watch for watch in watches if watch.like_text is not None and (watch.like_model != model or watch.like_vector is None)]
    fresh = dict(zip((w.watch_id for w in stale), get_embedder(settings).embed([w.like_text for w in stale])[0])) if stale else {}
    for watch in watches:
        if watch.query is not None:
            try:
                rules.append(WatchRule(watch.watch_id, query=parse_query(watch.query)))
            except QueryError as error:  # stored before the language changed: say so, match nothing
                logger.warning("watch %s: its query no longer parses (%s); it matches nothing", watch.name, error)
        elif watch.like_text is not None:
            vector = fresh.get(watch.watch_id, watch.like_vector)
            rules.append(WatchRule(watch.watch_id, vector=np.asarray(vector, dtype=np.float32)))
    return rules


def read_watch_rules(db: Path, settings: Settings) -> list[WatchRule]:
    """The rules of every stored watch (none when there are no watches)."""
    with open_warehouse(db, memory_limit=settings.duckdb_memory_limit) as connection:
        watches = list_watches(connection)
    return watch_rules(watches, settings) if watches else []


def match_batch(prepared: list, story_of: dict[str, str], rules: list[WatchRule], settings: Settings) -> list[ArticleMatch]:
    """The batch's articles that watches match, with the story each went to.

    Args:
        prepared: The batch's `flows.pipeline.PreparedArticle`s, with their vectors.
        story_of: Each article's story (article_id → story_id).
        rules: The watches.
        settings: The similarity threshold of semantic watches.
    """
    if not rules or not prepared:
        return []
    documents = [(item.article_id, item.article.title, item.article.text) for item in prepared]
    vectors = np.stack([item.vector for item in prepared]) if any(rule.vector is not None for rule in rules) else None
    hits = match_articles(rules, documents, vectors, settings.watch_like_threshold)
    return [ArticleMatch(hit.watch_id, hit.article_key, story_of[hit.article_key]) for hit in hits]


def record_alerts(
    connection: duckdb.DuckDBPyConnection,
    matches: list[ArticleMatch],
    story_ids: list[str],
    now: datetime,
    developing_factor: float,
) -> list[str]:
    """Record a batch's matches and decide and store its alerts, inside the transaction that loads the batch.

    Call after the batch's articles are inserted. Reads the matched stories and the watches'
    earlier alerts on them, decides with `monitoring.policy.decide_alerts`, and stores each alert
    with its payload and a pending delivery per notification URL of its watch.

    Args:
        connection: The connection whose transaction loads the batch.
        matches: The batch's articles that watches matched.
        story_ids: Every story the batch's articles went to (created or grown).
        now: The batch's time.
        developing_factor: How many times bigger than at its last alert a story must be to alert again.

    Returns:
        The ids of the alerts decided now.
    """
    record_matches(connection, matches, now)
    touched = sorted(set(story_ids))
    matched = matched_stories(connection, touched) if touched else []
    if not matched:
        return []
    stories = {story["story_id"]: story for story in list_stories(
        connection, len(touched), story_ids=sorted({pair["story_id"] for pair in matched}), details=True)}
    candidates = [
        AlertCandidate(**pair, article_count=stories[pair["story_id"]]["article_count"],
                       source_count=len(stories[pair["story_id"]]["sources"]))
        for pair in matched if pair["story_id"] in stories
    ]
    decided = decide_alerts(candidates, now, developing_factor)
    if not decided:
        return []
    watches = {watch.watch_id: watch for watch in list_watches(connection)}
    members_of: dict[str, list[dict]] = {}
    for member in story_articles(connection, sorted({alert.story_id for alert in decided}), details=True):
        members_of.setdefault(member["story_id"], []).append(member)
    new_alerts = []
    for alert in decided:
        story, watch = stories[alert.story_id], watches[alert.watch_id]
        payload = alert_payload(alert.alert_id, alert.kind, now, watch, story, members_of.get(alert.story_id, []))
        new_alerts.append(NewAlert(alert.alert_id, alert.watch_id, alert.story_id, alert.kind, story["article_count"],
                                   len(story["sources"]), payload, watch.notify_urls))
    return store_alerts(connection, new_alerts, now)


@dataclass(frozen=True)
class WatchEvaluation:
    """The batch's articles that watches matched, and how much a story must grow to alert again.

    `warehouse.load.load_batch` calls its `record_alerts` inside the load transaction, with the
    matches of the articles that were new.
    """

    matches: list[ArticleMatch]
    developing_factor: float

    def record_alerts(self, connection: duckdb.DuckDBPyConnection, matches: list[ArticleMatch], story_ids: list[str],
                      now: datetime) -> list[str]:
        """`record_alerts` with this evaluation's developing factor."""
        return record_alerts(connection, matches, story_ids, now, self.developing_factor)


@dataclass(frozen=True)
class DeliveryReport:
    """What a round of deliveries did: delivered, failed this time (retried later or given up), left for later."""

    delivered: int = 0
    failed: int = 0
    deferred: int = 0


def deliver_due_alerts(db: Path, settings: Settings, now: datetime | None = None) -> DeliveryReport:
    """Attempt every due delivery once and log what happened; never raises for a failing endpoint.

    Endpoints are attempted concurrently. An endpoint that fails is not tried again in this round:
    its other due deliveries wait for the next round without counting an attempt.
    """
    now = now or datetime.now(UTC)
    with open_warehouse(db, memory_limit=settings.duckdb_memory_limit) as connection:
        due = due_deliveries(connection, now)
    if not due:
        return DeliveryReport()
    messages: dict[str, AlertMessage] = {}
    by_url: dict[str, list] = defaultdict(list)
    for delivery in due:
        if delivery.alert_id not in messages:
            messages[delivery.alert_id] = render_alert(delivery.payload)
        by_url[delivery.url].append(delivery)

    def send(url: str, deliveries: list) -> list[DeliveryAttempt]:
        attempts = []
        for delivery in deliveries:
            outcome = deliver(
                url, messages[delivery.alert_id], allow_private_networks=settings.allow_private_networks,
                timeout=settings.notify_timeout,
            )
            attempts.append(DeliveryAttempt(delivery.alert_id, url, outcome.ok, outcome.error, datetime.now(UTC)))
            if not outcome.ok:
                break  # the endpoint is down: its other deliveries wait for the next round
        return attempts

    with ThreadPoolExecutor(max_workers=DELIVERY_CONCURRENCY, thread_name_prefix="alert-delivery") as pool:
        attempts = [attempt for batch in pool.map(lambda item: send(*item), by_url.items()) for attempt in batch]
    with open_warehouse(db, memory_limit=settings.duckdb_memory_limit) as connection, transaction(connection):
        record_delivery_attempts(
            connection, attempts, first_retry=settings.alert_retry_seconds, max_retry=settings.alert_retry_max_seconds,
            max_attempts=settings.alert_max_attempts,
        )
    report = DeliveryReport(
        delivered=sum(attempt.ok for attempt in attempts),
        failed=sum(not attempt.ok for attempt in attempts),
        deferred=len(due) - len(attempts),
    )
    for attempt in attempts:
        if not attempt.ok:
            logger.warning("alert %s not delivered: %s", attempt.alert_id, attempt.error)
    return report
