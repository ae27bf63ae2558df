"""The content-addressed cache of Images on this host: one verified file per sha256, never a partial one.

Bytes arrive (a download, a copy of a host file, an upload) into a partial
file of their own under ``<cache>/.partial/``, hashed while they are written;
then the file is fsynced, its sha256 compared with the Image's checksum, its
format checked with ``qemu-img info`` (what it reports must match
``spec.format``; a qcow2 image with a backing file is refused: it would let
an image name any file of the host), and only then renamed to
``<cache>/<sha256>.<format>``. A VM's disk is an overlay whose backing file is
that name, so a file that is there is always whole and verified.

A partial file is kept after an interruption (with the bytes so far) so a
download can go on with an HTTP Range request; it is removed when its content
turns out wrong, and by garbage collection when its Image is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from vapor.model import Image

log = logging.getLogger("vapor.agent.imagecache")

ProblemPhase = Literal["Failed", "Refused"]
Progress = Callable[[str, int, int | None], None]  # phase (Fetching, Verifying), bytes so far, total when known
PARTIAL = ".partial"
ISO_MAGIC_OFFSET = 0x8001  # "CD001" of the first ISO 9660 volume descriptor
ISO_MAGIC = b"CD001"
CHUNK = 1 << 20

# Reasons in an Image's status.hosts entry (and passed on to the VMs that wait for it).
CHECKSUM_MISMATCH = "ChecksumMismatch"
FORMAT_MISMATCH = "FormatMismatch"
BACKING_FILE_REFUSED = "BackingFileRefused"
NO_ROOM = "InsufficientStorage"
HOST_PATH_REFUSED = "HostPathRefused"
HOST_PATH_MISSING = "HostPathMissing"
FETCH_FAILED = "FetchFailed"
NOT_AN_IMAGE = "NotAnImage"


class ImageProblem(Exception):
    """The image cannot be held on this host: ``phase`` Failed or Refused, a ``reason`` and a sentence.

    ``retry``: the cause may pass (a server down, a full disk); a wrong checksum or format does not.
    """

    def __init__(self, phase: ProblemPhase, reason: str, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.phase: ProblemPhase = phase
        self.reason = reason
        self.message = message
        self.retry = retry


@dataclass(frozen=True)
class CachedImage:
    """A verified file of the cache."""

    path: Path
    sha256: str
    format: str
    size: int
    virtual_size: int


class PartialFile:
    """The bytes of one image as they arrive: appended to a partial file and hashed on the way."""

    def __init__(self, path: Path, *, resume: bool) -> None:
        self.path = path
        self.hash = hashlib.sha256()
        self.bytes = 0
        self._file: BinaryIO
        if resume and path.exists():
            with path.open("rb") as f:  # the hash of what is there already (hashlib's state cannot be saved)
                while block := f.read(CHUNK * 4):
                    self.hash.update(block)
                    self.bytes += len(block)
            self._file = path.open("ab")
        else:
            self._file = path.open("wb")

    def write(self, data: bytes | bytearray) -> None:
        """Append ``data`` (and hash it)."""
        self.append(data)
        self.hash.update(data)

    def append(self, data: bytes | bytearray) -> None:
        """Append ``data`` without hashing it (the caller hashes it, in order, with ``hash.update``)."""
        self._file.write(data)
        self.bytes += len(data)

    def restart(self) -> None:
        """Forget the bytes so far (a server that ignores Range sends the whole file again)."""
        self._file.seek(0)
        self._file.truncate()
        self.hash = hashlib.sha256()
        self.bytes = 0

    def finish(self) -> str:
        """Flush and fsync; the sha256 of the whole file."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self.hash.hexdigest()

    def close(self) -> None:
        """Close without finishing (the bytes stay for a resume)."""
        with contextlib.suppress(OSError):
            self._file.close()


