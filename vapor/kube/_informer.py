"""A watch cache of one kind: list once, then follow the watch, re-listing when history is gone.

Readers get the current objects from memory (``items()``, ``get()``,
``by_uid()``) with no call to the API server; ``generation`` grows on every
change so that a reader can cache what it derives (an encoded response body)
and rebuild it only when the cache moved. Callbacks see each change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from ..model import Resource
from ._client import Kube, Resources, WatchEvent
from ._errors import KubeError

R = TypeVar("R", bound=Resource)  # type: ignore[type-arg]
Key = tuple[str, str]  # (namespace or "", name)
Handler = Callable[[WatchEvent[R]], Awaitable[None] | None]

log = logging.getLogger("vapor.kube.informer")


def key_of(obj: Resource) -> Key:  # type: ignore[type-arg]
    """Cache key of an object: (namespace or "", name)."""
    return (obj.metadata.namespace or "", obj.name)


class Informer(Generic[R]):
    """Keeps every object of a kind (optionally filtered by labels on the server) in memory."""

    def __init__(
        self,
        kube: Kube,
        kind: type[R],
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        watch_timeout: int = 300,
        retry_delay: float = 1.0,
        managed_fields: bool = True,
    ) -> None:
        """``managed_fields=False``: keep the objects without metadata.managedFields (half a VM's size)."""
        self.resources: Resources[R] = kube.resources(kind)
        self.managed_fields = managed_fields
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.watch_timeout = watch_timeout
        self.retry_delay = retry_delay
        self.generation = 0
        self._objects: dict[Key, R] = {}
        self._by_uid: dict[str, Key] = {}
        self._handlers: list[Handler[R]] = []
        self._synced = asyncio.Event()
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    # -- reading -------------------------------------------------------------------
    def items(self) -> list[R]:
        """Every cached object."""
        return list(self._objects.values())

    def get(self, name: str, namespace: str | None = None) -> R | None:
        """The cached object by name, or None."""
        return self._objects.get((namespace or "", name))

    def by_uid(self, uid: str) -> R | None:
        """The cached object by metadata.uid, or None."""
        key = self._by_uid.get(uid)
        return self._objects.get(key) if key else None

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds after some change, or the timeout passes."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(predicate), timeout)
            except TimeoutError:
                return False
        return True

    # -- lifecycle -----------------------------------------------------------------
    def on_change(self, handler: Handler[R]) -> None:
        """Call ``handler`` (sync or async) for every change after the first list."""
        self._handlers.append(handler)

    async def start(self, timeout: float = 30.0) -> None:
        """Start following the kind and wait until the first list is in the cache."""
        self._task = asyncio.create_task(self._run(), name=f"informer-{self.kind.plural()}")
        await asyncio.wait_for(self._synced.wait(), timeout)

    async def stop(self) -> None:
        """Stop following."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- internals -----------------------------------------------------------------
    async def _run(self) -> None:
        version: str | None = None
        while True:
            try:
                if version is None:
                    version = await self._relist()
                async for event in self.resources.watch(
                    self.namespace,
                    label_selector=self.label_selector,
                    resource_version=version,
                    timeout_seconds=self.watch_timeout,
                    managed_fields=self.managed_fields,
                ):
                    version = event.object.metadata.resource_version or version
                    await self._apply(event)
            except KubeError as exc:
                if exc.status == 410:  # history compacted: start again from a fresh list
                    log.info("%s watch expired; listing again", self.kind.plural())
                    version = None
                    continue
                log.warning("%s watch failed: %s; retrying", self.kind.plural(), exc)
                await asyncio.sleep(self.retry_delay)
            except asyncio.CancelledError:
                raise
            except Exception:  # a network drop must not end the cache
                log.exception("%s watch broke; listing again", self.kind.plural())
                version = None
                await asyncio.sleep(self.retry_delay)

    async def _relist(self) -> str:
        objects, version = await self.resources.list(
            self.namespace, label_selector=self.label_selector, managed_fields=self.managed_fields
        )
        fresh = {key_of(o): o for o in objects}
        gone = [o for k, o in self._objects.items() if k not in fresh]
        synced = self._synced.is_set()
        self._objects = fresh
        self._by_uid = {o.metadata.uid: k for k, o in fresh.items() if o.metadata.uid}
        if synced:  # tell handlers what a re-list changed
            for obj in gone:
                await self._notify(WatchEvent("DELETED", obj))
            for obj in objects:
                await self._notify(WatchEvent("MODIFIED", obj))
        await self._changed_now()
        self._synced.set()
        return version

    async def _apply(self, event: WatchEvent[R]) -> None:
        key = key_of(event.object)
        if event.type == "DELETED":
            self._objects.pop(key, None)
            if event.object.metadata.uid:
                self._by_uid.pop(event.object.metadata.uid, None)
        else:
            self._objects[key] = event.object
            if event.object.metadata.uid:
                self._by_uid[event.object.metadata.uid] = key
        await self._notify(event)  # handlers first: a waiter woken below sees their effects too
        await self._changed_now()

    async def _changed_now(self) -> None:
        self.generation += 1
        async with self._changed:
            self._changed.notify_all()

    async def _notify(self, event: WatchEvent[R]) -> None:
        for handler in self._handlers:
            try:
                result = handler(event)
                if result is not None:
                    await result
            except Exception:
                log.exception("%s handler failed on %s %s", self.kind.plural(), event.type, event.object.name)
