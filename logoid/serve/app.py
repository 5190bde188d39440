"""The HTTP API (``/v1``) and the web page (``/``) over one warm :class:`~logoid.serve.service.Service`.

Every answer is JSON built by the library (``answer_json``: exactly what ``logoid query --json`` prints); every
error is ``{"error": {"status", "code", "message", "hint"}}`` with a status that fits (400 unreadable image,
401/403 token, 404, 413 too large, 415 not an image, 422 bad parameter, 503 not warm yet) and never a traceback.
Uploaded photos are decoded from memory and never written to the home. OpenAPI documentation: ``/docs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import io
import logging
import re
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from logoid import __version__, error_json
from logoid.catalog.imagecheck import check_reference
from logoid.core.errors import CatalogError, ConfigError, ImageError, LogoidError
from logoid.core.imageio import load_image, load_image_bytes
from logoid.core.locks import LockTimeout
from logoid.identify.answer import batch_summary

from .service import Limits, Service, parse_channels

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("logoid.serve")

_STATUS_OF_IMAGE_ERROR = {"too_large": (413, "too_large"), "not_image": (415, "not_image"),
                          "unreadable": (400, "unreadable_image")}


class ApiError(Exception):
    """An error answer: HTTP status, a stable code, a one-line message and the fix."""

    def __init__(self, status: int, code: str, message: str, hint: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.hint, self.headers = status, code, message, hint, headers

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"status": self.status, "code": self.code, "message": self.message,
                                       "hint": self.hint}}, status_code=self.status, headers=self.headers)


def api_error(e: LogoidError) -> ApiError:
    """The HTTP form of a library error (the message without the hint, which has a field of its own)."""
    msg = str(e.args[0]) if e.args else str(e)
    if isinstance(e, ImageError):
        status, code = _STATUS_OF_IMAGE_ERROR.get(e.kind, (400, "unreadable_image"))
        return ApiError(status, code, msg, e.hint)
    if isinstance(e, ConfigError):
        return ApiError(422, "bad_parameter", msg, e.hint)
    if isinstance(e, LockTimeout):
        return ApiError(503, "busy", msg, e.hint)
    return ApiError(400, "bad_request", msg, e.hint)


ERRORS: dict[int | str, dict[str, Any]] = {  # documented in the OpenAPI page
    400: {"description": "unreadable image or bad request"}, 413: {"description": "a file over the size or pixel limit"},
    415: {"description": "not an image"}, 422: {"description": "bad parameters"},
    503: {"description": "not warm yet"},
}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {401: {"description": "no token sent"}, 403: {"description": "wrong token, or a read-only server"},
                **ERRORS}


# Parameter types (module level: FastAPI resolves the annotations by name).
Flag = Annotated[bool | None, Form(description="form field or query parameter")]
Limit = Annotated[int, Query(ge=1, le=500, description="items per page")]
Offset = Annotated[int, Query(ge=0, description="items to skip")]


def create_app(service: Service, *, warm: bool = True, on_ready=None) -> FastAPI:
    """The ASGI app over ``service``. With ``warm``, starting the app starts warming the service in the
    background (the API answers 503 until it is ready; ``on_ready(service)`` is called then)."""

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if warm and not service.ready:
            threading.Thread(target=_warm, args=(service, on_ready), name="logoid-warm", daemon=True).start()
        yield
        service.close()

    app = FastAPIOffline(
        lifespan=lifespan,
        title="logoid", version=__version__, favicon_url="/static/favicon.svg",
        description="Recognise band logos and album covers in photos. Answers follow `docs/answer.schema.json` "
                    "(what `logoid query --json` prints). Writes need `Authorization: Bearer <token>` when the "
                    "server was started with `--token`; without one it is read-only.",
    )
    app.state.service = service

    # ---- errors ------------------------------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return e.response()

    @app.exception_handler(LogoidError)
    async def _logoid_error(request: Request, e: LogoidError):
        return api_error(e).response()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError):
        parts = []
        for err in e.errors():
            where = ".".join(str(x) for x in err.get("loc", ())[1:]) or "request"
            parts.append(f"{where}: {err.get('msg')}")
        return ApiError(422, "bad_parameter", "; ".join(parts) or "bad parameters",
                        "see /docs for the parameters").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "bad_request")
        return ApiError(e.status_code, code, str(e.detail)).response()

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return ApiError(500, "internal", "internal error; the server's log has the details").response()

    @app.middleware("http")
    async def _guards(request: Request, call_next):
        path = request.url.path
        if path.startswith("/v1/") and path not in ("/v1/health", "/v1/stats") and not service.ready:
            why = f"warming failed: {service.error}" if service.error else "the server is still loading its models"
            return ApiError(503, "not_ready", why, "try again in a few seconds; GET /v1/health says when",
                            {"Retry-After": "2"}).response()
        length = request.headers.get("content-length")
        cap = service.limits.max_upload_bytes * max(1, service.limits.max_batch) + (1 << 20)
        if length and length.isdigit() and int(length) > cap:
            return ApiError(413, "too_large", f"request body of {int(length):,} bytes is over {cap:,}",
                            "send fewer or smaller files; `logoid serve --max-upload-mb` sets the limit").response()
        return await call_next(request)

    # ---- the page --------------------------------------------------------------------------------------------
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    # ---- health and stats ----------------------------------------------------------------------------------
    @app.get("/v1/health", tags=["server"], responses={503: ERRORS[503]})
    def health():
        """Ready (200) once the models and indexes are loaded and warm; 503 until then."""
        if service.ready:
            return {"status": "ready", "ready": True, "ready_after_s": round(service.ready_after or 0.0, 2)}
        status = "failed" if service.error else "loading"
        return JSONResponse({"status": status, "ready": False, "error": service.error}, status_code=503)

    @app.get("/v1/stats", tags=["server"])
    def stats():
        """Catalog and index sizes, the model, the calibration, limits, uptime and request counts."""
        return service.stats()

    # ---- identify ----------------------------------------------------------------------------------------------
    async def options(request: Request, find_all: bool | None, k: int | None, channels: str | None,
                      explain: bool | None) -> dict:
        """Options from the form fields, else the query string (both are accepted)."""
        q = request.query_params

        def pick(form_value, name: str, parse):
            if form_value is not None:
                return form_value
            raw = q.get(name)
            if raw is None:
                return None
            try:
                return parse(raw)
            except ValueError:
                raise ApiError(422, "bad_parameter", f"{name}: {raw!r} is not valid",
                               "see /docs for the parameters") from None

        find_all = pick(find_all, "all", _boolean)
        k = pick(k, "k", int)
        explain = pick(explain, "explain", _boolean)
        channels = pick(channels, "channels", str)
        k = 5 if k is None else k
        if not 1 <= k <= 50:
            raise ApiError(422, "bad_parameter", f"k: {k} is out of range", "ask for 1 to 50 candidates")
        try:
            chans = parse_channels(channels)
        except ConfigError as e:
            raise ApiError(422, "bad_parameter", f"channels: {e.args[0]}", e.hint) from None
        return {"find_all": bool(find_all), "k": k, "channels": chans, "explain": bool(explain)}

    async def read_upload(upload: UploadFile) -> bytes:
        name = upload.filename or "upload"
        limit = service.limits.max_upload_bytes
        if upload.size is not None and upload.size > limit:
            raise ApiError(413, "too_large", f"{name}: {upload.size:,} bytes is over the limit of {limit:,}",
                           "send a smaller photo; `logoid serve --max-upload-mb` sets the limit")
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise ApiError(413, "too_large", f"{name}: over the limit of {limit:,} bytes",
                           "send a smaller photo; `logoid serve --max-upload-mb` sets the limit")
        return data

    async def run_identify(data: bytes, name: str, opts: dict) -> dict:
        loop = asyncio.get_running_loop()
        fn = functools.partial(_identify, service, data, name, opts)
        return await loop.run_in_executor(service.pool, fn)

    @app.post("/v1/identify", tags=["identify"], responses=ERRORS)
    async def identify(
        request: Request,
        image: Annotated[UploadFile, File(description="the photo (JPEG, PNG, WebP, BMP, GIF, TIFF)")],
        find_all: Annotated[bool | None, Form(alias="all", description="report every logo in the photo")] = None,
        k: Annotated[int | None, Form(description="candidates to return (1-50, default 5)")] = None,
        channels: Annotated[str | None, Form(description="any of global,local,text (default all)")] = None,
        explain: Annotated[bool | None, Form(description="add `explain`: what each channel said")] = None,
    ):
        """Identify the band or album in one photo: the answer JSON of `logoid query --json`, plus the photo's
        `width` and `height` (the space of every `polygon`). Options may also be query parameters."""
        opts = await options(request, find_all, k, channels, explain)
        data = await read_upload(image)
        return await run_identify(data, image.filename or "upload", opts)

    @app.post("/v1/identify/batch", tags=["identify"], responses=ERRORS)
    async def identify_batch(
        request: Request,
        images: Annotated[list[UploadFile], File(description="the photos")],
        find_all: Annotated[bool | None, Form(alias="all")] = None,
        k: Annotated[int | None, Form()] = None,
        channels: Annotated[str | None, Form()] = None,
        explain: Flag = None,
    ):
        """Identify several photos: one result per photo in upload order (an unreadable one gets an error result
        with its reason, and the others go on), and the summary `logoid batch --json` prints."""
        opts = await options(request, find_all, k, channels, explain)
        if len(images) > service.limits.max_batch:
            raise ApiError(413, "too_large", f"{len(images)} photos is over the batch limit of "
                                             f"{service.limits.max_batch}", "send them in smaller batches")
        uploads: list[tuple[str, bytes, str | None]] = []
        for up in images:
            name = up.filename or "upload"
            try:
                uploads.append((name, await read_upload(up), None))
            except ApiError as e:
                uploads.append((name, b"", e.message.removeprefix(f"{name}: ")))
        async def one(name: str, data: bytes, why: str | None) -> dict:
            if why is None:
                try:
                    return await run_identify(data, name, opts)
                except ApiError as e:
                    if e.status not in (400, 413, 415):  # not this photo's fault: the whole request fails
                        raise
                    why = e.message.removeprefix(f"{name}: ")
            return error_json(name, why)

        results = await asyncio.gather(*[one(*u) for u in uploads])
        return {"summary": batch_summary(list(results)), "results": list(results)}

    # ---- catalog (read) --------------------------------------------------------------------------------------
    @app.get("/v1/bands", tags=["catalog"])
    def bands(q: str = "", limit: Limit = 50, offset: Offset = 0):
        """Bands whose name or alias contains `q` (case- and accent-insensitive), by name, one page."""
        with service.reading() as cat:
            total, page = cat.search_bands(q, limit=limit, offset=offset)
            items = []
            for b in page:
                ids = [r.id for r in cat.images("band", b.id)]
                items.append({"id": b.id, "name": b.name, "genre": b.genre, "country": b.country,
                              "n_images": len(ids), "image_ids": ids, "url": f"/v1/bands/{b.id}"})
        return {"total": total, "offset": offset, "limit": limit, "items": items}

    @app.get("/v1/bands/{band_id}", tags=["catalog"], responses={404: {"description": "no such band"}})
    def band(band_id: int):
        """A band's metadata, reference images and albums."""
        with service.reading() as cat:
            b = _get(cat.get_band, band_id, "band")
            out = b.to_dict()
            out["images"] = _images(cat, "band", b.id)
            out["albums"] = [{"id": a.id, "title": a.title, "year": a.year, "url": f"/v1/albums/{a.id}",
                              "image_ids": [r.id for r in cat.images("album", a.id)]}
                             for a in cat.list_albums() if a.artist_id == b.id]
        return out

    @app.get("/v1/albums", tags=["catalog"])
    def albums(q: str = "", limit: Limit = 50, offset: Offset = 0):
        """Albums whose title or artist contains `q`, by artist and title, one page."""
        with service.reading() as cat:
            total, page = cat.search_albums(q, limit=limit, offset=offset)
            items = []
            for a in page:
                ids = [r.id for r in cat.images("album", a.id)]
                items.append({"id": a.id, "title": a.title, "artist": a.artist_name, "artist_id": a.artist_id,
                              "year": a.year, "genre": a.genre, "n_images": len(ids), "image_ids": ids,
                              "url": f"/v1/albums/{a.id}"})
        return {"total": total, "offset": offset, "limit": limit, "items": items}

    @app.get("/v1/albums/{album_id}", tags=["catalog"], responses={404: {"description": "no such album"}})
    def album(album_id: int):
        """An album's metadata and cover images."""
        with service.reading() as cat:
            a = _get(cat.get_album, album_id, "album")
            out = a.to_dict()
            out["artist"] = a.artist_name
            out["artist_url"] = f"/v1/bands/{a.artist_id}"
            out["images"] = _images(cat, "album", a.id)
        return out

    thumbs = _Thumbnails()

    @app.get("/v1/images/{image_id}", tags=["catalog"], responses={200: {"content": {"image/png": {}}},
                                                                    404: {"description": "no such image"}})
    def image(image_id: int, size: Annotated[int, Query(ge=16, le=1024)] = 256):
        """A reference image as a PNG thumbnail, its longest side at most `size` px."""
        with service.reading() as cat:
            ref = _get(cat.get_image, image_id, "image")
        data = thumbs.get(ref, size)
        return Response(data, media_type="image/png",
                        headers={"Cache-Control": "public, max-age=86400, immutable", "ETag": f'"{ref.sha256[:16]}-{size}"'})

    # ---- catalog (write) -------------------------------------------------------------------------------------
    def token(request: Request) -> None:
        if service.token is None:
            raise ApiError(403, "read_only", "this server is read-only",
                           "start it with `logoid serve --token T` (or LOGOID_TOKEN) to allow changes")
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if not auth:
            raise ApiError(401, "token_required", "this change needs the server's token",
                           "send the header Authorization: Bearer <token>", {"WWW-Authenticate": "Bearer"})
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), service.token.encode()):
            raise ApiError(403, "bad_token", "wrong token", "send the token the server was started with")

    Token = Depends(token)

    @app.post("/v1/bands", tags=["catalog"], status_code=201, responses=WRITE_ERRORS, dependencies=[Token])
    async def add_band(
        name: Annotated[str, Form(min_length=1)],
        genre: Annotated[str | None, Form()] = None, country: Annotated[str | None, Form()] = None,
        location: Annotated[str | None, Form()] = None, status: Annotated[str | None, Form()] = None,
        formed_year: Annotated[int | None, Form()] = None, themes: Annotated[str | None, Form()] = None,
        label: Annotated[str | None, Form()] = None,
        ids: Annotated[list[str] | None, Form(description="external ids as source:value, e.g. ma:3540")] = None,
        aliases: Annotated[list[str] | None, Form()] = None,
        images: Annotated[list[UploadFile] | None, File(description="logo images")] = None,
        allow_small: Annotated[bool, Form()] = False,
    ):
        """Add a band (or update the one with this name or external id) with its logos; indexed at once.
        Returns what `logoid add-band --json` prints."""
        from logoid.build.edit import parse_external_ids

        try:
            external = parse_external_ids(ids or [], "ids")
        except LogoidError as e:
            raise ApiError(422, "bad_parameter", e.args[0], e.hint) from None
        fields = {"genre": genre, "country": country, "location": location, "status": status,
                  "formed_year": formed_year, "themes": themes, "label": label}
        uploads = [(up.filename or "logo.png", await read_upload(up)) for up in images or []]
        change = await asyncio.to_thread(_with_uploads, uploads, allow_small, lambda paths: service.add_band(
            name.strip(), paths, allow_small=allow_small, external_ids=external, aliases=aliases or [], **fields))
        return JSONResponse({**change.result, "warnings": change.warnings}, status_code=201)

    @app.post("/v1/albums", tags=["catalog"], status_code=201, responses=WRITE_ERRORS, dependencies=[Token])
    async def add_album(
        title: Annotated[str, Form(min_length=1)],
        artist: Annotated[str, Form(min_length=1, description="the band: name, external id or id")],
        year: Annotated[int | None, Form()] = None, genre: Annotated[str | None, Form()] = None,
        images: Annotated[list[UploadFile] | None, File(description="cover images")] = None,
        allow_small: Annotated[bool, Form()] = False,
    ):
        """Add an album (the artist is created if the catalog lacks it) with its covers; indexed at once."""
        uploads = [(up.filename or "cover.jpg", await read_upload(up)) for up in images or []]
        change = await asyncio.to_thread(_with_uploads, uploads, allow_small, lambda paths: service.add_album(
            title.strip(), artist.strip(), paths, allow_small=allow_small, year=year, genre=genre))
        return JSONResponse({**change.result, "warnings": change.warnings}, status_code=201)

    @app.delete("/v1/bands/{band_id}", tags=["catalog"], responses=WRITE_ERRORS, dependencies=[Token])
    def remove_band(band_id: int):
        """Remove a band, its albums and all their images from the catalog and the index."""
        with service.reading() as cat:
            _get(cat.get_band, band_id, "band")
        change = service.remove("band", band_id)
        return {**change.result, "warnings": change.warnings}

    @app.delete("/v1/albums/{album_id}", tags=["catalog"], responses=WRITE_ERRORS, dependencies=[Token])
    def remove_album(album_id: int):
        """Remove an album and its covers from the catalog and the index."""
        with service.reading() as cat:
            _get(cat.get_album, album_id, "album")
        change = service.remove("album", album_id)
        return {**change.result, "warnings": change.warnings}

    return app


