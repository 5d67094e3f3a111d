"""Read a directory of saved articles (plain text or HTML) into `Article` objects."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from extract.content import Article, article_from_html, article_from_text

logger = logging.getLogger(__name__)

_TEXT_SUFFIXES = {".txt"}
_HTML_SUFFIXES = {".html", ".htm"}


@dataclass(frozen=True)
class SkippedFile:
    """A file in a fixture directory that did not become an article, and why."""

    path: Path
    reason: str


def _read_article(path: Path) -> Article | str:
    """The article in one file, or a short reason why there is none."""
    suffix = path.suffix.lower()
    if suffix not in _TEXT_SUFFIXES | _HTML_SUFFIXES:
        return f"unsupported extension {suffix}" if suffix else "no file extension"
    try:
        data = path.read_bytes()
    except OSError as error:
        return f"cannot be read: {error.strerror or error}"
    if not data.strip():
        return "empty file"
    if b"\x00" in data:
        return "binary file"
    url = path.resolve().as_uri()
    if suffix in _HTML_SUFFIXES:
        return article_from_html(data, url) or "no extractable text in HTML"
    try:
        raw = data.decode("utf-8-sig")  # tolerate the byte-order mark some editors write
    except UnicodeDecodeError:
        return "not UTF-8 text"
    article = article_from_text(raw, url)
    return article if article.text else "no text left after cleaning"


def read_fixture_dir(directory: Path) -> tuple[list[Article], list[SkippedFile]]:
    """Read every article file directly inside a directory.

    ``.txt`` files go through `article_from_text`, ``.html``/``.htm`` files through
    `article_from_html`. Files are read in name order so runs are deterministic; hidden files
    and subdirectories are ignored. A bad file is skipped with a warning, never raised.

    Args:
        directory: The directory to read (not recursively).

    Returns:
        The articles, and the files that were skipped with the reason for each.

    Raises:
        FileNotFoundError: The directory does not exist.
        NotADirectoryError: The path exists but is not a directory.
    """
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"Fixture directory {directory} does not exist.")
    if not directory.is_dir():
        raise NotADirectoryError(f"Fixture path {directory} is not a directory.")
    articles: list[Article] = []
    skipped: list[SkippedFile] = []
    for path in sorted(directory.iterdir(), key=lambda p: p.name):
        if path.name.startswith(".") or path.is_dir():
            continue
        result = _read_article(path)
        if isinstance(result, Article):
            articles.append(result)
        else:
            logger.warning("Skipping %s: %s", path, result)
            skipped.append(SkippedFile(path=path, reason=result))
    return articles, skipped
