"""The annotation page's web server: a Starlette application over an :class:`~xmem.app.annotator.Annotator`.

Safety, as Jupyter does it: every request carries the token printed with the URL (a header, the
``token`` query parameter, or the cookie the page gets when it is opened with ``?token=``); requests that
change anything must carry it in the ``X-XMem-Token`` header, so a cookie alone never suffices. The Host
header must name this machine (against DNS rebinding). Bodies are JSON of at most 1 MiB, validated field by
field; a bad request gets a 4xx answer ``{"error": "..."}``, never a stack trace. The server reads only
the video (through the session) and its own static files, and writes only the workspace.

Endpoints (``{i}``: a frame index, ``{id}``: an object id)::

    GET    /                          the page            GET  /api/session         the session's state
    GET    /api/frames/{i}.jpg?width=  a frame, scaled     GET  /api/masks/{i}.png   its index mask (grey PNG)
    POST   /api/frames/{i}/clicks     {object, points, labels}      POST /api/frames/{i}/box  {object, box}
    POST   /api/frames/{i}/brush      {object, points, radius, erase}
    POST   /api/frames/{i}/undo       POST /api/frames/{i}/redo
    POST   /api/objects {name}        PATCH /api/objects/{id} {name, colour}   DELETE /api/objects/{id}
    POST   /api/propagate {frame, direction}   POST /api/cancel   POST /api/export {alpha, overlay}
    GET    /api/export/{file}         a file of the last export (xmem-export.zip, overlay.mp4, summary.json)
    GET    /api/events                progress as Server-Sent Events
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from xmem.app.annotator import Annotator, Busy, MainThreadRunner
from xmem.interactive.export import OVERLAY_NAME, SUMMARY_NAME, ZIP_NAME, ExportOptions
from xmem.interactive.session import Direction

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # bytes of a request body
TOKEN_HEADER = "x-xmem-token"
COOKIE = "xmem-token"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
DOWNLOADS = {ZIP_NAME: "application/zip", OVERLAY_NAME: "video/mp4", SUMMARY_NAME: "application/json"}


class ApiError(Exception):
    """An answer with a status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ServerConfig:
    """Who may talk to the server: the token, and the names the Host header may give (with any port)."""

    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    allowed_hosts: tuple[str, ...] = LOCAL_HOSTS


