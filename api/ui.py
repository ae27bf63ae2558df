"""The web console (ui/, built by Vite) served at ``/``; the API stays at /api/v1 and its documents at /docs.

The build writes ``index.html`` and content-hashed ``assets/*`` into
``api/static`` (packaged with the gateway as ``vapor/gateway/static``;
VAPOR_UI_DIR points elsewhere). Hashed assets never change under their name,
so they are cached for a year as immutable; ``index.html`` names the current
ones and is revalidated on every load (no-cache, with an ETag). Text assets
are sent gzip-compressed to clients that accept it, compressed once and kept
in memory (the whole build is a few hundred KiB).

The console routes in the browser (``/#/vms``), so the server knows only the
files. Without a build, ``/`` says how to make one.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from quart import Blueprint, Response, current_app, request
from quart_schema import hide

from vapor.agentapi.errors import NOT_FOUND

from ._errors import APIError

blueprint = Blueprint("ui", __name__)

STATIC = Path(__file__).resolve().parent / "static"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
COMPRESSIBLE = (".html", ".js", ".css", ".svg", ".json", ".map", ".txt", ".wasm")
MIN_GZIP = 512  # bytes: smaller files are sent as they are
NO_BUILD = (
    "Vapor's web console is not built in this installation: run `make ui` (or hack/setup.sh) in the checkout. "
    "The REST API is at /api/v1 and its documents at /docs."
)


@dataclass(frozen=True)
class Asset:
    """One built file: its bytes, gzip of them when worth it, type and ETag (unquoted)."""

    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str


def ui_dir() -> Path:
    """Where the built console is: VAPOR_UI_DIR, else the package's static folder."""
    configured = current_app.config.get("UI_DIR")
    return Path(configured) if configured else STATIC


@lru_cache(maxsize=256)
def _load(path: Path, mtime_ns: int) -> Asset:
    body = path.read_bytes()
    packed = None
    if path.suffix in COMPRESSIBLE and len(body) >= MIN_GZIP:
        packed = gzip.compress(body, compresslevel=9, mtime=0)
        if len(packed) >= len(body):
            packed = None
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "application/json", "image/svg+xml"):
        kind += "; charset=utf-8"
    return Asset(body, packed, kind, hashlib.sha256(body).hexdigest()[:32])


def _find(relative: str) -> Path | None:
    root = ui_dir().resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


def _send(path: Path, cache_control: str) -> Response:
    asset = _load(path, path.stat().st_mtime_ns)
    headers = {"Cache-Control": cache_control, "ETag": f'"{asset.etag}"', "Vary": "Accept-Encoding"}
    headers["X-Content-Type-Options"] = "nosniff"
    if asset.etag in request.if_none_match:
        return Response(b"", status=304, headers=headers)
    body = asset.body
    if asset.gzipped is not None and request.accept_encodings["gzip"] > 0:
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    response = Response(body, status=200, headers=headers, content_type=asset.content_type)
    if request.method == "HEAD":
        response.set_data(b"")
        response.content_length = len(body)
    return response


@blueprint.get("/")
@hide
async def index() -> Response:
    """The console's page, revalidated on every load."""
    found = _find("index.html")
    if found is None:
        return Response(NO_BUILD + "\n", status=404, content_type="text/plain; charset=utf-8")
    response = _send(found, REVALIDATE)
    # the console talks only to this gateway: no external requests, no framing by other sites
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
    return response


@blueprint.get("/assets/<path:name>")
@hide
async def asset(name: str) -> Response:
    """A content-hashed file of the build: cached as immutable."""
    found = _find(f"assets/{name}")
    if found is None:
        raise APIError(404, NOT_FOUND, f"no console asset {name!r}: the page may be older than the gateway; reload")
    return _send(found, IMMUTABLE)


@blueprint.get("/favicon.svg")
@hide
async def favicon() -> Response:
    """The console's icon."""
    found = _find("favicon.svg")
    if found is None:
        raise APIError(404, NOT_FOUND, "no favicon in this build")
    return _send(found, "public, max-age=86400")
