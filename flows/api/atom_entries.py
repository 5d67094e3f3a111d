"""Stories as Atom entries: the latest articles listed, links to the articles and the story, and the ETag answer."""

import hashlib
import math
from datetime import UTC, datetime

from fastapi import Request
from fastapi.responses import Response

from extract import atom
from monitoring.alerts import PAYLOAD_ARTICLES

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def listed_articles(members: list[dict]) -> tuple[list[atom.ListedArticle], int]:
    """The latest articles of a story for its feed entry, each duplicate saying what it duplicates."""
    titles = {member["article_id"]: member["title"] or member["url"] for member in members}
    shown = members[-PAYLOAD_ARTICLES:]
    listed = []
    for member in shown:
        note = None
        if member["duplicate_of"]:
            similarity = member["duplicate_similarity"]
            score = f" {similarity:.2f}" if isinstance(similarity, float) and math.isfinite(similarity) else ""
            note = f"{member['duplicate_kind']} duplicate{score} of: {titles.get(member['duplicate_of'], member['duplicate_of'])}"
        listed.append(atom.ListedArticle(member["title"] or "", member["url"], member["source_name"], member["seen_at"], note))
    return listed, len(members) - len(shown)


def entry_links(story_id: str, members: list[dict], base: str) -> list[atom.Link]:
    """The story's first original article, the story in the API, and every other article."""
    links = []
    first_original = next((m for m in members if not m["duplicate_of"] and atom.is_web_url(m["url"])), None)
    if first_original is not None:
        links.append(atom.Link(first_original["url"], "alternate", "text/html", first_original["title"]))
    links.append(atom.Link(f"{base}stories/{story_id}", "alternate", "application/json", "the story in the newswatch API"))
    seen = {first_original["url"]} if first_original else set()
    for member in members:
        if atom.is_web_url(member["url"]) and member["url"] not in seen:
            seen.add(member["url"])
            links.append(atom.Link(member["url"], "related", "text/html", member["title"]))
    return links


def story_summary(article_count: int, duplicate_count: int, sources: int) -> str:
    """'3 articles from 2 sources, 1 of them duplicates'."""
    articles = "1 article" if article_count == 1 else f"{article_count} articles"
    from_sources = "1 source" if sources == 1 else f"{sources} sources"
    return f"{articles} from {from_sources}" + (f", {duplicate_count} of them duplicates" if duplicate_count else "")


def atom_response(request: Request, document: bytes) -> Response:
    """An Atom document with its ETag; 304 Not Modified to a reader that already has this very document."""
    etag = f'"{hashlib.sha256(document).hexdigest()[:32]}"'
    offered = {tag.strip().removeprefix("W/") for tag in request.headers.get("if-none-match", "").split(",")}
    if etag in offered:
        return Response(status_code=304, headers={"ETag": etag})
    return Response(document, media_type=atom.MEDIA_TYPE, headers={"ETag": etag})
