"""The API's parameters: the bounds of every list, times, keyword queries, watch names, languages, cursors."""

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated

from fastapi import Query as QueryParameter

from extract.query import MAX_QUERY_CHARACTERS
from flows.api.errors import ApiError
from flows.digest import PeriodError, parse_since

# Page sizes and other bounds: every list a request can ask for has a ceiling.
DEFAULT_PAGE = 50
MAX_PAGE = 500
MAX_SEARCH_RESULTS = 1000
MAX_DIGEST_STORIES = 1000
DEFAULT_EXPORT_ROWS = 10_000
MAX_EXPORT_ROWS = 1_000_000
MAX_LANGUAGES = 20

TimeParameter = Annotated[str | None, QueryParameter(max_length=64, description="A duration back from now (30m, 24h, 7d, 2w) or an ISO 8601 date or time (UTC unless it says).")]
KeywordQuery = Annotated[str | None, QueryParameter(max_length=MAX_QUERY_CHARACTERS, description='A query in newswatch\'s query language: words, "exact phrases", AND, OR, NOT, parentheses.')]
WatchName = Annotated[str | None, QueryParameter(max_length=200, description="Only the stories this watch (name or id) has matched.")]
Languages = Annotated[list[str] | None, QueryParameter(max_length=MAX_LANGUAGES, description="Only stories with an article in this language (repeatable; empty for unknown).")]


def parse_time(name: str, text: str | None, now: datetime) -> datetime | None:
    """A `since`/`until` parameter: a duration back from now (30m, 24h, 7d, 2w) or an ISO date or time (UTC unless it says)."""
    if text is None or not text.strip():
        return None
    try:
        return parse_since(text, now)
    except PeriodError:
        raise ApiError(400, f"{name}={text!r} is neither a duration (30m, 24h, 7d, 2w) nor an ISO 8601 date or time") from None


def encode_cursor(story: dict) -> str:
    """An opaque cursor after this story (its last seen time and id)."""
    raw = json.dumps([story["last_seen_at"].isoformat(), story["story_id"]]).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """The (last_seen_at, story_id) of a cursor; 400 when it is not one this API gave."""
    if cursor is None:
        return None
    try:
        seen, story_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        moment = datetime.fromisoformat(seen)
        if moment.tzinfo is None or not isinstance(story_id, str):
            raise ValueError
        return moment, story_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "cursor is not one this API returned (use next_cursor of the previous page)") from None
