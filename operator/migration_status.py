"""What the operator writes about a Migration: its own status fields, Events, the end and the clean-up.

The operator owns phase, sourceHost, targetHost, queuePosition,
failureReason, observedGeneration and the pre-flight conditions, and applies
all of them on every write (server-side apply gives up what is left out); the
agents own the rest (their conditions, progress, times). Every write's answer
goes into the ledger, so the next decision counts it at once.
"""

from __future__ import annotations

import logging
from typing import TypedDict, Unpack

from vapor.kube import NotFound
from vapor.model import (
    Condition,
    Host,
    MetadataPatch,
    Migration,
    MigrationStatus,
    ObjectMeta,
    VirtualMachine,
    VirtualMachineStatus,
)
from vapor.model.migration import MigrationPhase
from vapor.model.names import MIGRATING_ANNOTATION, MIGRATION_FINALIZER, ConditionType

from . import metrics
from .ledger import Ledger
from .settings import FIELD_MANAGER

log = logging.getLogger("vapor.operator.migration")
CONTROLLER = "operator"
PRE_FLIGHT = (
    ConditionType.DESTINATION_CAPACITY,
    ConditionType.CPU_COMPATIBLE,
    ConditionType.STORAGE_COMPATIBLE,
    ConditionType.IMAGE_READY,
)


class StatusChanges(TypedDict, total=False):
    """What a step changes of the operator's status fields (None drops a field)."""

    phase: MigrationPhase
    source_host: str | None
    target_host: str | None
    queue_position: int | None
    failure_reason: str | None
    conditions: list[Condition] | None  # None or empty: the pre-flight conditions stay as they are


def owned_status(m: Migration) -> MigrationStatus:
    """The status fields the operator owns, as they are now (server-side apply wants all of them every time)."""
    s = m.status or MigrationStatus()
    return MigrationStatus(
        phase=s.phase,
        source_host=s.source_host,
        target_host=s.target_host,
        queue_position=s.queue_position,
        failure_reason=s.failure_reason,
        observed_generation=s.observed_generation,
        conditions=[c for c in s.conditions or [] if c.type in PRE_FLIGHT] or None,
    )


async def write_status(ledger: Ledger, m: Migration, **changes: Unpack[StatusChanges]) -> Migration:
    """Apply the operator's status with ``changes``; return the new object (``m`` when nothing changed)."""
    if not changes.get("conditions"):
        changes.pop("conditions", None)
    current = owned_status(m)
    wanted = current.model_copy(update={**changes, "observed_generation": m.metadata.generation or 0})
    if wanted.to_apply() == current.to_apply():
        return m
    namespace = m.metadata.namespace
    applied = await ledger.kube.resources(Migration).apply_status(
        m.name,
        wanted,
        namespace=namespace,
        field_manager=FIELD_MANAGER,
        resource_version=m.metadata.resource_version,  # decided on this version: Conflict if it moved on
    )
    ledger.wrote(applied)
    if wanted.phase and wanted.phase != m.phase:
        metrics.migration_entered(wanted.phase)
        log.info(
            "migration=%s/%s phase=%s",
            namespace,
            m.name,
            wanted.phase,
            extra={"migration": m.name, "namespace": namespace, "phase": wanted.phase},
        )
    return applied


async def event(
    ledger: Ledger, obj: Migration | VirtualMachine, reason: str, note: str, *, warning: bool = False
) -> None:
    """Record an Event of the migration controller."""
    await ledger.kube.events.record(
        obj, reason=reason, note=note, controller=CONTROLLER, action="Migrate", type="Warning" if warning else "Normal"
    )


async def fail(
    ledger: Ledger, m: Migration, reason: str, event_reason: str, conditions: list[Condition] | None = None
) -> Migration:
    """End the migration as Failed, saying why, and clean up after it."""
    m = await write_status(
        ledger, m, phase="Failed", failure_reason=reason[:4000], queue_position=None, conditions=conditions
    )
    log.warning(
        "migration=%s/%s failed: %s", m.metadata.namespace, m.name, reason, extra={"migration": m.name, "why": reason}
    )
    await event(ledger, m, event_reason, reason, warning=True)
    await finish(ledger, m)
    return m


async def move_vm(ledger: Ledger, m: Migration, vm: VirtualMachine) -> VirtualMachine:
    """Bind the VM to the migration's target (status, then the label its new agent selects on)."""
    target_name = m.target_host
    assert target_name
    target = ledger.host(target_name) or Host(metadata=ObjectMeta(name=target_name))  # gone: no hostId then
    return await ledger.bind_vm(vm, target)


async def moved(ledger: Ledger, m: Migration, vm: VirtualMachine) -> None:
    """The Event on the VM that tells it moved."""
    source = m.status.source_host if m.status else None
    await event(ledger, vm, "Migrated", f"Moved from {source} to {m.target_host} by Migration {m.name}")


async def finish(ledger: Ledger, m: Migration) -> None:
    """After the end: the VM placed right (Succeeded), its annotation gone, then the finalizer (idempotent)."""
    namespace = m.metadata.namespace or ""
    vms = ledger.kube.resources(VirtualMachine)
    try:  # fresh: a stale copy without the annotation would leave the VM to no one for good
        vm: VirtualMachine | None = await vms.get(m.spec.vm_name, namespace)
    except NotFound:
        vm = None
    if vm is not None and (vm.metadata.annotations or {}).get(MIGRATING_ANNOTATION) == m.name:
        if m.phase == "Succeeded" and vm.host != m.target_host:
            vm = await move_vm(ledger, m, vm)
            await moved(ledger, m, vm)
        vm = await vms.patch(
            vm.name,
            metadata=MetadataPatch(annotations={MIGRATING_ANNOTATION: None}),
            namespace=namespace,
            field_manager=FIELD_MANAGER,
        )
        ledger.wrote(vm)
        if vm.status is not None and vm.status.migration == m.name:
            vm = await vms.patch_status(
                vm.name, VirtualMachineStatus(migration=None), namespace=namespace, field_manager=FIELD_MANAGER
            )
            ledger.wrote(vm)
    finalizers = m.metadata.finalizers or []
    if MIGRATION_FINALIZER in finalizers:
        done = await ledger.kube.resources(Migration).patch(
            m.name,
            metadata=MetadataPatch(
                finalizers=[f for f in finalizers if f != MIGRATION_FINALIZER],
                resource_version=m.metadata.resource_version,
            ),
            namespace=namespace,
            field_manager=FIELD_MANAGER,
        )
        ledger.wrote(done)
