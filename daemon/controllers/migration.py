"""The agent's side of a Migration: the target prepares, the source runs libvirt's job.

Two informers with server-side selectors: Migrations labelled
``vapor.io/target-host=<node>`` (this node receives a VM) and
``vapor.io/source-host=<node>`` (this node sends one). The operator drives the
phases; this module only does what the protocol gives the agents
(docs: daemon/README.md, "Migrations"):

- target, phase PreparingTarget: the libvirt networks the VM uses exist and
  are active, disk images exist for copyStorage all/incremental; condition
  TargetReady True or False. After a Failed or Cancelled migration it removes
  the images it made and a domain that half arrived.
- source, phase Running: ``migrateToURI3`` peer-to-peer to the target Host's
  ``status.hypervisor.migrationUri`` in a worker thread, progress from
  ``jobStats()`` about every second, completion and progress timeouts and
  cancellation by ``abortJob()``, then endTime, downtimeMs and condition
  Completed.

Every write is a server-side apply with the agent's field manager; the source
repeats every field it owns in each apply (and keeps TargetReady as it is), so
fields the two sides own on one object never remove each other.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import libvirt  # type: ignore[import-untyped]

from vapor.kube import Informer, Kube, KubeError, NotFound
from vapor.model import Host, Migration, VirtualMachine, names, quantity_bytes
from vapor.model.migration import TERMINAL_PHASES

from .._config import AgentConfig
from ..host import domain as _domain
from ..host.libvirt import Libvirt

log = logging.getLogger("vapor.agent.migration")

Key = tuple[str, str, str]  # (role, namespace, name)
SOURCE, TARGET = "source", "target"
_GIB = 2**30
_UNDEFINE_FLAGS = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(ctype: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": ctype,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message[:4000],
        "lastTransitionTime": _now(),
    }


def migration_flags(m: Migration, active: bool) -> int:
    """The libvirt flags for a Migration's spec; ``active`` says whether the domain runs now."""
    spec = m.spec
    flags: int = libvirt.VIR_MIGRATE_PEER2PEER
    if not active:
        return int(flags | libvirt.VIR_MIGRATE_OFFLINE | libvirt.VIR_MIGRATE_PERSIST_DEST)
    if spec.live:
        flags |= libvirt.VIR_MIGRATE_LIVE
        if spec.auto_converge:
            flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
        if spec.post_copy:
            flags |= libvirt.VIR_MIGRATE_POSTCOPY
    if spec.persistent:
        flags |= libvirt.VIR_MIGRATE_PERSIST_DEST
    if spec.copy_storage == "all":
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
    elif spec.copy_storage == "incremental":
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_INC
    # UNDEFINE_SOURCE is done by the agent after reading the finished job's statistics (downtime).
    return flags


def progress_of(stats: dict[str, Any]) -> dict[str, Any]:
    """status.progress from libvirt's job statistics."""
    total = stats.get("data_total") or 0
    processed = stats.get("data_processed")
    remaining = stats.get("data_remaining")
    percent = 0
    if total and remaining is not None:
        percent = max(0, min(100, int((total - remaining) * 100 / total)))
    out: dict[str, Any] = {"percent": percent, "updatedAt": _now()}
    for key, value in (
        ("dataTotalBytes", stats.get("data_total")),
        ("dataProcessedBytes", processed),
        ("dataRemainingBytes", remaining),
        ("memoryIteration", stats.get("memory_iteration")),
        ("memoryDirtyRate", stats.get("memory_dirty_rate")),
    ):
        if value is not None:
            out[key] = int(value)
    return out


@dataclass
class _Run:
    """One outgoing migration this process watches."""

    key: Key
    status: dict[str, Any] = field(default_factory=dict)  # every status field the source owns
    abort_reason: str | None = None
    abort_message: str = ""
    task: asyncio.Task[None] | None = None


