"""The read-only HTTP API (`newswatch api`): stories, search, watches and their alerts, feeds, digests, exports, Atom feeds.

Every request reads the database read-only through the named read functions of `warehouse/` and
`reading/` (the ones the command line and the dashboard use). Requests share one read-only
attachment of the file, which is let go half a second after the last one, or at once when a run
waits for it (`warehouse.connection.share_reads`), so the API runs beside the pipeline's writer:
while a run holds the file, or waits for it, a request waits up to
`NEWSWATCH_API_LOCK_WAIT_SECONDS`, then answers 503 with `Retry-After`. Nothing here writes:
searches read the full-text index as the runs left it and keep the vector index in memory.

Errors are one line of JSON (`{"detail": "..."}`) with a 4xx status for bad requests, 401 for a
missing or wrong token, 404 for what does not exist, 503 while the database cannot be read; never
a traceback. With `NEWSWATCH_API_TOKEN` set, every endpoint but `/health` asks for it
(`Authorization: Bearer TOKEN`, or HTTP Basic with the token as password, for feed readers).

The modules, by noun: `app` (the application, who may use it, `/health`), `errors`, `parameters`
(bounds, times, cursors), `reads` (reading the warehouse per request), `stories` (stories, a
story, search, the Atom feed of a saved search), `watches` (watches, alerts, a watch's Atom feed),
`atom_entries` (stories as Atom entries), `feeds` (feed health), `documents` (digests, exports).
"""

from flows.api.app import create_app, is_loopback, token_accepted

__all__ = ["create_app", "is_loopback", "token_accepted"]
