"""Read a directory of saved articles (plain text or HTML) into `Article` objects."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from extract.content import Article, article_from_html, article_from_text

logger = logging.getLogger(__name__)

_TEXT_SUFFIXES = {".txt"}
_HTML_SUFFIXES = {".html", ".htm"}

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
# What a file that is not a regular one is, for the reason it is skipped (reading a FIFO would hang).
_FILE_KINDS = {
    stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket",
}


@dataclass(frozen=True)
class SkippedFile:
    """A file in a fixture directory that did not become an article, and why."""

    path: Path
    reason: str


def _too_large(size: str, max_bytes: int) -> str:
    return f"too large: {size} bytes, limit {max_bytes:,} (NEWSWATCH_FIXTURE_MAX_BYTES)"


def _not_regular(mode: int) -> str:
    return f"not a regular file ({_FILE_KINDS.get(stat.S_IFMT(mode), 'special file')})"


def read_bounded(path: Path, max_bytes: int) -> bytes | str:
    """The bytes of a regular file of at most `max_bytes`, or a short reason why not.

    The file is opened once and everything is decided on that descriptor, so swapping the file
    after the checks changes nothing; at most `max_bytes` + 1 bytes are ever read.
    """
    try:
        if not stat.S_ISREG(mode := os.stat(path).st_mode):
            return _not_regular(mode)  # never opened: opening a device can have side effects
        # O_NOFOLLOW: `path` is already resolved, so a link here was put in after the checks.
        # O_NONBLOCK: a FIFO swapped in after the stat must not block the open.
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        return f"cannot be read: {error.strerror or error}"
    with os.fdopen(descriptor, "rb") as file:
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode):
            return _not_regular(status.st_mode)
        if status.st_size > max_bytes:
            return _too_large(f"{status.st_size:,}", max_bytes)
        pieces, size = [], 0
        try:
            # Its size first (allocating no more than that), then whatever it grew by, if anything.
            while size <= max_bytes:
                piece = file.read(min(max(status.st_size + 1 - size, 1 << 16), max_bytes + 1 - size))
                if not piece:
                    break
                pieces.append(piece)
                size += len(piece)
        except OSError as error:
            return f"cannot be read: {error.strerror or error}"
    if size > max_bytes:  # it grew after the size check
        return _too_large(f"more than {max_bytes:,}", max_bytes)
    return b"".join(pieces)


def _read_article(path: Path, folder: Path, max_bytes: int) -> Article | str:
    """The article in one file, or a short reason why there is none."""
    suffix = path.suffix.lower()
    if suffix not in _TEXT_SUFFIXES | _HTML_SUFFIXES:
        return f"unsupported extension {suffix}" if suffix else "no file extension"
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop (Python 3.11)
        return f"cannot be read: {error}"
    if not resolved.is_relative_to(folder):
        return "link to outside the folder"
    data = read_bounded(resolved, max_bytes)
    if isinstance(data, str):
        return data
    if not data.strip():
        return "empty file"
    if b"\x00" in data:
        return "binary file"
    url = resolved.as_uri()
    if suffix in _HTML_SUFFIXES:
        return article_from_html(data, url) or "no extractable text in HTML"
    try:
        raw = data.decode("utf-8-sig")  # tolerate the byte-order mark some editors write
    except UnicodeDecodeError:
        return "not UTF-8 text"
    article = article_from_text(raw, url)
    return article if article.text else "no text left after cleaning"


def read_fixture_dir(directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[list[Article], list[SkippedFile]]:
    """Read every article file directly inside a directory (`fixture_files`, then `read_fixture_files`).

    Raises:
        FileNotFoundError: The directory does not exist.
        NotADirectoryError: The path exists but is not a directory.
    """
    return read_fixture_files(fixture_files(directory), directory, max_bytes=max_bytes)


def fixture_files(directory: Path) -> list[Path]:
    """The files directly inside a directory that may hold articles, in name order (runs are deterministic).

    Hidden files and subdirectories are left out; nothing is read yet, so a folder of any size
    can be read a batch at a time.

    Raises:
        FileNotFoundError: The directory does not exist.
        NotADirectoryError: The path exists but is not a directory.
    """
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"Fixture directory {directory} does not exist.")
    if not directory.is_dir():
        raise NotADirectoryError(f"Fixture path {directory} is not a directory.")
    return [
        path for path in sorted(directory.iterdir(), key=lambda p: p.name)
        if not path.name.startswith(".") and not path.is_dir()
    ]


def read_fixture_files(
    paths: list[Path], directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[list[Article], list[SkippedFile]]:
    """Read article files of a directory (see `fixture_files`).

    ``.txt`` files go through `article_from_text`, ``.html``/``.htm`` files through
    `article_from_html`. A bad file is skipped with a warning, never raised: one larger than
    `max_bytes` (judged by its size before reading), a link to a file outside the directory (a
    link to another file inside it is read), or anything but a regular file (a FIFO, a device,
    a socket).

    Args:
        paths: Files inside `directory`.
        directory: The folder they are read from; links may not lead out of it.
        max_bytes: Largest file read; a larger one is skipped unread.

    Returns:
        The articles, and the files that were skipped with the reason for each.
    """
    folder = Path(directory).resolve()
    articles: list[Article] = []
    skipped: list[SkippedFile] = []
    for path in paths:
        result = _read_article(path, folder, max_bytes)
        if isinstance(result, Article):
            articles.append(result)
        else:
            logger.warning("Skipping %s: %s", path, result)
            skipped.append(SkippedFile(path=path, reason=result))
    return articles, skipped