class MigrationController:
    """The node's part of every Migration that leaves from it or arrives at it."""

    def __init__(self, kube: Kube, config: AgentConfig, libvirt_conn: Libvirt) -> None:
        self.kube = kube
        self.config = config
        self.libvirt = libvirt_conn
        self.migrations = kube.resources(Migration)
        node = config.node_name
        self.sources: Informer[Migration] = Informer(
            kube, Migration, label_selector=f"{names.MIGRATION_SOURCE_LABEL}={node}"
        )
        self.targets: Informer[Migration] = Informer(
            kube, Migration, label_selector=f"{names.MIGRATION_TARGET_LABEL}={node}"
        )
        self._runs: dict[Key, _Run] = {}
        self._busy: set[Key] = set()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="migrate")
        self._records = config.state_dir / "migrations"

    async def start(self) -> None:
        """Watch both selectors and look at every Migration once (a restart resumes or ends what ran)."""
        self.sources.on_change(lambda e: self._kick(SOURCE, e.object))
        self.targets.on_change(lambda e: self._kick(TARGET, e.object))
        await self.sources.start()
        await self.targets.start()
        for m in self.sources.items():
            self._kick(SOURCE, m)
        for m in self.targets.items():
            self._kick(TARGET, m)
        log.info("watching migrations", extra={"node": self.config.node_name})

    async def stop(self) -> None:
        """Stop watching; libvirt's jobs go on (a restarted agent picks them up)."""
        for run in list(self._runs.values()):
            if run.task is not None:
                run.task.cancel()
        await asyncio.gather(*(r.task for r in self._runs.values() if r.task), return_exceptions=True)
        await self.sources.stop()
        await self.targets.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _kick(self, role: str, m: Migration) -> None:
        key = (role, m.metadata.namespace or "", m.name)
        if key in self._busy:
            return
        self._busy.add(key)
        task = asyncio.get_running_loop().create_task(self._handle(key))
        task.add_done_callback(lambda _t: self._busy.discard(key))

    async def _handle(self, key: Key) -> None:
        role, namespace, name = key
        informer = self.sources if role == SOURCE else self.targets
        m = informer.get(name, namespace)
        if m is None:
            return
        try:
            if role == TARGET:
                await self._target(m)
            else:
                await self._source(m)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception:
            log.exception("migration step failed", extra={"migration": f"{namespace}/{name}", "role": role})
        fresh = informer.get(name, namespace)
        if fresh is not None and fresh.metadata.resource_version != m.metadata.resource_version:
            asyncio.get_running_loop().call_later(0.1, self._kick, role, fresh)

    # -- helpers -------------------------------------------------------------------------------
    async def _vm(self, m: Migration) -> VirtualMachine | None:
        try:
            return await self.kube.resources(VirtualMachine).get(m.spec.vm_name, m.metadata.namespace)
        except NotFound:
            return None

    async def _domain(self, m: Migration) -> libvirt.virDomain | None:
        name = _domain.domain_name(m.metadata.namespace or "", m.spec.vm_name)
        try:
            return await self.libvirt.call(self.libvirt.connection().lookupByName, name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def _record_path(self, m: Migration) -> Path:
        return self._records / f"{m.metadata.uid}.json"

    # -- target --------------------------------------------------------------------------------
    async def _target(self, m: Migration) -> None:
        phase = m.status.phase if m.status else None
        ready = m.condition(names.ConditionType.TARGET_READY)
        if phase == "PreparingTarget" and ready is None:
            await self._prepare(m)
        elif phase in ("Failed", "Cancelled"):
            await self._clean_target(m)
        elif phase == "Succeeded":
            self._record_path(m).unlink(missing_ok=True)

    async def _prepare(self, m: Migration) -> None:
        who = f"{m.metadata.namespace}/{m.name}"
        ok, reason, message = True, "Prepared", "networks and storage ready"
        made: list[str] = []
        try:
            vm = await self._vm(m)
            if vm is None:
                raise _NotReady("VMNotFound", f"VirtualMachine {m.spec.vm_name} does not exist")
            await self._prepare_networks(vm)
            made = await self._prepare_disks(m, vm)
            if made:
                message = f"networks ready; created {len(made)} disk image(s) for the copy"
        except _NotReady as exc:
            ok, reason, message = False, exc.reason, exc.message
        except libvirt.libvirtError as exc:
            ok, reason, message = False, "LibvirtError", str(exc)
        if made:
            self._records.mkdir(parents=True, exist_ok=True)
            self._record_path(m).write_text(json.dumps({"created": made}))
        log.info("target prepared" if ok else "target not ready", extra={"migration": who, "reason": reason})
        await self.migrations.apply_status(
            m.name,
            {"conditions": [_condition(names.ConditionType.TARGET_READY, ok, reason, message)]},
            namespace=m.metadata.namespace,
            field_manager=names.FIELD_MANAGER_AGENT,
        )

    async def _prepare_networks(self, vm: VirtualMachine) -> None:
        conn = self.libvirt.connection()
        for net in vm.spec.networks or []:
            if net.type != "network":
                continue
            source = net.source or "default"
            try:
                network = await self.libvirt.call(conn.networkLookupByName, source)
            except libvirt.libvirtError as exc:
                raise _NotReady("NetworkMissing", f"libvirt network {source} does not exist on this host") from exc
            if not await self.libvirt.call(network.isActive):
                await self.libvirt.call(network.create)
                log.info("started libvirt network for an arriving VM", extra={"network": source})

    async def _prepare_disks(self, m: Migration, vm: VirtualMachine) -> list[str]:
        """Empty images of the same size and format at the same paths, for copyStorage all/incremental."""
        if m.spec.copy_storage == "none":
            return []
        made: list[str] = []
        for disk in vm.spec.disks or []:
            if disk.size is not None:
                path = _domain.created_disk_path(self.config.disks_dir, vm.metadata.uid or "", disk)
                size, fmt = quantity_bytes(disk.size), "qcow2"
            else:
                path = Path(disk.path or "")
                if path.exists():
                    continue
                raise _NotReady(
                    "StorageMissing", f"disk {disk.name}: {path} is missing here and its size is not in the spec"
                )
            if path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.parent.chmod(0o711)
            proc = await asyncio.create_subprocess_exec(
                "qemu-img", "create", "-q", "-f", fmt, str(path), str(size),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            out, _ = await proc.communicate()
            if proc.returncode != 0:
                raise _NotReady("StorageFailed", f"disk {disk.name}: qemu-img failed: {out.decode().strip()}")
            made.append(str(path))
        return made

    async def _clean_target(self, m: Migration) -> None:
        """After a failed or cancelled migration: nothing of it stays here."""
        vm = await self._vm(m)
        placed_here = vm is not None and (vm.metadata.labels or {}).get(names.HOST_LABEL) == self.config.node_name
        if not placed_here:
            dom = await self._domain(m)
            if dom is not None:
                if await self.libvirt.call(dom.isActive):
                    try:
                        await self.libvirt.call(dom.destroy)
                    except libvirt.libvirtError as exc:
                        log.warning("could not stop a half-arrived domain", extra={"error": str(exc)})
                with contextlib.suppress(libvirt.libvirtError):  # transient: gone with the destroy
                    await self.libvirt.call(dom.undefineFlags, _UNDEFINE_FLAGS)
                log.info("removed a half-arrived domain", extra={"migration": f"{m.metadata.namespace}/{m.name}"})
        record = self._record_path(m)
        if record.exists():
            if not placed_here:
                for path in json.loads(record.read_text()).get("created", []):
                    Path(path).unlink(missing_ok=True)
                    with contextlib.suppress(OSError):
                        Path(path).parent.rmdir()
            record.unlink(missing_ok=True)

    # -- source --------------------------------------------------------------------------------
    async def _source(self, m: Migration) -> None:
        key = (SOURCE, m.metadata.namespace or "", m.name)
        run = self._runs.get(key)
        stopping = m.spec.cancel or m.metadata.deletion_timestamp is not None
        if run is not None:
            if stopping and run.abort_reason is None:
                run.abort_reason, run.abort_message = "Aborted", "cancelled by the user"
                await self._abort(m)
            return
        phase = m.status.phase if m.status else None
        if phase in TERMINAL_PHASES or phase != "Running":
            return
        if m.condition(names.ConditionType.COMPLETED) is not None:
            return
        run = _Run(key)
        self._runs[key] = run
        run.task = asyncio.get_running_loop().create_task(self._drive(m, run))
        run.task.add_done_callback(lambda _t: self._runs.pop(key, None))

    async def _write(self, m: Migration, run: _Run) -> None:
        status = dict(run.status)
        current = self.sources.get(m.name, m.metadata.namespace) or m
        ready = current.condition(names.ConditionType.TARGET_READY)
        conditions = list(status.pop("conditions", []))
        if ready is not None:  # kept as the target wrote it (one field manager for both agents)
            conditions.append(ready.model_dump(by_alias=True, mode="json", exclude_none=True))
        if conditions:
            status["conditions"] = conditions
        await self.migrations.apply_status(
            m.name, status, namespace=m.metadata.namespace, field_manager=names.FIELD_MANAGER_AGENT
        )

    async def _finish(self, m: Migration, run: _Run, ok: bool, reason: str, message: str) -> None:
        run.status["endTime"] = _now()
        run.status["conditions"] = [_condition(names.ConditionType.COMPLETED, ok, reason, message)]
        log.info(
            "migration ended",
            extra={"migration": f"{m.metadata.namespace}/{m.name}", "ok": ok, "reason": reason, "why": message},
        )
        await self._write(m, run)

    async def _abort(self, m: Migration) -> None:
        dom = await self._domain(m)
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
        target = m.status.target_host if m.status else None
        if not target:
            raise _NotReady("Failed", "the Migration names no target host")
        try:
            host = await self.kube.resources(Host).get(target)
        except NotFound as exc:
            raise _NotReady("Failed", f"target host {target} does not exist") from exc
        uri = host.status.hypervisor.migration_uri if host.status and host.status.hypervisor else None
        if not uri:
            raise _NotReady("Failed", f"target host {target} publishes no migration URI")
        return uri

    async def _migrate(self, m: Migration, run: _Run) -> None:
        who = f"{m.metadata.namespace}/{m.name}"
        try:
            uri = await self._target_uri(m)
        except _NotReady as exc:
            await self._finish(m, run, False, exc.reason, exc.message)
            return
        dom = await self._domain(m)
        if dom is None:
            await self._finish(m, run, False, "Failed", f"no domain of {m.spec.vm_name} on the source host")
            return
        active = bool(await self.libvirt.call(dom.isActive))
        flags = migration_flags(m, active)
        params: dict[str, Any] = {}
        if m.spec.bandwidth_mib_per_second:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = m.spec.bandwidth_mib_per_second
        if active and m.spec.max_downtime_ms:
            try:
                await self.libvirt.call(dom.migrateSetMaxDowntime, m.spec.max_downtime_ms, 0)
            except libvirt.libvirtError as exc:
                log.warning("could not set the maximum downtime", extra={"migration": who, "error": str(exc)})
        memory_kib = (await self.libvirt.call(dom.info))[1]
        run.status["startTime"] = _now()
        await self._write(m, run)
        log.info("migration starting", extra={"migration": who, "uri": uri, "flags": flags, "params": params})
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self._pool, dom.migrateToURI3, uri, params, flags)
        failure = await self._watch(m, run, dom, memory_kib, job)
        if failure is None:
            await self._succeeded(m, run, dom)
        elif run.abort_reason is not None:
            await self._finish(m, run, False, run.abort_reason, run.abort_message or failure)
        else:
            await self._finish(m, run, False, "Failed", failure)

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
        started = time.monotonic() - elapsed
        limit = m.spec.completion_timeout_per_gib * max(memory_kib * 1024 / _GIB, 1 / 64)
        best: tuple[float, int] | None = None  # least data remaining so far, highest memory iteration
        last_progress = started
        postcopy_asked = False
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
            if job is None and stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
                return "no migration job"  # resumed after a restart: the job has ended; the caller looks where
            if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE:
                run.status["progress"] = progress_of(stats)
                remaining = stats.get("data_remaining")
                iteration = stats.get("memory_iteration") or 0
                if remaining is not None and (best is None or remaining < best[0] or iteration > best[1]):
                    best = (min(remaining, best[0]) if best else remaining, max(iteration, best[1] if best else 0))
                    last_progress = time.monotonic()
                if m.spec.post_copy and not postcopy_asked and iteration >= 3:
                    postcopy_asked = True
                    try:
                        await self.libvirt.call(dom.migrateStartPostCopy, 0)
                    except libvirt.libvirtError as exc:
                        log.warning("could not switch to post-copy", extra={"error": str(exc)})
                try:
                    await self._write(m, run)
                except KubeError as exc:
                    log.warning("progress write failed", extra={"migration": m.name, "error": str(exc)})
            now = time.monotonic()
            current = self.sources.get(m.name, m.metadata.namespace)
            if run.abort_reason is None:
                if current is not None and (current.spec.cancel or current.metadata.deletion_timestamp is not None):
                    run.abort_reason, run.abort_message = "Aborted", "cancelled by the user"
                elif now - started > limit:
                    run.abort_reason = "CompletionTimeout"
                    run.abort_message = f"not done after {int(limit)} s ({m.spec.completion_timeout_per_gib} s per GiB)"
                elif now - last_progress > m.spec.progress_timeout_seconds:
                    run.abort_reason = "ProgressTimeout"
                    run.abort_message = f"no progress for {m.spec.progress_timeout_seconds} s"
                if run.abort_reason is not None:
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
            run.status["progress"] = {**progress_of(stats), "percent": 100}
            if stats.get("downtime") is not None:
                run.status["downtimeMs"] = int(stats["downtime"])
        else:
            run.status["progress"] = {**run.status.get("progress", {}), "percent": 100, "updatedAt": _now()}
        if m.spec.undefine_source:
            try:
                await self.libvirt.call(dom.undefineFlags, _UNDEFINE_FLAGS)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    log.warning("could not undefine the source domain", extra={"error": str(exc)})
        await self._finish(m, run, True, "Migrated", f"the domain runs on {m.status.target_host if m.status else '?'}")

    async def _left(self, m: Migration) -> tuple[libvirt.virDomain | None, bool]:
        """The source domain and whether it left this host by migration (gone, or shut off as migrated)."""
        dom = await self._domain(m)
        if dom is None:
            return None, True
        state, reason = await self.libvirt.call(dom.state)
        return dom, state == libvirt.VIR_DOMAIN_SHUTOFF and reason == libvirt.VIR_DOMAIN_SHUTOFF_MIGRATED

    async def _resume(self, m: Migration, run: _Run) -> None:
        """Started by an earlier process: follow a job that still runs, else say how it ended."""
        status = m.status
        assert status is not None
        run.status = {
            k: v
            for k, v in {
                "startTime": status.start_time.strftime("%Y-%m-%dT%H:%M:%SZ") if status.start_time else None,
                "progress": status.progress.model_dump(by_alias=True, mode="json", exclude_none=True)
                if status.progress
                else None,
            }.items()
            if v is not None
        }
        dom, left = await self._left(m)
        if dom is not None and not left:
            stats = await self.libvirt.call(dom.jobStats, 0)
            if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE:
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
                target = status.target_host or "?"
                await self._finish(m, run, True, "Migrated", f"the domain left this host for {target}")
            return
        await self._finish(
            m,
            run,
            False,
            "AgentRestarted",
            "the agent restarted during the migration and libvirt's job had ended; the VM keeps running on the source",
        )


class _NotReady(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
