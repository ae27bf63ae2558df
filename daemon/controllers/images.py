"""Images on this host: fetched into the cache when wanted here, reported in this node's status.hosts entry.

Every agent watches every Image (they are cluster-scoped and few). An Image
is wanted here when the operator names this node in ``status.fetchHosts``,
when ``spec.prefetch.hostSelector`` matches this Host's labels, or when a VM
placed here uses it (the VM controller asks, see :meth:`state_for_vm`). Its
entry in ``status.hosts`` is written by server-side apply under this node's
own field manager (:func:`names.agent_images_field_manager`), so each agent
owns only its entry; progress is written at most every second or 5 %.

Cached files that no Image names any more and no disk of this host uses (an
overlay's backing file, a CD-ROM) are removed; an Image being deleted loses
this node's entry and copy once nothing here uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from vapor.kube import Informer, Kube, KubeError, NotFound
from vapor.model import Host, Image, names
from vapor.model.image import ImageHostStatus, ImageStatus

from .._config import AgentConfig
from ..host.imagecache import CachedImage, ImageCache, ImageProblem
from ..host.imagefetch import fetch
from ..host.images import disks_in_use
from .workqueue import WorkQueue

log = logging.getLogger("vapor.agent.images")

REPORT_SECONDS = 1.0
REPORT_PERCENT = 5
RETRY_SECONDS = 30.0
GC_SECONDS = 60.0
IMAGE_FETCHING = "ImageFetching"
IMAGE_NOT_FOUND = "ImageNotFound"


@dataclass(frozen=True)
class ImageState:
    """What a VM that uses an Image gets from this host: the cached copy, or why not yet (or not at all)."""

    cached: CachedImage | None
    reason: str = ""
    message: str = ""
    failed: bool = False


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _percent(done: int, total: int | None) -> int | None:
    return min(100, done * 100 // total) if total else None


class ImageController:
    """Fetches, reports and collects the Images of this host."""

    def __init__(
        self,
        kube: Kube,
        config: AgentConfig,
        cache: ImageCache,
        host: Callable[[], Host | None],
        libvirt_sources: Callable[[], set[str]],
    ) -> None:
        self.kube = kube
        self.config = config
        self.cache = cache
        self.host = host
        self.libvirt_sources = libvirt_sources
        self.images = kube.resources(Image)
        self.informer: Informer[Image] = Informer(kube, Image)
        self.queue: WorkQueue[str] = WorkQueue()
        self.manager = names.agent_images_field_manager(config.node_name)
        self.listeners: list[Callable[[str], None]] = []  # told the name of an Image whose state here changed
        self._needed: set[str] = set()  # asked for by VMs placed here
        self._fetches: dict[str, asyncio.Task[None]] = {}  # uid -> running fetch
        self._problems: dict[str, ImageProblem] = {}  # uid -> why the last fetch failed
        self._progress: dict[str, ImageHostStatus] = {}  # uid -> the last entry written
        self._written_at: dict[str, float] = {}  # uid -> when progress was last written (monotonic)
        self._progress_writes: set[asyncio.Task[None]] = set()
        self._locks: dict[str, asyncio.Lock] = {}  # uid -> held while its entry is written
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Watch the Images, then reconcile each one and collect the cache now and then."""
        await asyncio.to_thread(self.cache.prepare)
        self.informer.on_change(lambda event: self.queue.add(event.object.name))
        await self.informer.start()
        self.resync_all()
        self._tasks = [asyncio.create_task(self.queue.worker(self.reconcile), name=f"images-{i}") for i in range(2)]
        self._tasks.append(asyncio.create_task(self._periodic(), name="images-gc"))

    async def stop(self) -> None:
        """Stop fetching (partial files stay for a resume) and watching."""
        for task in [*self._tasks, *self._fetches.values()]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._fetches.values(), return_exceptions=True)
        self._tasks, self._fetches = [], {}
        self.queue.close()
        await self.informer.stop()

    def resync_all(self) -> None:
        """Look at every Image again (a Host label change may select new ones for prefetch)."""
        for image in self.informer.items():
            self.queue.add(image.name)

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(GC_SECONDS)
            self.resync_all()
            try:
                await self.collect()
            except Exception:  # a bug here must not stop the next pass
                log.exception("image garbage collection failed")

    # -- what this host holds ----------------------------------------------------------
    def _sha_of(self, image: Image) -> str | None:
        if image.spec.checksum:
            return image.spec.checksum
        mine = image.on_host(self.config.node_name)
        if mine is not None and mine.sha256:
            return mine.sha256
        return image.status.sha256 if image.status else None

    async def cached(self, image: Image) -> CachedImage | None:
        """The verified copy of ``image`` on this host, when it has one."""
        sha = self._sha_of(image)
        return await self.cache.lookup(sha, image.spec.format) if sha else None

    def wanted(self, image: Image) -> bool:
        """Whether this host should hold ``image``."""
        node = self.config.node_name
        if image.name in self._needed or node in ((image.status.fetch_hosts or []) if image.status else []):
            return True
        prefetch = image.spec.prefetch
        if prefetch is None:
            return False
        host = self.host()
        if host is None:  # not registered yet: only a selector of nothing selects it
            return not prefetch.host_selector
        return host.missing_label(prefetch.host_selector) is None

    async def in_use(self) -> set[Path]:
        """Cache files a disk of this host uses: overlays' backing files and domains' disk sources."""
        used = await asyncio.to_thread(disks_in_use, self.config.disks_dir)
        with contextlib.suppress(Exception):  # libvirt away: the overlays still tell
            used |= {Path(p) for p in await asyncio.to_thread(self.libvirt_sources)}
        return used

    async def state_for_vm(self, name: str) -> ImageState:
        """The Image ``name`` for a VM placed here: its copy, or why the VM has to wait (or fails)."""
        image = self.informer.get(name)
        if image is None or image.metadata.deletion_timestamp is not None:
            return ImageState(None, IMAGE_NOT_FOUND, f"Image {name} does not exist", failed=False)
        cached = await self.cached(image)
        if cached is not None:
            return ImageState(cached)
        problem = self._problems.get(image.metadata.uid or "")
        if problem is not None and not problem.retry:
            return ImageState(None, problem.reason, f"Image {name}: {problem.message}", failed=True)
        if name not in self._needed:
            self._needed.add(name)
            self.queue.add(name)
        entry = self._progress.get(image.metadata.uid or "")
        if image.spec.source.upload is not None and entry is None:
            return ImageState(None, IMAGE_FETCHING, f"Image {name} waits for its upload")
        shown = f"{entry.percent}%" if entry is not None and entry.percent is not None else "starting"
        if problem is not None:
            shown += f" (last attempt: {problem.message})"
        return ImageState(None, IMAGE_FETCHING, f"fetching Image {name} to this host: {shown}")

    # -- reconcile ---------------------------------------------------------------------
    async def reconcile(self, name: str) -> None:
        """Bring this host's copy of one Image (and its status entry) in line with what is wanted."""
        image = self.informer.get(name)
        if image is None:  # gone: its copy is collected unless another Image names it or a disk uses it
            await self.collect()
            return
        uid = image.metadata.uid or ""
        try:
            if image.metadata.deletion_timestamp is not None:
                await self._forget(image)
                return
            cached = await self.cached(image)
            if cached is not None:
                self._problems.pop(uid, None)
                await self.report_ready(image, cached)
                return
            if not self.wanted(image) or uid in self._fetches:
                return
            problem = self._problems.get(uid)
            if problem is not None and not problem.retry:
                return
            if image.spec.source.upload is not None:
                await self._write(image, ImageHostStatus(host=self.config.node_name, phase="Pending",
                                                         message="waiting for the image's upload"))  # fmt: skip
                return
            self._fetches[uid] = asyncio.create_task(self._fetch(image), name=f"fetch-{name}")
        except KubeError as exc:
            log.warning("writing the image status failed", extra={"image": name, "error": str(exc)})
            self.queue.add_after(name, 5.0)

    async def _fetch(self, image: Image) -> None:
        uid = image.metadata.uid or ""
        try:
            await self._write(image, ImageHostStatus(host=self.config.node_name, phase="Pending",
                                                     message="waiting for a fetch slot"))  # fmt: skip
            cached = await fetch(
                image,
                self.cache,
                self.progress_of(image),
                image_dirs=self.config.disk_image_dirs,
                disks_dir=self.config.disks_dir,
            )
            self._problems.pop(uid, None)
            await self.report_ready(image, cached)
        except ImageProblem as exc:
            self._problems[uid] = exc
            log.warning("image fetch failed", extra={"image": image.name, "reason": exc.reason, "error": exc.message})
            entry = ImageHostStatus(
                host=self.config.node_name, phase=exc.phase, reason=exc.reason, message=exc.message[:4000]
            )
            with contextlib.suppress(KubeError):
                await self._write(image, entry)
            if exc.retry:
                self.queue.add_after(image.name, RETRY_SECONDS)
        except KubeError as exc:
            log.warning("image status write failed", extra={"image": image.name, "error": str(exc)})
            self.queue.add_after(image.name, 5.0)
        finally:
            self._fetches.pop(uid, None)
            self._tell(image.name)

    def progress_of(self, image: Image) -> Callable[[str, int, int | None], None]:
        """The progress callback of a transfer of ``image`` (a fetch, an upload): written to its entry."""
        return lambda phase, done, total: self._on_progress(image, phase, done, total)

    def _on_progress(self, image: Image, phase: str, done: int, total: int | None) -> None:
        uid = image.metadata.uid or ""
        last = self._progress.get(uid)
        percent = _percent(done, total)
        if last is not None and last.phase == phase:
            recent = time.monotonic() - self._written_at.get(uid, 0.0) < REPORT_SECONDS
            small = (percent or 0) - (last.percent or 0) < REPORT_PERCENT
            if recent and small:
                return
        entry = ImageHostStatus(
            host=self.config.node_name,
            phase="Verifying" if phase == "Verifying" else "Fetching",
            bytes=done,
            total_bytes=total,
            percent=percent,
            message="checking the sha256 and the format" if phase == "Verifying" else None,
        )
        self._written_at[uid] = time.monotonic()
        task = asyncio.create_task(self._write_quietly(image, entry), name=f"progress-{image.name}")
        self._progress_writes.add(task)
        task.add_done_callback(self._progress_writes.discard)
        self._tell(image.name)

    async def _write_quietly(self, image: Image, entry: ImageHostStatus) -> None:
        try:
            await self._write(image, entry)
        except KubeError as exc:  # progress only: the next one (or the end) is written anyway
            log.debug("progress write failed", extra={"image": image.name, "error": str(exc)})

    async def report_ready(self, image: Image, cached: CachedImage) -> None:
        """Write the entry of this host: Ready, with the hash and sizes of the copy (when that is new)."""
        entry = ImageHostStatus(
            host=self.config.node_name,
            phase="Ready",
            bytes=cached.size,
            total_bytes=cached.size,
            percent=100,
            sha256=cached.sha256,
            virtual_size=cached.virtual_size,
            message=f"cached as {cached.path.name}",
        )
        mine = image.on_host(self.config.node_name)
        if mine is not None and mine.model_copy(update={"updated_at": None}) == entry:
            return
        await self._write(image, entry)
        self._tell(image.name)

    async def _write(self, image: Image, entry: ImageHostStatus) -> None:
        """Apply this node's entry; writes of one Image go in order, and one superseded while waiting is skipped."""
        uid = image.metadata.uid or ""
        entry = entry.model_copy(update={"updated_at": _now()})
        self._progress[uid] = entry
        async with self._locks.setdefault(uid, asyncio.Lock()):
            if self._progress.get(uid) is not entry:
                return
            await self.images.apply_status(image.name, ImageStatus(hosts=[entry]), field_manager=self.manager)

    def _tell(self, name: str) -> None:
        for listener in self.listeners:
            listener(name)

    # -- going away --------------------------------------------------------------------
    async def _forget(self, image: Image) -> None:
        """An Image being deleted: drop this node's copy and entry once no disk here uses the copy."""
        uid = image.metadata.uid or ""
        task = self._fetches.pop(uid, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        cached = await self.cached(image)
        if cached is not None:
            if cached.path in await self.in_use():
                self.queue.add_after(image.name, 10.0)
                return
            if not any(self._sha_of(other) == cached.sha256 for other in self._others(image)):
                await asyncio.to_thread(self.cache.remove, cached.path)
        with contextlib.suppress(FileNotFoundError):
            self.cache.partial_of(image).unlink()
        self._problems.pop(uid, None)
        self._progress.pop(uid, None)
        self._locks.pop(uid, None)
        self._needed.discard(image.name)
        if image.on_host(self.config.node_name) is not None:
            with contextlib.suppress(NotFound):
                await self.images.apply_status(image.name, ImageStatus(hosts=[]), field_manager=self.manager)
        self._tell(image.name)

    def _others(self, image: Image) -> list[Image]:
        return [
            other
            for other in self.informer.items()
            if other.metadata.uid != image.metadata.uid and other.metadata.deletion_timestamp is None
        ]

    async def collect(self) -> list[Path]:
        """Remove cache files no Image names and no disk here uses, and partial files of Images gone; what went."""
        images = self.informer.items()
        named = {
            self.cache.path_of(sha, image.spec.format)
            for image in images
            if image.metadata.deletion_timestamp is None and (sha := self._sha_of(image))
        }
        used = await self.in_use()
        gone = [path for path in self.cache.files() if path not in named and path not in used]
        uids = {image.metadata.uid for image in images}
        gone += [path for path in self.cache.partials() if path.name not in uids and path.name not in self._fetches]
        for path in gone:
            await asyncio.to_thread(self.cache.remove, path)
        return gone