class ChunkWriter:
    """Hands the bytes of a stream to two threads, one writing and one hashing, while the next ones arrive.

    Chunks are gathered into blocks of ``BATCH`` bytes; one block is written
    and hashed at once (hashlib and the write both let go of the GIL) while the
    event loop receives the next, so the network, the hash and the disk overlap.
    ``received`` counts what was handed over; ``drain()`` waits until it is in
    the file (``partial.bytes``).
    """

    BATCH = CHUNK

    def __init__(self, partial: PartialFile) -> None:
        self.partial = partial
        self.received = partial.bytes
        self._buffer = bytearray()
        self._pending: asyncio.Future[tuple[None, None]] | None = None

    async def add(self, data: bytes) -> None:
        """Take ``data``; a full block goes to the writer thread (after the previous one is written)."""
        self._buffer += data
        self.received += len(data)
        if len(self._buffer) >= self.BATCH:
            await self._hand_over()

    async def _hand_over(self) -> None:
        if self._pending is not None:
            await self._pending
            self._pending = None
        if self._buffer:
            block, self._buffer = self._buffer, bytearray()
            loop = asyncio.get_running_loop()
            self._pending = asyncio.gather(
                loop.run_in_executor(None, self.partial.append, block),
                loop.run_in_executor(None, self.partial.hash.update, block),
            )

    async def drain(self) -> None:
        """Wait until every byte taken is written."""
        await self._hand_over()
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    def restart(self) -> None:
        """Forget the bytes taken so far (call after drain)."""
        self._buffer = bytearray()
        self.partial.restart()
        self.received = 0


