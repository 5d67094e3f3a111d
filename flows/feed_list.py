"""A feed list file (OPML, as feed readers export it) added to the feeds table: `import-opml` and `NEWSWATCH_FEEDS_FILE`."""

from datetime import datetime
from pathlib import Path

from flows.settings import Settings
from warehouse.connection import open_warehouse
from warehouse.feeds import add_feed

FEED_FILE_MAX_BYTES = 10 * 1024 * 1024  # an OPML list of ~50,000 feeds


class FeedFileError(Exception):
    """A feed list file cannot be read; the message is one sentence for the user."""


def import_feed_file(path: Path, db: Path, now: datetime, settings: Settings) -> tuple[int, int]:
    """Add every feed of an OPML file that is not listed yet.

    Returns:
        How many feeds the file lists, and how many were added.

    Raises:
        FeedFileError: The file is missing, unreadable or not OPML.
    """
    # Imported here: every command knows FeedFileError, few read a feed list (and the reader brings the extractor).
    from extract.fixtures import read_bounded
    from extract.opml import OpmlError, read_opml

    data = read_bounded(Path(path), FEED_FILE_MAX_BYTES)  # never a FIFO that blocks, nor a huge file
    if isinstance(data, str):
        raise FeedFileError(f"cannot read {path}: {data.removeprefix('cannot be read: ')}")
    try:
        feeds = read_opml(data)
    except OpmlError as error:
        raise FeedFileError(f"{path}: {error}") from None
    with open_warehouse(db, memory_limit=settings.duckdb_memory_limit) as connection:
        added = sum(add_feed(connection, feed.url, feed.title, now) for feed in feeds)
    return len(feeds), added
