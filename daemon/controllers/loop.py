"""The loop every per-node controller of the agent runs, written once.

A watch of one kind restricted to this node (the ``vapor.io/host`` label,
or another label naming the node, as a server-side selector), a work queue
fed by it, workers that call ``reconcile(key)``, and a periodic resync that
queues every object again. The VM, Mount and both Migration controllers are
this, plus what they do with a key; the work queue holds each key once and
gives it to one worker at a time, so a change that comes in while its
object is being worked on is worked on again right after.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from vapor.kube import Informer, Kube
from vapor.kube._informer import Key, key_of
from vapor.model import Resource, names

from .._config import AgentConfig
from .workqueue import WorkQueue

R = TypeVar("R", bound=Resource)  # type: ignore[type-arg]


class NodeController(Generic[R]):
    """Informer + work queue + workers + resync for the objects of one kind on this node."""

    def __init__(self, kube: Kube, kind: type[R], config: AgentConfig, *, label_selector: str | None = None) -> None:
        self.kube = kube
        self.config = config
        selector = label_selector or f"{names.HOST_LABEL}={config.node_name}"
        self.informer: Informer[R] = Informer(kube, kind, label_selector=selector)
        self.queue: WorkQueue[Key] = WorkQueue()
        self._tasks: list[asyncio.Task[None]] = []

    async def watch(self) -> None:
        """Start the watch and queue every object it lists (after a restart: look at each one again)."""
        self.informer.on_change(lambda event: self.queue.add(key_of(event.object)))
        await self.informer.start()
        self.resync_all()

    def run(self, reconcile: Callable[[Key], Awaitable[None]], *, workers: int = 1, name: str) -> None:
        """Start ``workers`` workers on the queue, and the periodic resync."""
        self._tasks = [asyncio.create_task(self.queue.worker(reconcile), name=f"{name}-{i}") for i in range(workers)]
        self._tasks.append(asyncio.create_task(self._resync(), name=f"{name}-resync"))

    async def stop(self) -> None:
        """Stop the workers, the resync and the watch; what is on the host stays as it is."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.queue.close()
        await self.informer.stop()

    def resync_all(self) -> None:
        """Queue every object of this node for a reconcile."""
        for obj in self.informer.items():
            self.queue.add(key_of(obj))

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.config.resync_interval)
            self.resync_all()
