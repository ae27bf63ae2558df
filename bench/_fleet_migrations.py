"""LOAD GENERATOR: the agents' part of Migrations between played hosts (bench/_fleet.py), for the drain figure.

Not an agent, and in no functional test: it writes what the two agents of a
migration would report, with played delays, so the operator's side of a
drain (one Migration per VM, the queue and its limits, the moves) can be
timed on many hosts:

- the target: once a Migration is PreparingTarget towards a played host,
  TargetReady True after ``prepare`` seconds (networks and storage ready);
- the source: once it is Running from a played host, Completed True
  (reason Migrated, with start and end times, downtime and 100 percent)
  after ``transfer`` seconds, libvirt's job for a small idle VM; as the real
  source agent does, its apply keeps the TargetReady condition the target wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from vapor.kube import Informer, Kube, WatchEvent
from vapor.model import Condition, Migration, MigrationStatus, names
from vapor.model.migration import MigrationProgress


@dataclass
class PlayedMigrations:
    """Plays both agents of every Migration whose hosts ``played(host)`` says are the load tool's."""

    kube: Kube
    played: Callable[[str | None], bool]
    prepare: float = 0.5
    transfer: float = 2.0
    succeeded: int = 0
    _busy: set[str] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _informer: Informer[Migration] | None = None

    async def start(self) -> None:
        """Follow every Migration."""
        self._informer = Informer(self.kube, Migration)
        self._informer.on_change(self._changed)
        await self._informer.start(timeout=60)

    async def stop(self) -> None:
        """Stop the watch and the played work in flight."""
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._informer:
            await self._informer.stop()

    def _changed(self, event: WatchEvent[Migration]) -> None:
        m = event.object
        key = f"{m.metadata.namespace}/{m.name}"
        if event.type == "DELETED" or key in self._busy or m.status is None:
            return
        ready = m.condition(names.ConditionType.TARGET_READY)
        if m.phase == "PreparingTarget" and ready is None and self.played(m.target_host):
            self._play(key, self._prepare(m, ready))
        elif m.phase == "Running" and m.condition(names.ConditionType.COMPLETED) is None:
            if self.played(m.status.source_host):
                self._play(key, self._transfer(m, ready))
        elif m.phase == "Succeeded":
            self.succeeded += 1

    def _play(self, key: str, work: Coroutine[Any, Any, None]) -> None:
        self._busy.add(key)
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(lambda t: (self._tasks.discard(t), self._busy.discard(key)))

    async def _prepare(self, m: Migration, ready: Condition | None) -> None:
        await asyncio.sleep(self.prepare)
        ready = m.condition_after(
            names.ConditionType.TARGET_READY, "True", "Prepared", "played: networks and storage ready", observe=False
        )
        await self._apply(m, MigrationStatus(conditions=[ready]))

    async def _transfer(self, m: Migration, ready: Condition | None) -> None:
        start = dt.datetime.now(dt.UTC)
        await asyncio.sleep(self.transfer)
        completed = m.condition_after(
            names.ConditionType.COMPLETED, "True", "Migrated", f"played: the domain runs on {m.target_host}",
            observe=False,
        )  # fmt: skip
        status = MigrationStatus(
            start_time=start,
            end_time=dt.datetime.now(dt.UTC),
            downtime_ms=20,
            progress=MigrationProgress(percent=100),
            conditions=[c for c in (completed, ready) if c is not None],
        )
        await self._apply(m, status)

    async def _apply(self, m: Migration, status: MigrationStatus) -> None:
        with contextlib.suppress(Exception):  # a Migration deleted meanwhile
            await self.kube.resources(Migration).apply_status(
                m.name, status, namespace=m.metadata.namespace, field_manager=names.FIELD_MANAGER_AGENT
            )
