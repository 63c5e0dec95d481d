"""The Starlette application: the page (static files) and a small JSON API over WebService.

    GET  /                          the page
    GET  /api/info                  sliders and limits
    GET  /api/status                what the models are doing (for the progress line)
    POST /api/photo?name=FILE       body: the photo's bytes -> id and faces
    GET  /api/photo/ID/face/N       a face's thumbnail
    POST /api/predict               JSON parameters -> the child's (or siblings') PNG and sheet
    POST /api/sweep                 JSON parameters -> an age-sweep GIF
    POST /api/anime                 {"run", "seed"} -> that run's anime children in another style
    GET  /files/RUN/NAME            a result file (download)

Model work runs in Starlette's thread pool (WebService queues it behind one lock), so the
event loop stays free to answer /api/status while a photo encodes. Any error becomes
``{"error": message}`` with a 4xx/5xx status: the server itself never stops on bad input.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from babygan.errors import BabyganError, first_line
from babygan.web.service import WebError, WebService

log = logging.getLogger("babygan")

STATIC = Path(__file__).resolve().parent / "static"
MAX_JSON_BYTES = 64 * 1024
# An upload over the limit is still read to its end (a client that is answered before it has
# sent everything sees a reset connection, not our message) but not kept; past this many
# times the limit we stop reading and answer anyway.
DRAIN_FACTOR = 8

Endpoint = Callable[[Request], Awaitable[Response]]


def _errors(endpoint: Endpoint) -> Endpoint:
    """Turn every failure of a request into a JSON error the page can show."""

    @functools.wraps(endpoint)
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except WebError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except BabyganError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except Exception as exc:  # a bug must cost one request, not the server
            log.exception("%s %s failed", request.method, request.url.path)
            return JSONResponse(
                {"error": f"internal error ({type(exc).__name__}: {first_line(exc)})"}, status_code=500
            )

    return wrapped


async def _read_body(request: Request, limit: int, what: str) -> bytes:
    declared = request.headers.get("content-length", "")
    too_big = declared.isdigit() and int(declared) > limit
    data = bytearray()
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            too_big = True
            data.clear()
            if received > DRAIN_FACTOR * limit:
                break
        elif not too_big:
            data += chunk
    if too_big:
        size = int(declared) if declared.isdigit() else received
        raise WebError(
            f"{what} is {size / 2**20:.1f} MB, over the upload limit of {limit / 2**20:.1f} MB", 413
        )
    return bytes(data)


async def _json(request: Request) -> object:
    body = await _read_body(request, MAX_JSON_BYTES, "the request")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebError(f"the request is not valid JSON ({exc})") from exc


def create_app(service: WebService) -> Starlette:
    """The ASGI app serving ``service``."""

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @_errors
    async def info(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(service.info))

    @_errors
    async def status(request: Request) -> Response:
        return JSONResponse(service.status())  # never waits for the lock

    @_errors
    async def photo(request: Request) -> Response:
        name = request.query_params.get("name", "photo")
        data = await _read_body(request, service.max_upload_bytes, name)
        return JSONResponse(await run_in_threadpool(service.add_photo, data, name))

    @_errors
    async def face(request: Request) -> Response:
        path = service.face_thumb(request.path_params["photo"], request.path_params["index"])
        return FileResponse(path)

    @_errors
    async def predict(request: Request) -> Response:
        params = await _json(request)
        return JSONResponse(await run_in_threadpool(service.predict, params))  # type: ignore[arg-type]

    @_errors
    async def sweep(request: Request) -> Response:
        params = await _json(request)
        return JSONResponse(await run_in_threadpool(service.sweep, params))  # type: ignore[arg-type]

    @_errors
    async def anime(request: Request) -> Response:
        params = await _json(request)
        return JSONResponse(await run_in_threadpool(service.restyle, params))  # type: ignore[arg-type]

    @_errors
    async def files(request: Request) -> Response:
        path = service.result_file(request.path_params["run"], request.path_params["name"])
        download = request.query_params.get("download")
        return FileResponse(path, filename=path.name if download else None)

    routes = [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/status", status),
        Route("/api/photo", photo, methods=["POST"]),
        Route("/api/photo/{photo}/face/{index:int}", face),
        Route("/api/predict", predict, methods=["POST"]),
        Route("/api/sweep", sweep, methods=["POST"]),
        Route("/api/anime", anime, methods=["POST"]),
        Route("/files/{run}/{name}", files),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes)
