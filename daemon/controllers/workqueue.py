"""A queue of object keys to reconcile, as controller-runtime's workqueue has it.

A key waits in the queue at most once however often it is added; a key added
while a worker holds it is queued again when the worker is done, so two
workers never reconcile the same object at once and no change is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")

log = logging.getLogger("vapor.agent.workqueue")


class WorkQueue(Generic[K]):
    """Keys to work on, each processed by one worker at a time."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}

    def add(self, key: K) -> None:
        """Ask for ``key`` to be worked on soon."""
        if key in self._queued:
            return
        if key in self._active:
            self._dirty.add(key)
            return
        self._queued.add(key)
        self._queue.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        """Ask for ``key`` to be worked on after ``delay`` seconds (the earliest such request wins)."""
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def __len__(self) -> int:
        return len(self._queued) + len(self._active)

    async def worker(self, work: Callable[[K], Awaitable[None]]) -> None:
        """Take keys and run ``work`` on each, forever; failures are logged by ``work``'s caller."""
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._active.add(key)
            try:
                await work(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("work on %s failed", key)
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)

    def close(self) -> None:
        """Cancel the delayed additions."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
