"""Getting an Image's bytes into the cache: a download over http(s), or a copy of a file in an image folder.

A download writes into the Image's partial file; after an interruption (a
reset connection, the agent restarted) the next attempt asks for the rest
with ``Range: bytes=<have>-`` and appends, or starts from zero when the
server answers the whole file (200) or cannot give that range (416). Attempts
are retried with exponential backoff; an answer that will not change (404,
403) fails at once with its status code. A ``caBundle`` is the only trust an
https download has; it is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

import aiohttp
from yarl import URL

from vapor.model import Image

from .diskpaths import DiskPathRefused, resolve_disk_path
from .imagecache import (
    FETCH_FAILED,
    HOST_PATH_MISSING,
    HOST_PATH_REFUSED,
    CachedImage,
    ChunkWriter,
    ImageCache,
    ImageProblem,
    PartialFile,
    Progress,
)

log = logging.getLogger("vapor.agent.imagefetch")

ATTEMPTS = 6
FIRST_DELAY = 1.0
MAX_DELAY = 30.0
READ = 1 << 20
# Statuses a retry may get past (the server busy or restarting); others fail the fetch at once.
RETRIED_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class _Retry(Exception):
    """An attempt that failed in a way the next one may not."""


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext | None:
    """An SSL context trusting only ``ca_bundle``'s certificates (None: the host's trust store)."""
    if not ca_bundle:
        return None
    try:
        return ssl.create_default_context(cadata=ca_bundle)
    except (ssl.SSLError, ValueError):
        raise ImageProblem("Failed", FETCH_FAILED, "caBundle holds no usable PEM certificate") from None


def shown_url(url: str) -> str:
    """``url`` as status messages and logs show it: without a user or password it may carry."""
    try:
        parsed = URL(url)
    except ValueError:
        return "(the Image's URL)"
    return str(parsed.with_user(None)) if parsed.user or parsed.password else url


def _start_of(content_range: str | None) -> int | None:
    """The first byte of a ``Content-Range: bytes a-b/n`` header."""
    if not content_range or not content_range.startswith("bytes "):
        return None
    try:
        return int(content_range[6:].split("-", 1)[0])
    except ValueError:
        return None


async def _attempt(
    session: aiohttp.ClientSession, url: str, writer: ChunkWriter, cache: ImageCache, progress: Progress
) -> None:
    try:
        await _receive(session, url, writer, cache, progress)
    finally:
        await writer.drain()  # what arrived is in the file: the next attempt asks for the rest


async def _receive(
    session: aiohttp.ClientSession, url: str, writer: ChunkWriter, cache: ImageCache, progress: Progress
) -> None:
    partial = writer.partial
    headers = {"Range": f"bytes={partial.bytes}-"} if partial.bytes else {}
    async with session.get(url, headers=headers) as response:
        if response.status == 416 and partial.bytes:  # what we have is no prefix of what is there now
            writer.restart()
            raise _Retry("the server could not send the rest (416); starting again")
        if response.status in RETRIED_STATUSES:
            raise _Retry(f"the server answered {response.status} {response.reason}")
        if response.status not in (200, 206):
            shown = shown_url(url)
            raise ImageProblem("Failed", FETCH_FAILED, f"GET {shown} answered {response.status} {response.reason}")
        if response.status == 206 and _start_of(response.headers.get("Content-Range")) == partial.bytes:
            rest = response.content_length
        else:  # the whole file (the server ignores Range, or sent another range): from zero
            if partial.bytes:
                log.info("the server sends the whole image again", extra={"url": shown_url(url), "had": partial.bytes})
            writer.restart()
            rest = response.content_length
        total = partial.bytes + rest if rest is not None else None
        if rest is not None:
            cache.check_room(rest)
        progress("Fetching", partial.bytes, total)
        since_check = 0
        async for block in response.content.iter_any():
            await writer.add(block)
            progress("Fetching", writer.received, total)
            since_check += len(block)
            if rest is None and since_check > 256 * READ:
                cache.check_room(0)
                since_check = 0
        if total is not None and writer.received != total:
            raise _Retry(f"the connection ended after {writer.received} of {total} bytes")


async def download(image: Image, cache: ImageCache, progress: Progress) -> CachedImage:
    """Download an http Image into the cache, resuming the bytes an earlier attempt kept."""
    source = image.spec.source.http
    assert source is not None
    context = ssl_context(source.ca_bundle)
    shown = shown_url(source.url)
    partial = PartialFile(cache.partial_of(image), resume=True)
    writer = ChunkWriter(partial)
    delay = FIRST_DELAY
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
    try:
        async with aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(ssl=context if context is not None else True)
        ) as session:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    await _attempt(session, source.url, writer, cache, progress)
                    break
                except (_Retry, aiohttp.ClientError, TimeoutError) as exc:
                    if isinstance(exc, aiohttp.ClientSSLError):
                        raise ImageProblem("Failed", FETCH_FAILED, f"TLS with {shown} failed: {exc}") from None
                    what = (str(exc) or type(exc).__name__).replace(source.url, shown)
                    if attempt == ATTEMPTS:
                        raise ImageProblem(
                            "Failed", FETCH_FAILED, f"GET {shown} failed {attempt} times: {what}", retry=True
                        ) from None
                    log.info("image download interrupted; retrying", extra={"image": image.name, "error": what})
                    progress("Fetching", partial.bytes, None)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_DELAY)
    except BaseException:
        partial.close()  # the bytes so far stay for the next attempt (a wrong content is removed by place)
        raise
    return await cache.place(partial, image, progress)


async def copy_host_path(
    image: Image, cache: ImageCache, progress: Progress, *, image_dirs: tuple[Path, ...], disks_dir: Path
) -> CachedImage:
    """Copy a hostPath Image into the cache when the file is in one of this host's image folders."""
    source = image.spec.source.host_path
    assert source is not None
    try:
        resolved = resolve_disk_path(source.path, image_dirs=image_dirs, block_devices=(), disks_dir=disks_dir)
    except DiskPathRefused as exc:
        if exc.reason == "DiskMissing":
            raise ImageProblem("Failed", HOST_PATH_MISSING, exc.message, retry=True) from None
        raise ImageProblem("Refused", HOST_PATH_REFUSED, exc.message) from None
    return await cache.copy_file(Path(resolved.path), image, progress)


async def fetch(
    image: Image, cache: ImageCache, progress: Progress, *, image_dirs: tuple[Path, ...], disks_dir: Path
) -> CachedImage:
    """Get the Image's bytes into the cache from its source (http or hostPath), one of the host's fetch slots."""
    async with cache.slots:
        if image.spec.source.http is not None:
            return await download(image, cache, progress)
        if image.spec.source.host_path is not None:
            return await copy_host_path(image, cache, progress, image_dirs=image_dirs, disks_dir=disks_dir)
    raise ImageProblem("Failed", FETCH_FAILED, "an upload Image gets its bytes through PUT /images/{name}/upload")