def allowed_hosts_for(bind: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The Host names accepted when listening on ``bind``: this machine's loopback names, the address
    bound (unless it is a wildcard) and ``extra``."""
    hosts = list(LOCAL_HOSTS)
    if bind not in ("0.0.0.0", "::", ""):
        hosts.append(bind)
    hosts.extend(extra)
    return tuple(dict.fromkeys(h.lower().strip("[]") for h in hosts))


def _host_name(header: str) -> str:
    """The name of a Host header without its port (``[::1]:8000`` -> ``::1``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


# -- the guard: Host and token, before any route ---------------------------------------------------------
class Guard:
    """ASGI middleware: refuses a foreign Host (403) and a request without the token (401; 403 for a
    change carried by the cookie alone); turns ``/?token=...`` into the cookie and a redirect to ``/``."""

    def __init__(self, app, config: ServerConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = _host_name(headers.get("host", ""))
        if host not in self.config.allowed_hosts:
            await _error(
                403,
                f"host {host!r} is not allowed (this server answers to "
                f"{', '.join(self.config.allowed_hosts)}; see --allow-host)",
            )(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        in_header = headers.get(TOKEN_HEADER) or _bearer(headers.get("authorization", ""))
        in_query = (query.get("token") or [None])[0]
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header: as if none
            cookie = SimpleCookie()
        in_cookie = cookie[COOKIE].value if COOKIE in cookie else None
        ok = self._matches
        method, path = scope["method"], scope["path"]
        if method in ("GET", "HEAD"):
            if path == "/" and ok(in_query):
                response = RedirectResponse("/", status_code=303)
                response.set_cookie(COOKIE, self.config.token, httponly=True, samesite="strict")
                await response(scope, receive, send)
                return
            if ok(in_header) or ok(in_query) or ok(in_cookie):
                await self.app(scope, receive, send)
                return
            if path == "/":
                await HTMLResponse(_LOGIN_PAGE, status_code=401)(scope, receive, send)
                return
            await _error(401, "missing or wrong token: open the URL the server printed")(scope, receive, send)
            return
        if ok(in_header) or ok(in_query):
            await self.app(scope, receive, send)
            return
        status = 403 if ok(in_cookie) else 401
        await _error(status, f"a change needs the token in the {TOKEN_HEADER} header")(scope, receive, send)

    def _matches(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.config.token.encode())


def _bearer(value: str) -> str | None:
    scheme, _, rest = value.partition(" ")
    return rest.strip() if scheme.lower() in ("bearer", "token") and rest.strip() else None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


_LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>xmem annotate: token</title>
<style>body{font:15px system-ui,sans-serif;margin:4em auto;max-width:32em;color:#222}input{font:inherit;width:100%;
padding:.4em;margin:.5em 0}button{font:inherit;padding:.4em 1.2em}</style></head><body>
<h1>xmem annotate</h1><p>This page needs the token that <code>xmem annotate</code> printed with its URL.</p>
<form method="get" action="/"><label>Token <input name="token" autofocus autocomplete="off"></label>
<button>Open</button></form></body></html>"""


# -- request parsing -----------------------------------------------------------------------------------
async def _json_body(request: Request, allowed: set[str]) -> dict:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        raise ApiError(413, f"the request body is larger than {MAX_BODY} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise ApiError(413, f"the request body is larger than {MAX_BODY} bytes")
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(unknown)} (expected: {', '.join(sorted(allowed))})")
    return data


def _int(data: dict, key: str, *, required: bool = True, default: int | None = None) -> int:
    value = data.get(key, default)
    if value is None and not required:
        return default  # type: ignore[return-value]
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(400, f"{key}: an integer is required, got {json.dumps(value)[:40]}")
    return value


def _number(value: object, what: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
        raise ApiError(400, f"{what}: a number is required, got {json.dumps(value)[:40]}")
    return float(value)


def _points(data: dict, key: str = "points") -> list[list[float]]:
    value = data.get(key)
    if not isinstance(value, list) or not value:
        raise ApiError(400, f"{key}: a non-empty list of [x, y] pairs is required")
    out = []
    for point in value:
        if not isinstance(point, list) or len(point) != 2:
            raise ApiError(400, f"{key}: every point is an [x, y] pair, got {json.dumps(point)[:40]}")
        out.append([_number(point[0], key), _number(point[1], key)])
    return out


def _frame(request: Request) -> int:
    return int(request.path_params["index"])


# -- routes ----------------------------------------------------------------------------------------------
def create_app(annotator: Annotator, config: ServerConfig | None = None) -> Guard:
    """The ASGI application (wrapped in its :class:`Guard`) serving ``annotator``."""
    config = config or ServerConfig()
    static = resources.files("xmem.app") / "static"
    page = (static / "index.html").read_text(encoding="utf-8").replace("{{TOKEN}}", config.token)

    def threaded(fn: Callable[..., object]) -> Callable[..., Awaitable[object]]:
        async def call(*args, **kwargs):
            return await run_in_threadpool(fn, *args, **kwargs)

        return call

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def static_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:  # a fixed list: nothing else is ever read
            raise ApiError(404, f"no file {name!r}")
        return Response((static / name).read_bytes(), media_type=STATIC[name])

    async def session(request: Request) -> Response:
        return JSONResponse(annotator.info())

    async def frame(request: Request) -> Response:
        width = request.query_params.get("width")
        if width is not None and not width.isdigit():
            raise ApiError(400, f"width: a positive integer is required, got {width[:20]!r}")
        data = await threaded(annotator.frame_jpeg)(_frame(request), None if width is None else int(width))
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    async def mask(request: Request) -> Response:
        index = _frame(request)
        annotator.check_frame(index)
        data = await threaded(annotator.mask_png)(index)
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def clicks(request: Request) -> Response:
        data = await _json_body(request, {"object", "points", "labels"})
        points = _points(data)
        labels = data.get("labels")
        if not isinstance(labels, list) or len(labels) != len(points) or any(v not in (0, 1) for v in labels):
            raise ApiError(400, "labels: one 0 (background) or 1 (object) per point")
        labels = [int(v) for v in labels]
        await threaded(annotator.clicks)(_frame(request), _int(data, "object"), points, labels)
        return JSONResponse(annotator.info())

    async def box(request: Request) -> Response:
        data = await _json_body(request, {"object", "box"})
        value = data.get("box")
        if not isinstance(value, list) or len(value) != 4:
            raise ApiError(400, "box: [x0, y0, x1, y1] is required")
        corners = [_number(v, "box") for v in value]
        await threaded(annotator.box)(_frame(request), _int(data, "object"), corners)
        return JSONResponse(annotator.info())

    async def brush(request: Request) -> Response:
        data = await _json_body(request, {"object", "points", "radius", "erase"})
        erase = data.get("erase", False)
        if not isinstance(erase, bool):
            raise ApiError(400, "erase: true or false")
        radius = _number(data.get("radius"), "radius")
        await threaded(annotator.brush)(
            _frame(request), _int(data, "object"), _points(data), radius, erase=erase
        )
        return JSONResponse(annotator.info())

    async def undo(request: Request) -> Response:
        await _json_body(request, set())
        await threaded(annotator.undo)(_frame(request))
        return JSONResponse(annotator.info())

    async def redo(request: Request) -> Response:
        await _json_body(request, set())
        await threaded(annotator.redo)(_frame(request))
        return JSONResponse(annotator.info())

    async def add_object(request: Request) -> Response:
        data = await _json_body(request, {"name"})
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            raise ApiError(400, "name: a string is required")
        obj_id = await threaded(annotator.add_object)(name)
        return JSONResponse({"id": obj_id, **annotator.info()}, status_code=201)

    async def update_object(request: Request) -> Response:
        data = await _json_body(request, {"name", "colour"})
        name, colour = data.get("name"), data.get("colour")
        if name is not None and not isinstance(name, str):
            raise ApiError(400, "name: a string is required")
        if colour is not None and (
            not isinstance(colour, list) or len(colour) != 3 or not all(isinstance(c, int) for c in colour)
        ):
            raise ApiError(400, "colour: [r, g, b] integers 0-255 are required")
        await threaded(annotator.update_object)(int(request.path_params["obj"]), name=name, colour=colour)
        return JSONResponse(annotator.info())

    async def delete_object(request: Request) -> Response:
        await threaded(annotator.delete_object)(int(request.path_params["obj"]))
        return JSONResponse(annotator.info())

    async def propagate(request: Request) -> Response:
        data = await _json_body(request, {"frame", "direction"})
        raw = data.get("direction", "forward")
        try:
            direction = Direction(raw)
        except ValueError:
            raise ApiError(400, f"direction: forward, backward or both, got {json.dumps(raw)[:40]}") from None
        job = annotator.start_propagation(_int(data, "frame"), direction)
        return JSONResponse({"job": job.to_json()}, status_code=202)

    async def cancel(request: Request) -> Response:
        job = annotator.cancel()
        return JSONResponse({"job": None if job is None else job.to_json()})

    async def export(request: Request) -> Response:
        data = await _json_body(request, {"alpha", "overlay"})
        flags = {k: data.get(k, True) for k in ("alpha", "overlay")}
        for key, value in flags.items():
            if not isinstance(value, bool):
                raise ApiError(400, f"{key}: true or false")
        job = annotator.start_export(ExportOptions(alpha=flags["alpha"], overlay=flags["overlay"]))
        return JSONResponse({"job": job.to_json(), "folder": str(annotator.export_folder)}, status_code=202)

    async def download(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in DOWNLOADS:  # a fixed list inside the export folder: no path from the request is used
            raise ApiError(404, f"no export file {name!r} (files: {', '.join(DOWNLOADS)})")
        path = annotator.export_folder / name
        if not path.is_file():
            raise ApiError(404, f"{name}: not exported yet (export first)")
        return FileResponse(path, media_type=DOWNLOADS[name], filename=name)

    async def events(request: Request) -> Response:
        async def stream():
            last = None
            quiet = 0.0
            yield "retry: 1000\n\n"
            while True:
                status = annotator.status()
                if status != last:
                    last = status
                    quiet = 0.0
                    yield f"data: {json.dumps(status)}\n\n"
                elif quiet > 15:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.05)
                quiet += 0.05

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    routes = [
        Route("/", index),
        Route("/static/{name}", static_file),
        Route("/api/session", session),
        Route("/api/frames/{index:int}.jpg", frame),
        Route("/api/masks/{index:int}.png", mask),
        Route("/api/frames/{index:int}/clicks", clicks, methods=["POST"]),
        Route("/api/frames/{index:int}/box", box, methods=["POST"]),
        Route("/api/frames/{index:int}/brush", brush, methods=["POST"]),
        Route("/api/frames/{index:int}/undo", undo, methods=["POST"]),
        Route("/api/frames/{index:int}/redo", redo, methods=["POST"]),
        Route("/api/objects", add_object, methods=["POST"]),
        Route("/api/objects/{obj:int}", update_object, methods=["PATCH"]),
        Route("/api/objects/{obj:int}", delete_object, methods=["DELETE"]),
        Route("/api/propagate", propagate, methods=["POST"]),
        Route("/api/cancel", cancel, methods=["POST"]),
        Route("/api/export", export, methods=["POST"]),
        Route("/api/export/{name}", download),
        Route("/api/events", events),
    ]

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error(exc.status, exc.message)

    async def bad_value(request: Request, exc: Exception) -> Response:
        return _error(400, str(exc).splitlines()[0] if str(exc) else "bad request")

    async def busy(request: Request, exc: Exception) -> Response:
        return _error(409, str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, exc.detail if isinstance(exc.detail, str) else "error")

    async def internal(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal error; the server's log has the details")

    app = Starlette(
        routes=routes,
        exception_handlers={
            ApiError: api_error,
            ValueError: bad_value,
            Busy: busy,
            HTTPException: http_error,
            Exception: internal,
        },
    )
    return Guard(app, config)


class WorkspaceInUse(RuntimeError):
    """Another process serves the workspace."""


@contextlib.contextmanager
def hold_workspace(folder: Path) -> Iterator[None]:
    """Hold ``folder/.lock`` while serving, so that a second server on the same workspace is refused (the
    lock goes with the process, however it ends). Where file locks are unavailable, nothing is held."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    with open(folder / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise WorkspaceInUse(
                f"{folder}: in use by {owner}; stop that server or use another workspace"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"xmem annotate (pid {os.getpid()})\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: any free port); raises OSError when it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    return sock


def serve(annotator: Annotator, sock: socket.socket, config: ServerConfig) -> None:
    """Serve on the bound ``sock`` until Ctrl-C (or SIGTERM). The web server runs on a thread; propagations
    and exports run on this (the main) thread, where PyTorch is fastest. A running job is cancelled on the
    way out; every mask it wrote is whole."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(create_app(annotator, config), log_level="warning", timeout_graceful_shutdown=2)
    )
    runner = MainThreadRunner()
    annotator.runner = runner
    web = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="xmem-web", daemon=True)

    def stop(signum, frame) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    web.start()
    try:
        runner.run(keep_going=web.is_alive)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        annotator.cancel()
        server.should_exit = True
        web.join(10)
        sock.close()


def page_url(host: str, port: int, token: str) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    shown = f"[{shown}]" if ":" in shown and not shown.startswith("[") else shown
    return f"http://{shown}:{port}/?token={token}"


__all__ = [
    "ApiError",
    "Guard",
    "ServerConfig",
    "allowed_hosts_for",
    "bind",
    "create_app",
    "page_url",
    "serve",
]
