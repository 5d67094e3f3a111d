"""Secrets in notification URLs and in the log lines Apprise writes while it delivers.

A notification URL holds credentials (passwords, tokens, keys, token-like path segments, query
values). `url_secrets` finds them in the URL's text; `monitoring.notification_urls` adds what
Apprise's plugin marks private and shows URLs masked (`mask_url`).

Logging: Apprise logs through the `apprise` logger (and HTTP through `urllib3`). Inside `captured`
(each delivery attempt, and every parse of a URL), a filter on those loggers rewrites every record
from the same thread with the URL's secrets replaced by `****` (exception tracebacks folded into one
masked line), at every level, so no handler ever sees them; the WARNING-or-worse lines are kept,
masked, for the caller (`monitoring.delivery` reports the last one as the attempt's error).
"""

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, unquote

from monitoring.markup import plain_text

MASK = "****"
# Query arguments whose values are settings, not secrets; every other value is masked on display.
PUBLIC_ARGUMENTS = frozenset({
    "auth", "avatar", "batch", "bcc", "blocks", "cc", "content", "cto", "detect", "emojis",
    "fields", "footer", "footer_logo", "format", "from", "image", "mdv", "method", "mode", "name",
    "optional", "overflow", "pa", "port", "preview", "priority", "redirect", "retry", "rto",
    "silent", "smtp", "store", "timestamp", "to", "tts", "tz", "verify", "wait", "wrap",
})
_TOKEN_LIKE = re.compile(r"^(?=.*[0-9])(?=.*[A-Za-z]).{8,}$|^.{16,}$")

_capture_state = threading.local()
_filter_lock = threading.Lock()
_filter_installed = False
_MASKED_LOGGERS = ("apprise", "urllib3.connection", "urllib3.connectionpool", "urllib3.poolmanager",
                   "urllib3.util.retry")


class _Capture:
    """The secrets to hide in this thread's log records, and the last error line seen."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = secrets
        self.errors: list[str] = []  # WARNING and worse, masked, oldest first

    @property
    def last_error(self) -> str | None:
        """The last warning or error line, or None."""
        return self.errors[-1] if self.errors else None


class _MaskingFilter(logging.Filter):
    """Rewrites records logged during a capture in the same thread, secrets replaced by ****."""

    def filter(self, record: logging.LogRecord) -> bool:
        capture: _Capture | None = getattr(_capture_state, "capture", None)
        if capture is None:
            return True
        try:
            text = record.getMessage()
        except Exception:  # bad format arguments must not break the plugin that logged them
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        masked = hide(text, capture.secrets)
        # Rewrite in place: handlers (and parent loggers' handlers) only ever see the masked text.
        record.msg, record.args = masked, ()
        record.exc_info = record.exc_text = record.stack_info = None
        if record.levelno >= logging.WARNING and plain_text(masked):
            capture.errors.append(plain_text(masked)[:300])
        return True


def _install_filter() -> None:
    """Put one permanent masking filter on Apprise's loggers (adding and removing per call would race)."""
    global _filter_installed
    with _filter_lock:
        if not _filter_installed:
            masking = _MaskingFilter()
            for name in _MASKED_LOGGERS:
                logging.getLogger(name).addFilter(masking)
            _filter_installed = True


@contextmanager
def captured(secrets: list[str]) -> Iterator[_Capture]:
    """Mask this thread's Apprise log records for the duration of the block."""
    _install_filter()
    capture, outer = _Capture(secrets), getattr(_capture_state, "capture", None)
    _capture_state.capture = capture
    try:
        yield capture
    finally:
        _capture_state.capture = outer


def hide(text: str, secrets: list[str]) -> str:
    """The text with every secret (and its percent-encoded form) replaced by ****."""
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            if form:
                text = text.replace(form, MASK)
    return text


def url_scheme(url: str) -> str:
    """The URL's scheme in lower case, or "" when it has none."""
    scheme, separator, _ = url.partition("://")
    scheme = scheme.strip()
    return scheme.lower() if separator and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme) else ""


def query_arguments(query: str) -> list[tuple[str, str]]:
    """(key, value) pairs of a query string; unlike parse_qsl a "+" stays a "+" (`+Header=value`)."""
    pairs = []
    for argument in query.split("&"):
        if argument:
            key, _, value = argument.partition("=")
            pairs.append((unquote(key), unquote(value)))
    return pairs


_URL_PARTS = re.compile(r"^[^:/?#]*://(?P<authority>[^/?#]*)(?P<path>[^?#]*)(?:\?(?P<query>[^#]*))?")


def url_secrets(url: str) -> list[str]:
    """Parts of a URL's text that may be secret: password, token-like user and path parts, query values."""
    parts = _URL_PARTS.match(url)
    if parts is None:
        return [url]
    candidates: list[str] = []
    userinfo, at, _ = parts["authority"].rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if colon:
            candidates.append(password)
        if not colon or _TOKEN_LIKE.match(unquote(user)):
            candidates.append(user)  # a user without a password is often a token (ntfy://tk_...@host)
    segments = re.split(r"[/,]", parts["path"])
    candidates += [segment for segment in segments if _TOKEN_LIKE.match(unquote(segment))]
    for key, value in query_arguments(parts["query"] or ""):
        if value and (key[:1] in "+-:" or key.lower() not in PUBLIC_ARGUMENTS):
            candidates.append(value)
    return candidates
