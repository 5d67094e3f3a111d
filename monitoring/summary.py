"""A story's summary: the one description of a story that alerts and digests both carry.

Built from a story as the warehouse reads it (`warehouse.queries.list_stories` with details): an
alert's payload holds it under `story` (`monitoring.alerts.alert_payload`, times as ISO strings),
a digest lists it with the period's count and articles (`monitoring.digest.digest_story`).
"""


def story_summary(story: dict, *, recent_count: bool = False) -> dict:
    """The story's id, headline, sizes, sources and first and last sighting.

    Args:
        story: A story of `list_stories(..., details=True)`.
        recent_count: Also give `recent_count`, the articles seen in the period read (digests).

    Returns:
        `story_id`, `headline`, `article_count` (duplicates included), [`recent_count`],
        `duplicate_count`, `source_count`, `sources` (a list) and `first_seen_at` and
        `last_seen_at` (datetimes, as read), in this order.
    """
    summary = {"story_id": story["story_id"], "headline": story["headline"], "article_count": story["article_count"]}
    if recent_count:
        summary["recent_count"] = story["recent_count"]
    summary.update({
        "duplicate_count": story["duplicate_count"],
        "source_count": len(story["sources"]),
        "sources": list(story["sources"]),
        "first_seen_at": story["first_seen_at"],
        "last_seen_at": story["last_seen_at"],
    })
    return summary