def from_env() -> FastAPI:
    """An app over the home in ``$LOGOID_HOME`` with the settings ``logoid serve`` passes through the environment:
    the factory each of ``logoid serve --workers N``'s processes (or ``uvicorn --factory``) builds."""
    import os

    from logoid import Home

    env = os.environ
    limits = Limits(max_upload_bytes=int(env.get("LOGOID_SERVE_MAX_UPLOAD", Limits.max_upload_bytes)),
                    max_pixels=int(env.get("LOGOID_SERVE_MAX_PIXELS") or Limits().max_pixels))
    service = Service(Home.resolve(None), threads=int(env.get("LOGOID_SERVE_THREADS") or (os.cpu_count() or 1)),
                      limits=limits, token=env.get("LOGOID_TOKEN") or None)
    return create_app(service, on_ready=lambda s: log.warning("ready in %.1f s", s.ready_after))


# ---- helpers ---------------------------------------------------------------------------------------------------
def _warm(service: Service, on_ready) -> None:
    try:
        service.warm()
    except Exception:  # noqa: BLE001 - /v1/health reports it; the log has the details
        log.exception("warming the service failed")
        return
    if on_ready is not None:
        on_ready(service)


def _identify(service: Service, data: bytes, name: str, opts: dict) -> dict:
    """One photo on a worker thread: its answer JSON, or an ApiError for a photo that cannot be read."""
    try:
        out = service.identify(data, name, find_all=opts["find_all"], k=opts["k"], channels=opts["channels"],
                               explain=opts["explain"])
    except LogoidError as e:
        service.counts["errors"] += 1
        raise api_error(e) from None
    service.counts["identified"] += 1
    return out


