"""The source host's part of a Migration: libvirt's job, its progress, and how it ended.

A Migration in phase Running without a Completed condition starts one run:
``migrateToURI3`` in a worker thread, watched about once a second (progress
written, timeouts and cancellation enforced by ``abortJob()``), then
endTime, downtimeMs and Completed. A run started by an earlier agent process
is followed to its end, or said to have ended (see :meth:`_resume`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import libvirt  # type: ignore[import-untyped]

from vapor.kube import Kube, KubeError, NotFound
from vapor.kube._informer import Key
from vapor.model import Condition, Host, Migration, MigrationStatus, names
from vapor.model.migration import MigrationProgress

from ..._config import AgentConfig
from ...host.libvirt import Libvirt
from ...host.migrationpki import migration_uri
from .base import MigrationSide, NotReady
from .job import Watch, failure_reason, job_running, migration_flags, now, progress_of

log = logging.getLogger("vapor.agent.migration")


@dataclass
class _Run:
    """One outgoing migration this process watches, and every status field the source owns."""

    key: Key
    start_time: datetime | None = None
    progress: MigrationProgress | None = None
    end_time: datetime | None = None
    downtime_ms: int | None = None
    completed: Condition | None = None
    abort_reason: str | None = None
    abort_message: str = ""
    task: asyncio.Task[None] | None = None

    def status(self, ready: Condition | None) -> MigrationStatus:
        """The source's fields as one apply (TargetReady kept as the target wrote it)."""
        conditions = [c for c in (self.completed, ready) if c is not None]
        return MigrationStatus(
            start_time=self.start_time,
            progress=self.progress,
            end_time=self.end_time,
            downtime_ms=self.downtime_ms,
            conditions=conditions or None,
        )