async def qemu_img_info(path: Path) -> dict[str, object]:
    """``qemu-img info --output=json`` of ``path`` (probing its format); ImageProblem when qemu-img cannot read it."""
    proc = await asyncio.create_subprocess_exec(
        "qemu-img", "info", "--output=json", "--force-share", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise ImageProblem("Failed", NOT_AN_IMAGE, f"qemu-img cannot read the image: {err.decode().strip()[:300]}")
    info = json.loads(out)
    return info if isinstance(info, dict) else {}


def _is_iso(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            f.seek(ISO_MAGIC_OFFSET)
            return f.read(len(ISO_MAGIC)) == ISO_MAGIC
    except OSError:
        return False


async def check_format(path: Path, wanted: str) -> int:
    """The virtual size of the image at ``path`` when it is ``wanted`` (qcow2, raw, iso); ImageProblem otherwise."""
    info = await qemu_img_info(path)
    found = str(info.get("format", "unknown"))
    if found == "raw" and _is_iso(path):
        found = "iso"  # qemu-img has no iso format: an ISO 9660 file is raw to it
    if found != wanted:
        raise ImageProblem(
            "Failed", FORMAT_MISMATCH, f"the image is {found} (qemu-img info), but the Image's format is {wanted}"
        )
    if "backing-filename" in info or "full-backing-filename" in info:
        raise ImageProblem(
            "Failed",
            BACKING_FILE_REFUSED,
            "the qcow2 image names a backing file; an Image must be whole (qemu-img convert it first)",
        )
    size = info.get("virtual-size")
    return size if isinstance(size, int) else 0


class ImageCache:
    """The cache folder of this host: verified files by sha256, partial files by Image uid."""

    def __init__(self, folder: Path, *, reserve: int, fetches: int = 2) -> None:
        self.folder = folder
        self.reserve = reserve
        self.slots = asyncio.Semaphore(fetches)
        self._verified: dict[Path, CachedImage] = {}

    def prepare(self) -> None:
        """Make the folders: QEMU (its own user) reaches the files through them without listing them."""
        (self.folder / PARTIAL).mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o711)
        (self.folder / PARTIAL).chmod(0o700)

    def path_of(self, sha256: str, fmt: str) -> Path:
        """Where the verified file of that content lives."""
        return self.folder / f"{sha256}.{fmt}"

    def partial_of(self, image: Image) -> Path:
        """The partial file of an Image's fetch (by uid: a new Image of the same name starts afresh)."""
        return self.folder / PARTIAL / (image.metadata.uid or image.name)

    def free_bytes(self) -> int:
        """Free bytes on the cache's filesystem, for an unprivileged writer."""
        st = os.statvfs(self.folder)
        return st.f_bavail * st.f_frsize

    def check_room(self, more: int) -> None:
        """ImageProblem Refused/InsufficientStorage when ``more`` bytes would leave less than the reserve free."""
        free = self.free_bytes()
        if more > free - self.reserve:
            raise ImageProblem(
                "Refused",
                NO_ROOM,
                f"the image needs {more} more bytes; this host has {free} free in {self.folder} and keeps "
                f"{self.reserve} in reserve (agent flag --image-reserve)",
                retry=True,
            )

    async def lookup(self, sha256: str, fmt: str) -> CachedImage | None:
        """The verified file of that content when the cache holds it."""
        path = self.path_of(sha256, fmt)
        known = self._verified.get(path)
        if known is not None and path.exists():
            return known
        if not path.exists():
            return None
        virtual = await check_format(path, fmt)  # verified when placed; only its virtual size is read again
        found = CachedImage(path, sha256, fmt, path.stat().st_size, virtual)
        self._verified[path] = found
        return found

    async def place(self, partial: PartialFile, image: Image, progress: Progress) -> CachedImage:
        """Verify a finished partial file against the Image and rename it into the cache; ImageProblem if wrong."""
        progress("Verifying", partial.bytes, partial.bytes)
        try:
            digest = await asyncio.to_thread(partial.finish)
            wanted = image.spec.checksum
            if wanted is not None and digest != wanted:
                raise ImageProblem(
                    "Failed",
                    CHECKSUM_MISMATCH,
                    f"the image's sha256 is {digest}, not the checksum the Image gives ({wanted})",
                )
            virtual = await check_format(partial.path, image.spec.format)
        except BaseException:
            partial.close()
            with contextlib.suppress(OSError):
                partial.path.unlink()
            raise
        final = self.path_of(digest, image.spec.format)
        partial.path.chmod(0o644)
        os.replace(partial.path, final)
        with contextlib.suppress(OSError):  # the rename itself is durable once the folder is synced
            fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        cached = CachedImage(final, digest, image.spec.format, partial.bytes, virtual)
        self._verified[final] = cached
        log.info("image cached", extra={"image": image.name, "path": str(final), "bytes": partial.bytes})
        return cached

    async def copy_file(self, source: Path, image: Image, progress: Progress) -> CachedImage:
        """Copy a host file (already allowed by the caller) into the cache."""
        total = source.stat().st_size
        self.check_room(total)
        partial = PartialFile(self.partial_of(image), resume=False)
        try:
            with source.open("rb") as src:
                while block := await asyncio.to_thread(src.read, CHUNK * 8):
                    partial.write(block)
                    progress("Fetching", partial.bytes, total)
        except OSError as exc:
            partial.close()
            raise ImageProblem("Failed", HOST_PATH_MISSING, f"cannot read {source}: {exc.strerror}") from None
        return await self.place(partial, image, progress)

    async def receive(
        self, chunks: AsyncIterable[bytes], image: Image, progress: Progress, *, total: int | None
    ) -> CachedImage:
        """Write a stream of bytes (an upload) into the cache, never holding more than one chunk."""
        if total is not None:
            self.check_room(total)
        partial = PartialFile(self.partial_of(image), resume=False)
        writer = ChunkWriter(partial)
        written_since_check = 0
        try:
            async for block in chunks:
                await writer.add(block)
                written_since_check += len(block)
                if total is None and written_since_check > 256 * CHUNK:
                    self.check_room(0)  # an upload of unknown size stops before the reserve is eaten
                    written_since_check = 0
                progress("Fetching", writer.received, total)
            await writer.drain()
        except BaseException:
            partial.close()
            with contextlib.suppress(OSError):
                partial.path.unlink()
            raise
        return await self.place(partial, image, progress)

    def files(self) -> list[Path]:
        """The verified files of the cache."""
        return [p for p in self.folder.iterdir() if p.is_file() and not p.name.startswith(".")]

    def partials(self) -> list[Path]:
        """The partial files (named by Image uid)."""
        folder = self.folder / PARTIAL
        return list(folder.iterdir()) if folder.exists() else []

    def remove(self, path: Path) -> None:
        """Remove a cache file (garbage collection)."""
        self._verified.pop(path, None)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        log.info("removed a cached image", extra={"path": str(path)})
