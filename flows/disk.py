"""A full disk or a read-only one, told apart from other failures, whichever library hit it.

DuckDB, faiss and tantivy each report a failed write in their own way (an IO Error, a
RuntimeError, an OSError); a run stops on any of them in one sentence that names the cause.
"""

import errno

_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}
# The same causes as the libraries word them in their messages.
_MESSAGES = {
    "no space left on device": _CAUSES[errno.ENOSPC],
    "disk quota exceeded": _CAUSES[errno.EDQUOT],
    "read-only file system": _CAUSES[errno.EROFS],
    "permission denied": _CAUSES[errno.EACCES],
}


def disk_failure(error: BaseException | None) -> str | None:
    """Why a write failed when it failed for want of space or permission (following the causes); else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _CAUSES:
            return _CAUSES[error.errno]
        message = str(error).lower()
        for fragment, cause in _MESSAGES.items():
            if cause and fragment in message:
                return cause
        error = error.__cause__ or error.__context__
    return None