class MigrationSource(MigrationSide):
    """Migrations leaving this node: run libvirt's job and report it."""

    role = "source"

    def __init__(self, kube: Kube, config: AgentConfig, libvirt_conn: Libvirt) -> None:
        super().__init__(kube, config, libvirt_conn, names.MIGRATION_SOURCE_LABEL)
        self._runs: dict[Key, _Run] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="migrate")

    async def stop(self) -> None:
        """Stop the runs and the watch; libvirt's jobs go on (a restarted agent picks them up)."""
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await super().stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def handle(self, m: Migration) -> None:
        """Start the run of a Running migration, or abort the run when the Migration is cancelled or deleted."""
        key = (m.metadata.namespace or "", m.name)
        run = self._runs.get(key)
        if run is not None:
            if (m.spec.cancel or m.metadata.deletion_timestamp is not None) and run.abort_reason is None:
                run.abort_reason, run.abort_message = "Aborted", "cancelled by the user"
                await self._abort(m)
            return
        if m.phase != "Running" or m.condition(names.ConditionType.COMPLETED) is not None:
            return
        run = _Run(key)
        self._runs[key] = run
        run.task = asyncio.get_running_loop().create_task(self._drive(m, run))
        run.task.add_done_callback(lambda _t: self._runs.pop(key, None))

    def _current(self, m: Migration) -> Migration:
        return self.informer.get(m.name, m.metadata.namespace) or m

    async def _write(self, m: Migration, run: _Run) -> None:
        ready = self._current(m).condition(names.ConditionType.TARGET_READY)
        await self.migrations.apply_status(
            m.name, run.status(ready), namespace=m.metadata.namespace, field_manager=names.FIELD_MANAGER_AGENT
        )

    async def _finish(self, m: Migration, run: _Run, ok: bool, reason: str, message: str) -> None:
        run.end_time = now()
        run.completed = self._current(m).condition_after(
            names.ConditionType.COMPLETED, "True" if ok else "False", reason, message, observe=False
        )
        log.info(
            "migration ended",
            extra={"migration": f"{m.metadata.namespace}/{m.name}", "ok": ok, "reason": reason, "why": message},
        )
        await self._write(m, run)

    async def _abort(self, m: Migration) -> None:
        dom = await self.domain(m)
        if dom is None:
            return
        try:
            await self.libvirt.call(dom.abortJob)
        except libvirt.libvirtError as exc:
            log.warning("abortJob failed", extra={"migration": m.name, "error": str(exc)})

    async def _drive(self, m: Migration, run: _Run) -> None:
        who = f"{m.metadata.namespace}/{m.name}"
        try:
            if m.status is not None and m.status.start_time is not None:
                await self._resume(m, run)
            else:
                await self._migrate(m, run)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except KubeError as exc:
            log.warning("could not write a migration's status", extra={"migration": who, "error": str(exc)})
        except Exception as exc:
            log.exception("migration failed", extra={"migration": who})
            await self._finish(m, run, False, "Failed", f"agent error: {exc}")

    async def _target_uri(self, m: Migration) -> str:
        """qemu+<this node's transport>://<the target Host's migrationAddress>/system (see host.migrationpki)."""
        target = m.target_host
        if not target:
            raise NotReady("Failed", "the Migration names no target host")
        try:
            host = await self.kube.resources(Host).get(target)
        except NotFound as exc:
            raise NotReady("Failed", f"target host {target} does not exist") from exc
        address = host.status.hypervisor.migration_address if host.status and host.status.hypervisor else None
        if not address:
            raise NotReady("Failed", f"target host {target} publishes no migration address")
        transport = self.config.migration_transport
        if transport == "tls" and not self.config.migration_pki.installed():
            raise NotReady(
                "NoCertificate", f"this host has no migration certificate yet (in {self.config.migration_pki.folder})"
            )
        return migration_uri(address, transport, self.config.migration_pki.folder if transport == "tls" else None)

    async def _migrate(self, m: Migration, run: _Run) -> None:
        who = f"{m.metadata.namespace}/{m.name}"
        try:
            uri = await self._target_uri(m)
        except NotReady as exc:
            await self._finish(m, run, False, exc.reason, exc.message)
            return
        dom = await self.domain(m)
        if dom is None:
            await self._finish(m, run, False, "Failed", f"no domain of {m.spec.vm_name} on the source host")
            return
        active = bool(await self.libvirt.call(dom.isActive))
        flags = migration_flags(m, active, tls=self.config.migration_transport == "tls")
        params: dict[str, Any] = {}
        if m.spec.bandwidth_mib_per_second:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = m.spec.bandwidth_mib_per_second
        if active and m.spec.max_downtime_ms:
            try:
                await self.libvirt.call(dom.migrateSetMaxDowntime, m.spec.max_downtime_ms, 0)
            except libvirt.libvirtError as exc:
                log.warning("could not set the maximum downtime", extra={"migration": who, "error": str(exc)})
        memory_kib = (await self.libvirt.call(dom.info))[1]
        run.start_time = now()
        await self._write(m, run)
        log.info("migration starting", extra={"migration": who, "uri": uri, "flags": flags, "params": params})
        job = asyncio.get_running_loop().run_in_executor(self._pool, dom.migrateToURI3, uri, params, flags)
        failure = await self._watch(m, run, dom, memory_kib, job)
        if failure is None:
            await self._succeeded(m, run, dom)
        elif run.abort_reason is not None:
            await self._finish(m, run, False, run.abort_reason, run.abort_message or failure)
        else:
            reason = failure_reason(failure)
            if reason == "TLSFailed":
                failure = (
                    f"{failure} (over {uri.split('?')[0]}: both hosts need a certificate from the migration CA "
                    "that names their migration address)"
                )
            await self._finish(m, run, False, reason, failure)

    async def _watch(
        self,
        m: Migration,
        run: _Run,
        dom: libvirt.virDomain,
        memory_kib: int,
        job: asyncio.Future[Any] | None,
        elapsed: float = 0.0,
    ) -> str | None:
        """Report progress until the job ends; enforce the timeouts. None when it succeeded, else libvirt's error.

        ``elapsed``: seconds the job has run already (it was started by an earlier process).
        """
        watch = Watch(m, memory_kib, time.monotonic() - elapsed)
        while True:
            if job is not None:
                done, _ = await asyncio.wait({job}, timeout=1.0)
                if done:
                    exc = job.exception()
                    return None if exc is None else str(exc)
            else:
                await asyncio.sleep(1.0)
            try:
                stats = await self.libvirt.call(dom.jobStats, 0)
            except libvirt.libvirtError:
                stats = {}
            if job is None and not job_running(stats):
                return "no migration job"  # resumed after a restart: the job has ended; the caller looks where
            if job_running(stats):
                run.progress = progress_of(stats)
                if watch.saw(stats, time.monotonic()):
                    try:
                        await self.libvirt.call(dom.migrateStartPostCopy, 0)
                    except libvirt.libvirtError as exc:
                        log.warning("could not switch to post-copy", extra={"error": str(exc)})
                try:
                    await self._write(m, run)
                except KubeError as exc:
                    log.warning("progress write failed", extra={"migration": m.name, "error": str(exc)})
            if run.abort_reason is None:
                abort = watch.abort(self.informer.get(m.name, m.metadata.namespace), time.monotonic())
                if abort is not None:
                    run.abort_reason, run.abort_message = abort
                    log.info("aborting migration", extra={"migration": m.name, "reason": run.abort_reason})
                    await self._abort(m)

    async def _completed_stats(self, dom: libvirt.virDomain) -> dict[str, Any]:
        try:
            stats: dict[str, Any] = await self.libvirt.call(dom.jobStats, libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
            return stats
        except libvirt.libvirtError:
            return {}

    async def _succeeded(self, m: Migration, run: _Run, dom: libvirt.virDomain) -> None:
        stats = await self._completed_stats(dom)
        if stats:
            run.progress = progress_of(stats).model_copy(update={"percent": 100})
            if stats.get("downtime") is not None:
                run.downtime_ms = int(stats["downtime"])
        else:
            run.progress = (run.progress or MigrationProgress()).model_copy(
                update={"percent": 100, "updated_at": now()}
            )
        if m.spec.undefine_source:
            try:
                await self.libvirt.undefine(dom)
            except libvirt.libvirtError as exc:
                log.warning("could not undefine the source domain", extra={"error": str(exc)})
        await self._finish(m, run, True, "Migrated", f"the domain runs on {m.target_host or '?'}")

    async def _left(self, m: Migration) -> tuple[libvirt.virDomain | None, bool]:
        """The source domain and whether it left this host by migration (gone, or shut off as migrated)."""
        dom = await self.domain(m)
        if dom is None:
            return None, True
        state, reason = await self.libvirt.call(dom.state)
        return dom, state == libvirt.VIR_DOMAIN_SHUTOFF and reason == libvirt.VIR_DOMAIN_SHUTOFF_MIGRATED

    async def _resume(self, m: Migration, run: _Run) -> None:
        """Started by an earlier process: follow a job that still runs, else say how it ended."""
        status = m.status
        assert status is not None
        run.start_time, run.progress = status.start_time, status.progress
        dom, left = await self._left(m)
        if dom is not None and not left and job_running(await self.libvirt.call(dom.jobStats, 0)):
            log.info("following a migration job started before a restart", extra={"migration": m.name})
            memory_kib = (await self.libvirt.call(dom.info))[1]
            elapsed = (datetime.now(UTC) - status.start_time).total_seconds() if status.start_time else 0.0
            await self._watch(m, run, dom, memory_kib, None, max(0.0, elapsed))
            dom, left = await self._left(m)
            if not left:
                reason = run.abort_reason or "Failed"
                message = run.abort_message or "the migration job ended without moving the domain"
                await self._finish(m, run, False, reason, message)
                return
        if left:
            if dom is not None:
                await self._succeeded(m, run, dom)
            else:
                await self._finish(m, run, True, "Migrated", f"the domain left this host for {m.target_host or '?'}")
            return
        await self._finish(
            m,
            run,
            False,
            "AgentRestarted",
            "the agent restarted during the migration and libvirt's job had ended; the VM keeps running on the source",
        )
