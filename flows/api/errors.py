"""How the API answers what it cannot answer with data: one line of JSON, never a traceback."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """A request that cannot be answered with data: its status, one-line message and headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def add_error_handlers(app: FastAPI) -> None:
    """Answer `ApiError`, bad parameters, HTTP errors and anything unexpected as `{"detail": "one line"}`."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"detail": error.message}, status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_parameter(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part not in ("query", "path", "header", "body")]
        name = location[0] if location else "request"
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ").splitlines()[0]
        return JSONResponse({"detail": f"invalid parameter {name}: {message}"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(error.detail).splitlines()[0]}, status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("the API failed on %s", request.url.path)
        return JSONResponse({"detail": f"internal error ({type(error).__name__}); see the server's log"}, status_code=500)
