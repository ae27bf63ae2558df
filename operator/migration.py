"""Driving Migrations through their phases: the kopf side of :mod:`vapor.rules.migrations`.

Pending (checked; pre-flight conditions; while the target fetches the VM's
Images, ImageReady False with reason ImageFetching, and it waits) -> Scheduling (queued within the
limits, status.queuePosition; :mod:`.migration_queue`) -> PreparingTarget
(labels, finalizer, the VM's annotation: the agents take over) -> Running
(the target agent reported TargetReady) -> Succeeded / Failed / Cancelled
(the source agent reported Completed). Every decision is taken on the
ledger under its one lock, and every fact lives in the resources: a
restarted operator picks up where the last one stopped.
docs: /work/notes/MIGRATION_PROTOCOL.md.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import kopf

from vapor.kube import Conflict, NotFound
from vapor.model import GROUP, VERSION, Host, Migration
from vapor.model.names import MIGRATION_FINALIZER, ConditionType
from vapor.rules.images import IMAGE_FETCHING
from vapor.rules.migrations import Check

from ._state import Memo
from .ledger import Ledger
from .migration_queue import check_on, schedule_pass
from .migration_status import event, fail, finish, move_vm, moved, write_status
from .settings import SOURCE_LOST_GRACE

log = logging.getLogger("vapor.operator.migration")


async def reconcile(ledger: Ledger, namespace: str, name: str) -> None:
    """Move one Migration on as far as the facts allow (idempotent)."""
    async with ledger.lock:
        try:  # fresh: an event may be older than the operator's own last write
            m = await ledger.kube.resources(Migration).get(name, namespace)
        except NotFound:
            return
        ledger.wrote(m)
        was_active = m.is_active
        try:
            m = await _step(ledger, m)
        except (NotFound, Conflict) as exc:  # changed or gone meanwhile: the next event or recheck decides again
            log.info("migration=%s/%s: an object changed while deciding: %s", namespace, name, exc)
    if was_active and not m.is_terminal:
        return  # a pass is needed only when an active one ended and gave its slot back
    await schedule_pass(ledger)


async def _step(ledger: Ledger, m: Migration) -> Migration:
    """One step; the Migration after it."""
    phase = m.phase
    if m.is_terminal:
        await finish(ledger, m)
        return m
    stopping = m.spec.cancel or m.metadata.deletion_timestamp is not None
    if phase in (None, "Pending", "Scheduling", "PreparingTarget") and stopping:
        why = "deleted" if m.metadata.deletion_timestamp is not None else "cancelled"
        m = await write_status(ledger, m, phase="Cancelled", queue_position=None)
        await event(ledger, m, "MigrationCancelled", f"Migration {why} before it started; the VM stays where it was")
        await finish(ledger, m)
        return m
    if phase is None:
        m = await write_status(ledger, m, phase="Pending")
        phase = "Pending"
    if phase == "Pending":
        return await _check_pending(ledger, m)
    if phase == "PreparingTarget":
        return await _watch_preparing(ledger, m)
    if phase == "Running":
        return await _watch_running(ledger, m)
    return m


async def _check_pending(ledger: Ledger, m: Migration) -> Migration:
    result = check_on(ledger, m)
    conditions = result.conditions or None
    if result.refusal:
        return await fail(ledger, m, result.refusal, "MigrationRefused", conditions=conditions)
    assert result.destination is not None
    if result.fetching:
        return await _wait_for_images(ledger, m, result)
    m = await write_status(
        ledger,
        m,
        phase="Scheduling",
        source_host=result.source,
        target_host=result.destination.name,
        conditions=conditions,
    )
    await event(
        ledger,
        m,
        "MigrationChecked",
        f"Pre-flight checks passed: {m.spec.vm_name} can move from {result.source} to {result.destination.name}",
    )
    return m


async def _wait_for_images(ledger: Ledger, m: Migration, result: Check) -> Migration:
    """Stay Pending with the target named (it joins the Images' fetchHosts) until it holds the VM's images."""
    assert result.destination is not None
    before = m.condition(ConditionType.IMAGE_READY)
    m = await write_status(
        ledger,
        m,
        phase="Pending",
        source_host=result.source,
        target_host=result.destination.name,
        conditions=result.conditions,
    )
    if before is None or before.reason != IMAGE_FETCHING:
        ready = m.condition(ConditionType.IMAGE_READY)
        await event(ledger, m, "ImageFetching", f"Waiting for {result.destination.name} to fetch the VM's images: "
                    + (ready.message if ready else ""))  # fmt: skip
    return m


def _host_lost(ledger: Ledger, *names: str | None) -> str | None:
    for name in names:
        if not name:
            continue
        host = ledger.host(name)
        if host is None:
            return f"host {name} no longer exists"
        if not host.is_ready:
            ready = host.condition(ConditionType.READY)
            return f"host {name} became NotReady ({ready.message if ready else 'no heartbeat'})"
    return None


async def _watch_preparing(ledger: Ledger, m: Migration) -> Migration:
    target_ready = m.condition(ConditionType.TARGET_READY)
    if target_ready is not None and target_ready.status == "False":
        why = f"{target_ready.reason}: {target_ready.message}"
        return await fail(ledger, m, f"target host {m.target_host or '?'} could not prepare: {why}", "TargetNotReady")
    vm = ledger.vm_of(m)
    if vm is None or vm.metadata.deletion_timestamp is not None:
        return await fail(ledger, m, f"VirtualMachine {m.spec.vm_name} was deleted before the move began", "VMDeleted")
    lost = _host_lost(ledger, m.status.source_host if m.status else None, m.target_host)
    if lost:
        return await fail(ledger, m, f"{lost} while the target was being prepared", "HostNotReady")
    if target_ready is not None and target_ready.status == "True":
        m = await write_status(ledger, m, phase="Running")
        await event(ledger, m, "MigrationRunning", f"Target {m.target_host} is ready; moving")
    return m


def _source_lost(ledger: Ledger, m: Migration) -> str | None:
    """Why a running migration can never hear from its source agent again, or None while it may.

    Only the source agent ends libvirt's job and reports Completed: once its host is gone, or NotReady
    for longer than SOURCE_LOST_GRACE, the migration is over (and its finalizer must not hold a deletion).
    """
    source = m.status.source_host if m.status else None
    if not source:
        return None
    host = ledger.host(source)
    if host is None:
        return f"source host {source} no longer exists; the migration cannot complete without its agent"
    ready = host.condition(ConditionType.READY)
    if ready is None or ready.status == "True" or ready.last_transition_time is None:
        return None
    lost_for = (dt.datetime.now(dt.UTC) - ready.last_transition_time).total_seconds()
    if lost_for < SOURCE_LOST_GRACE:
        return None
    return (
        f"source host {source} lost: NotReady for {int(lost_for)}s ({ready.message or ready.reason}), longer than the "
        f"{SOURCE_LOST_GRACE:.0f}s grace; the migration cannot complete without its agent and the VM stays on {source}"
    )


async def _watch_running(ledger: Ledger, m: Migration) -> Migration:
    completed = m.condition(ConditionType.COMPLETED)
    if completed is None or completed.status == "Unknown":
        lost = _source_lost(ledger, m)
        if lost:
            return await fail(ledger, m, lost, "SourceHostLost")
        return m
    if completed.status == "True":
        vm = ledger.vm_of(m)
        if vm is not None:  # the VM first, then the phase: Succeeded means it is placed on the target
            vm = await move_vm(ledger, m, vm)
        m = await write_status(ledger, m, phase="Succeeded")
        if vm is not None:
            await moved(ledger, m, vm)
        await event(ledger, m, "MigrationSucceeded", f"{m.spec.vm_name} now runs on {m.target_host}")
        await finish(ledger, m)
        return m
    cancelled = m.spec.cancel or m.metadata.deletion_timestamp is not None
    why = f"{completed.reason}: {completed.message}" if completed.message else completed.reason
    if cancelled and completed.reason == "Aborted":
        m = await write_status(ledger, m, phase="Cancelled", failure_reason=f"cancelled: {why}"[:4000])
        await event(ledger, m, "MigrationCancelled", f"Migration aborted; {m.spec.vm_name} keeps running on the source")
        await finish(ledger, m)
        return m
    return await fail(ledger, m, why, "MigrationFailed")


# -- kopf ------------------------------------------------------------------------------------------


def done_with(m: Migration) -> bool:
    """Ended, and its clean-up done (the finalizer is gone): nothing left for the operator but its slot."""
    return m.is_terminal and MIGRATION_FINALIZER not in (m.metadata.finalizers or [])


@kopf.on.event(GROUP, VERSION, "migrations")
async def migration_changed(type: str, namespace: str | None, name: str, body: kopf.Body, memo: Memo, **_: Any) -> None:
    """Act on every change of a Migration (its spec, the agents' conditions, its deletion)."""
    ledger = memo.books
    if type == "DELETED":
        await schedule_pass(ledger)  # a slot may be free now
        return
    m = Migration.from_api(dict(body))
    if done_with(m):
        await schedule_pass(ledger)  # nothing left to do for it, but its slot may be free now
        return
    if m.phase == "Running" and m.condition(ConditionType.COMPLETED) is None:
        return  # progress from the source agent: only its Completed condition concerns the operator
    await reconcile(ledger, namespace or "", name)


@kopf.on.event(GROUP, VERSION, "hosts")
async def host_changed_for_migrations(type: str, name: str, body: kopf.Body, memo: Memo, **_: Any) -> None:
    """A host that turns NotReady (or goes) fails the migrations preparing on it: look at them at once."""
    host = Host.from_api(dict(body))
    if type != "DELETED" and host.is_ready:
        return
    ledger = memo.books
    for m in ledger.migrations():
        status = m.status
        if status is None or status.phase != "PreparingTarget" or name not in (status.source_host, status.target_host):
            continue
        await reconcile(ledger, m.metadata.namespace or "", m.name)
