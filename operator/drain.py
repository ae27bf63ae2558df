"""Host maintenance: moving every VM off a Host whose spec.maintenance is true.

For each VM placed on the host the operator creates a Migration
(``drain-<vm>-<suffix>``, labelled with the host's name), live for a running
VM and offline for a stopped one, with the destination left to the operator;
the limits and the queue of :mod:`.migration` apply to them as to any other.
The Host's status.drain tells how far it is: Draining (VMs remaining),
Drained (empty) or Failed (a VM could not be moved in ``DRAIN_ATTEMPTS``
tries, ``DRAIN_RETRY_SECONDS`` apart). Setting maintenance back to false clears it. Each pass reads the
ledger, which the watches keep, so a restarted operator carries on.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any

import kopf

from vapor.kube import Conflict
from vapor.model import GROUP, VERSION, Host, HostStatus, Migration, MigrationSpec, ObjectMeta, VirtualMachine
from vapor.model.host import DrainStatus
from vapor.model.names import DRAIN_LABEL

from ._state import Memo
from .ledger import Ledger
from .migration_queue import schedule_pass
from .settings import FIELD_MANAGER

log = logging.getLogger("vapor.operator.drain")
EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)
CONTROLLER = "operator"
# How many drain migrations of one VM may fail before the drain is Failed,
# and how long after the last attempt began the next one may start (seconds).
DRAIN_ATTEMPTS = 3
DRAIN_RETRY_SECONDS = 10.0


def drain_name(vm: str) -> str:
    """A Migration name for draining ``vm``: drain-<vm>-<5 random hex digits>, within 253 characters."""
    return f"drain-{vm[:240]}-{secrets.token_hex(3)[:5]}"


def _drain_migration(vm: VirtualMachine, host: str) -> Migration:
    live = vm.can_live_migrate
    local_disks = any(d.size is not None for d in vm.spec.disks or [])
    return Migration(
        metadata=ObjectMeta(name=drain_name(vm.name), namespace=vm.metadata.namespace, labels={DRAIN_LABEL: host}),
        spec=MigrationSpec(vm_name=vm.name, live=live, copy_storage="all" if local_disks else "none"),
    )


async def drain(ledger: Ledger, host: Host) -> DrainStatus:
    """One pass over a host in maintenance: start the migrations it still needs; its drain status.

    The caller holds the ledger's lock, so two passes never create the same migrations.
    """
    kube = ledger.kube
    now = dt.datetime.now(dt.UTC)
    on_host = [vm for vm in ledger.on_host(host.name) if vm.metadata.deletion_timestamp is None]
    migrations = ledger.migrations()
    moving = 0
    given_up: list[str] = []
    for vm in sorted(on_host, key=lambda v: (v.metadata.namespace or "", v.name)):
        namespace = vm.metadata.namespace or ""
        mine = [m for m in migrations if m.metadata.namespace == namespace and m.spec.vm_name == vm.name]
        if any(not m.is_terminal for m in mine):
            moving += 1
            continue
        tries = [m for m in mine if (m.metadata.labels or {}).get(DRAIN_LABEL) == host.name]
        last = max(tries, key=lambda m: m.metadata.creation_timestamp or EPOCH) if tries else None
        if last is not None and len(tries) >= DRAIN_ATTEMPTS:
            why = last.status.failure_reason if last.status and last.status.failure_reason else "no reason given"
            given_up.append(f"{namespace}/{vm.name} ({why})")
            continue
        began = last.metadata.creation_timestamp if last is not None else None
        if began is not None and (now - began).total_seconds() < DRAIN_RETRY_SECONDS:
            moving += 1  # it failed a moment ago: give the fleet a little time before the next attempt
            continue
        try:
            created = await kube.resources(Migration).create(
                _drain_migration(vm, host.name), field_manager=FIELD_MANAGER
            )
        except Conflict:  # the random suffix was taken: the next pass tries another
            continue
        ledger.wrote(created)  # the next pass sees it before the watch brings it
        moving += 1
        log.info(
            "host=%s drain: migration %s/%s for vm %s",
            host.name,
            namespace,
            created.name,
            vm.name,
            extra={"host": host.name, "migration": created.name, "vm": vm.name},
        )
        await kube.events.record(
            host,
            reason="DrainMigration",
            note=f"Migration {namespace}/{created.name} moves {vm.name} off the host (attempt {len(tries) + 1})",
            controller=CONTROLLER,
            action="Drain",
        )
    remaining = len(on_host)
    if remaining == 0:
        return DrainStatus(phase="Drained", remaining=0, message="no VirtualMachines left on the host")
    if given_up:
        return DrainStatus(
            phase="Failed",
            remaining=remaining,
            message=f"could not move after {DRAIN_ATTEMPTS} attempts: " + "; ".join(given_up),
        )
    return DrainStatus(
        phase="Draining",
        remaining=remaining,
        message=f"{remaining} VirtualMachine(s) still on the host, {moving} migrating or queued",
    )


async def reconcile_host(ledger: Ledger, name: str) -> None:
    """Drive a host's drain, or clear it when maintenance is off (one pass at a time)."""
    async with ledger.lock:
        draining = await _reconcile_host(ledger, name)
    if draining:
        await schedule_pass(ledger)


async def _reconcile_host(ledger: Ledger, name: str) -> bool:
    kube = ledger.kube
    hosts = kube.resources(Host)
    host = await hosts.get(name)
    current = host.status.drain if host.status else None
    if not host.spec.maintenance or host.metadata.deletion_timestamp is not None:
        if current is not None:
            await hosts.patch_status(name, HostStatus(drain=None), field_manager=FIELD_MANAGER)
            await kube.events.record(
                host,
                reason="DrainCleared",
                note="Maintenance ended; drain status cleared",
                controller=CONTROLLER,
                action="Drain",
            )
        return False
    wanted = await drain(ledger, host)
    if current is not None and current.model_dump() == wanted.model_dump():
        return wanted.phase == "Draining"
    await hosts.patch_status(name, HostStatus(drain=wanted), field_manager=FIELD_MANAGER)
    if current is None:
        await kube.events.record(
            host, reason="DrainStarted", note=f"Maintenance: {wanted.message}", controller=CONTROLLER, action="Drain"
        )
    if wanted.phase != (current.phase if current else None) and wanted.phase != "Draining":
        await kube.events.record(
            host,
            reason="Drained" if wanted.phase == "Drained" else "DrainFailed",
            note=wanted.message or wanted.phase,
            controller=CONTROLLER,
            action="Drain",
            type="Normal" if wanted.phase == "Drained" else "Warning",
        )
    log.info(
        "host=%s drain %s: %s",
        name,
        wanted.phase,
        wanted.message,
        extra={"host": name, "drain": wanted.phase, "remaining": wanted.remaining},
    )
    return wanted.phase == "Draining"


def _draining(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    return bool(spec.get("maintenance")) or status.get("drain") is not None


@kopf.on.event(GROUP, VERSION, "hosts", when=_draining)
async def host_maintenance_changed(type: str, name: str, memo: Memo, **_: Any) -> None:
    """Start (or clear) a drain as soon as maintenance is switched."""
    if type == "DELETED":
        return
    try:
        await reconcile_host(memo.books, name)
    except kopf.PermanentError:
        raise
    except Exception as exc:  # the timer tries again
        log.warning("host=%s drain pass failed: %s", name, exc)