def _boolean(raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)


def _get(getter, ident: int, what: str):
    try:
        return getter(ident)
    except CatalogError:
        raise ApiError(404, "not_found", f"no {what} with id {ident}") from None


def _images(cat, entity_type: str, entity_id: int) -> list[dict]:
    return [{"id": r.id, "url": f"/v1/images/{r.id}", "width": r.width, "height": r.height, "kind": r.kind,
             "scheme": r.scheme, "source": r.source} for r in cat.images(entity_type, entity_id)]


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")


def _with_uploads(uploads: list[tuple[str, bytes]], allow_small: bool, change):
    """Check every uploaded image from memory (errors name the uploaded file), then hand ``change`` the files
    written to a temporary folder outside the home (the catalog copies what it keeps into its image store)."""
    for name, data in uploads:
        img = load_image_bytes(data, name)
        if not allow_small:
            try:
                check_reference(img, name)
            except ImageError as e:  # the CLI's flag is the form field allow_small here
                raise ImageError(name, e.reason, "use another image, or keep it anyway with the form field "
                                                 "allow_small=true") from None
    with tempfile.TemporaryDirectory(prefix="logoid-upload-") as tmp:
        paths = []
        for i, (name, data) in enumerate(uploads):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            path = folder / (_SAFE_NAME.sub("_", Path(name).name).strip(" .") or "image")
            path.write_bytes(data)
            paths.append(path)
        result = change(paths)
        shown = {str(p): name for p, (name, _) in zip(paths, uploads, strict=True)}
        for s in result.result.get("skipped", []):
            s["path"] = shown.get(s["path"], s["path"])
            s["reason"] = _unpath(s["reason"], shown)
        result.warnings = [_unpath(w, shown) for w in result.warnings]
        return result


def _unpath(text: str, shown: dict[str, str]) -> str:
    for tmp_path, name in shown.items():
        text = text.replace(tmp_path, name)
    return text


class _Thumbnails:
    """PNG thumbnails of reference images, the most recent few hundred kept in memory."""

    def __init__(self, keep: int = 512):
        self.keep = keep
        self._cache: OrderedDict[tuple[str, int], bytes] = OrderedDict()

    def get(self, ref, size: int) -> bytes:
        key = (ref.sha256, size)
        data = self._cache.get(key)
        if data is None:
            img = load_image(ref.path) if ref.path.exists() else None
            if img is None:
                raise ApiError(404, "not_found", f"image {ref.id} is missing from the image store",
                               "run `logoid build-index` to check the catalog")
            img.thumbnail((size, size))
            buf = io.BytesIO()
            img.save(buf, "PNG", optimize=False)
            data = buf.getvalue()
            self._cache[key] = data
            while len(self._cache) > self.keep:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return data
