"""Bounded batches: a run's new articles are decided and stored a batch at a time.

A first run over a few hundred feeds brings tens of thousands of articles. Each batch of at most
`NEWSWATCH_BATCH_SIZE` articles is decided against what earlier batches stored and loaded in its
own transaction, so a run stopped at any point keeps every batch it stored, and the next run
fetches only what is missing. Polling hands articles over as they are extracted (from the
polling thread); the flow takes them out a batch at a time (`next_batch`).

A feed's health and validators (ETag, Last-Modified) are saved only in the transaction that
stores the last of the entries it brought (`completed_feeds`): saved earlier, a stopped run
would leave the rest of the feed behind a 304.
"""

import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterable

from flows.polling import FetchedArticle, PollResult
from warehouse.feeds import FeedOutcome, FetchFailure


class ArticleStream:
    """New articles on their way to the warehouse, with what each feed still waits for.

    Filled by polling (`PollListener`: `feeds_parsed`, `entry_done`) or all at once (`add_poll`,
    `add`), then `close`d; drained by one consumer with `next_batch` and `completed_feeds`.
    Thread-safe.
    """

    def __init__(self, on_article: Callable[[FetchedArticle], None] | None = None, capacity: int | None = None):
        self.capacity = capacity  # polling waits while this many articles wait to be taken
        self.on_taken: Callable[[int], None] | None = None
        self._changed = threading.Condition()
        self._ready: deque[FetchedArticle] = deque()
        self._waiting: dict[str, set[str]] = {}  # feed_id → entry URLs not stored yet
        self._outcomes: dict[str, FeedOutcome] = {}
        self._failures: dict[str | None, list[FetchFailure]] = defaultdict(list)
        self._on_article = on_article
        self._closed = False
        self.stopped = False
        self.received = 0

    # --- filled by polling ---

    def feeds_parsed(self, outcomes: list[FeedOutcome], failures: list[FetchFailure], entries_of: dict[str, list[str]]) -> None:
        with self._changed:
            for outcome in outcomes:
                self._outcomes[outcome.feed_id] = outcome
                self._waiting[outcome.feed_id] = set(entries_of.get(outcome.feed_id, ()))
            for failure in failures:
                self._failures[failure.feed_id].append(failure)
            self._changed.notify_all()

    def entry_done(self, feed_id: str, url: str, article: FetchedArticle | None, failure: FetchFailure | None) -> None:
        with self._changed:
            if failure is not None:
                self._failures[failure.feed_id].append(failure)
            if article is None:  # nothing to store: the entry no longer holds its feed back
                self._waiting.get(feed_id, set()).discard(url)
            else:
                self._ready.append(article)
                self.received += 1
            self._changed.notify_all()
        if article is not None and self._on_article is not None:
            self._on_article(article)

    # --- filled at once ---

    def add_poll(self, polled: PollResult) -> None:
        """A whole poll's feeds and failures (when its articles come later, with `add`)."""
        self.feeds_parsed(polled.outcomes, polled.failures, polled.entries_of)

    def add(self, articles: Iterable[FetchedArticle], failures: Iterable[FetchFailure] = ()) -> None:
        with self._changed:
            for failure in failures:
                self._failures[failure.feed_id].append(failure)
            for article in articles:
                self._ready.append(article)
                self.received += 1
            self._changed.notify_all()

    def close(self) -> None:
        """Nothing more will come: entries never handed over hold their feed back no longer."""
        with self._changed:
            self._closed = True
            for urls in self._waiting.values():
                urls.intersection_update(article.article.url for article in self._ready)
            self._changed.notify_all()

    @property
    def closed(self) -> bool:
        """Whether everything has been handed over (so `received` is the run's total)."""
        return self._closed

    def stop(self) -> None:
        """The run is stopping: polling skips the pages it has not fetched yet."""
        self.stopped = True

    # --- drained by the flow ---

    def next_batch(self, size: int) -> list[FetchedArticle] | None:
        """The next `size` articles (fewer at the end), waiting for them; None once all were taken."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._ready) >= size or self._closed)
            if not self._ready:
                return None
            batch = [self._ready.popleft() for _ in range(min(size, len(self._ready)))]
            taken = self.on_taken
        if taken is not None:
            taken(len(batch))
        return batch

    def completed_feeds(self, stored_urls: Iterable[str]) -> tuple[list[FeedOutcome], list[FetchFailure]]:
        """Outcomes and failure rows to save with a batch that stores these URLs (each handed out once).

        A feed is complete when none of its entries waits to be stored any more; failures of feeds
        never polled in this run (none so far) go with the first batch.
        """
        stored = set(stored_urls)
        with self._changed:
            outcomes, failures = [], self._failures.pop(None, [])
            for feed_id, urls in list(self._waiting.items()):
                urls.difference_update(stored)
                if not urls:
                    del self._waiting[feed_id]
                    outcomes.append(self._outcomes.pop(feed_id))
                    failures.extend(self._failures.pop(feed_id, []))
            if self._closed:  # failures of entries of feeds already saved (none expected) are not lost
                for feed_id in [f for f in self._failures if f not in self._waiting]:
                    failures.extend(self._failures.pop(feed_id))
            return outcomes, failures
