"""The API application: who may use it (loopback addresses, the token), `/health`, and its routes in order."""

import base64
import binascii
import hmac
import ipaddress

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from flows.api.documents import document_routes
from flows.api.errors import ApiError, add_error_handlers
from flows.api.feeds import feed_routes
from flows.api.reads import WarehouseReads
from flows.api.stories import story_routes
from flows.api.watches import watch_routes
from flows.settings import Settings
from warehouse.connection import share_reads


def is_loopback(host: str) -> bool:
    """Whether an address to listen on reaches only this machine (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def token_accepted(authorization: str | None, token: str) -> bool:
    """Whether an `Authorization` header carries the token: `Bearer TOKEN`, or Basic with TOKEN as the password.

    The comparison takes the same time wherever the two differ (`hmac.compare_digest`).
    """
    expected = token.encode("utf-8")
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        offered = credentials.encode("utf-8", "replace")
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return False
        offered = decoded.partition(b":")[2]
    else:
        return False
    return hmac.compare_digest(offered, expected)


def create_app(settings: Settings) -> FastAPI:
    """The API over the warehouse `settings.db`, asking for `settings.api_token` when one is set.

    Args:
        settings: The settings (database, memory limit, lock wait, token).

    Returns:
        A FastAPI application; serve it with uvicorn (`newswatch api`).
    """
    token = settings.api_token.get_secret_value() if settings.api_token is not None else None
    read = WarehouseReads(settings)
    # Every read of the warehouse in this process, the searches' included, shares one DuckDB
    # instance: starting one per request cost 20-40 ms, more than most of the reads themselves.
    share_reads(settings.db, settings.duckdb_memory_limit)
    app = FastAPI(
        title="newswatch",
        version="1",
        summary="Read-only access to the stories, articles, watches, alerts, feeds and digests of a newswatch warehouse.",
        description="Times are ISO 8601 with their zone; field names are the warehouse's columns (docs/schema.md). "
                    "Errors are `{\"detail\": \"one line\"}`. See docs/api.md.",
    )
    add_error_handlers(app)

    def check_token(request: Request) -> None:
        if token is not None and not token_accepted(request.headers.get("authorization"), token):
            raise ApiError(401, "this API needs its token: send `Authorization: Bearer TOKEN`",
                           {"WWW-Authenticate": 'Bearer realm="newswatch", Basic realm="newswatch"'})

    @app.get("/health", tags=["service"])
    def health() -> JSONResponse:
        """Whether the API is up and can read its database ("busy" while a run holds it); never asks for the token."""
        try:
            read(lambda connection: None, lock_wait=0)
        except ApiError as error:
            if error.status == 503 and "Retry-After" in error.headers:
                return JSONResponse({"status": "ok", "database": "busy"})
            return JSONResponse({"status": "unavailable", "database": "unreadable" if settings.db.exists() else "missing"},
                                status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    # In this order in the OpenAPI description; every route but /health asks for the token.
    for routes in (story_routes, watch_routes, feed_routes, document_routes):
        app.include_router(routes(read), dependencies=[Depends(check_token)])
    return app
