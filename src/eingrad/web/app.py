"""The playground's ASGI app (Starlette): the page, its static files, and the JSON API.

``GET /`` the page; ``GET /static/...`` its script, style and KaTeX;
``GET /api/examples`` the menu; ``POST /api/parse`` a program's inputs and
targets; ``POST /api/derive`` everything the page shows (docs/web.md).  Work
runs in :class:`~eingrad.web.workers.WorkerPool` processes under a time limit;
request bodies are limited in size.  Nothing from a request is evaluated here.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .examples import EXAMPLES
from .workers import Busy, TimeLimit, WorkerDied, WorkerPool

__all__ = ["MAX_BODY_BYTES", "STATIC", "create_app"]

STATIC = pathlib.Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 64 * 1024

# The page loads only its own files: no inline script, no other origin (KaTeX sets inline styles).
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _error(status: int, kind: str, message: str, hint: str | None = None) -> JSONResponse:
    body = {"type": kind, "message": message, "line": None, "column": None, "end_line": None,
            "end_column": None, "hint": hint}
    return JSONResponse({"error": body}, status_code=status, headers=HEADERS)


class _TooLarge(Exception):
    pass


async def _read_json(request: Request, limit: int) -> Any:
    """The body as JSON; :class:`_TooLarge` past ``limit`` bytes (read no further), ValueError if not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return json.loads(body.decode("utf-8"))


def create_app(workers: int = 2, time_limit: float = 10.0, max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    """The app, with ``workers`` worker processes, ``time_limit`` seconds per request and bodies
    of at most ``max_body_bytes``."""
    pool = WorkerPool(size=workers, time_limit=time_limit)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await pool.start()
        try:
            yield
        finally:
            await pool.close()

    async def job(request: Request, kind: str, field: str | None = None) -> Response:
        try:
            payload = await _read_json(request, max_body_bytes)
        except _TooLarge:
            return _error(413, "RequestTooLarge", f"the request body is larger than {max_body_bytes} bytes",
                          hint="the playground takes programs of a few lines")
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            return _error(400, "RequestError", f"the request body is not JSON: {err}",
                          hint='send {"program": "...", "wrt": ["W"]} with Content-Type application/json')
        if field is not None:
            if not isinstance(payload, dict) or field not in payload:
                return _error(400, "RequestError", f"the request body must be a JSON object with {field!r}")
            payload = payload[field]
        try:
            status, result = await pool.run(kind, payload)
        except TimeLimit:
            return _error(504, "TimeLimitError", f"the request took longer than {pool.time_limit:g} s and was stopped",
                          hint="try a lower order or fewer inputs in wrt")
        except Busy:
            return _error(503, "BusyError", "the server is busy with other requests; try again in a moment")
        except WorkerDied as err:
            return _error(500, "WorkerDied", f"{err} (out of memory?)", hint="try a smaller request")
        if status == "ok":
            return JSONResponse(result, headers=HEADERS)
        return JSONResponse({"error": result}, status_code=400 if status == "error" else 500, headers=HEADERS)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={**HEADERS, "Cache-Control": "no-cache"})

    async def derive(request: Request) -> Response:
        return await job(request, "derive")

    async def parse(request: Request) -> Response:
        return await job(request, "parse", field="program")

    async def examples(request: Request) -> Response:
        return JSONResponse(EXAMPLES, headers=HEADERS)

    routes = [
        Route("/", index),
        Route("/api/derive", derive, methods=["POST"]),
        Route("/api/parse", parse, methods=["POST"]),
        Route("/api/examples", examples),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.pool = pool
    return app
