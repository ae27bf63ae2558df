"""The migration queue: admitting checked Migrations (phase Scheduling) within the cluster's limits.

A pass plans over the ledger (:func:`vapor.rules.migrations.plan_queue`), admits
who may start (checked again, then labels, finalizer, the VM's annotation and
phase PreparingTarget: from then on the target counts the VM as arriving)
and numbers the rest (status.queuePosition). Passes run one at a time under
the ledger's lock; calls that pile up while one runs fold into the next.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from vapor.kube import Conflict, NotFound
from vapor.model import MetadataPatch, Migration, VirtualMachine, VirtualMachineStatus
from vapor.model.names import (
    MIGRATING_ANNOTATION,
    MIGRATION_FINALIZER,
    MIGRATION_SOURCE_LABEL,
    MIGRATION_TARGET_LABEL,
)
from vapor.rules.migrations import Check, check, plan_queue

from .ledger import Ledger, vm_key
from .migration_status import event, fail, write_status
from .settings import FIELD_MANAGER, PARALLEL_MIGRATIONS, PARALLEL_OUTBOUND_PER_HOST

log = logging.getLogger("vapor.operator.migration")


@dataclass
class _Passes:
    last: float = 0.0  # when the last pass began (time.monotonic)


_passes = _Passes()


def check_on(ledger: Ledger, m: Migration) -> Check:
    """Check ``m`` against the ledger as it stands (its own VM left out of what the hosts carry)."""
    vm = ledger.vm_of(m)
    exclude = vm_key(vm) if vm is not None else None
    snapshots = ledger.snapshots_of(vm) if vm is not None else []
    return check(
        m, vm, ledger.hosts(), ledger.carried(exclude=exclude), ledger.migrations(), ledger.cpu_ratio, ledger.images(),
        snapshots,
    )  # fmt: skip


async def schedule_pass(ledger: Ledger) -> None:
    """Admit queued migrations within the limits and number the rest (one pass at a time; extra calls fold)."""
    asked = time.monotonic()
    async with ledger.lock:
        if _passes.last > asked:  # a pass that began after this call already saw everything we would
            return
        _passes.last = time.monotonic()
        plan = plan_queue(ledger.migrations(), PARALLEL_MIGRATIONS, PARALLEL_OUTBOUND_PER_HOST)
        for m in plan.admit:
            try:
                await _admit(ledger, m)
            except (NotFound, Conflict) as exc:  # changed meanwhile: the next pass sees it as it is
                log.info("migration=%s/%s not admitted this time: %s", m.metadata.namespace, m.name, exc)
        for m in ledger.migrations():
            uid = m.metadata.uid or ""
            if m.phase != "Scheduling" or uid not in plan.positions:
                continue
            position = plan.positions[uid]
            if m.status is not None and m.status.queue_position == position:
                continue
            try:
                await write_status(ledger, m, queue_position=position)
            except (NotFound, Conflict):  # changed meanwhile: the next pass numbers it
                continue
            if m.status is None or m.status.queue_position is None:
                await event(
                    ledger, m, "MigrationQueued", f"Waiting in queue at position {position}: {plan.reasons[uid]}"
                )


async def _admit(ledger: Ledger, m: Migration) -> None:
    """Give a queued migration its slot: checked again, then labels, finalizer, VM annotation, PreparingTarget."""
    result = check_on(ledger, m)
    if result.refusal:
        await fail(ledger, m, result.refusal, "MigrationRefused", conditions=result.conditions or None)
        return
    assert result.destination is not None and result.source is not None
    source, target = result.source, result.destination.name
    namespace = m.metadata.namespace or ""
    vms = ledger.kube.resources(VirtualMachine)
    fresh = await vms.get(m.spec.vm_name, namespace)  # fresh: its agent writes its status all the time
    holder = (fresh.metadata.annotations or {}).get(MIGRATING_ANNOTATION)
    if holder and holder != m.name:
        await fail(ledger, m, f"VirtualMachine {fresh.name} is being moved by Migration {holder}", "MigrationRefused")
        return
    finalizers = list(m.metadata.finalizers or [])
    if MIGRATION_FINALIZER not in finalizers:
        finalizers.append(MIGRATION_FINALIZER)
    m = await ledger.kube.resources(Migration).patch(
        m.name,
        metadata=MetadataPatch(
            labels={MIGRATION_SOURCE_LABEL: source, MIGRATION_TARGET_LABEL: target},
            finalizers=finalizers,
            resource_version=m.metadata.resource_version,
        ),
        namespace=namespace,
        field_manager=FIELD_MANAGER,
    )
    ledger.wrote(m)
    marked = await vms.patch(
        fresh.name,
        metadata=MetadataPatch(annotations={MIGRATING_ANNOTATION: m.name}),
        namespace=namespace,
        field_manager=FIELD_MANAGER,
    )
    ledger.wrote(marked)
    marked = await vms.patch_status(
        fresh.name, VirtualMachineStatus(migration=m.name), namespace=namespace, field_manager=FIELD_MANAGER
    )
    ledger.wrote(marked)
    m = await write_status(
        ledger,
        m,
        phase="PreparingTarget",
        source_host=source,
        target_host=target,
        queue_position=None,
        conditions=result.conditions,
    )
    await event(ledger, m, "MigrationStarted", f"Preparing host {target} to receive {fresh.name} from {source}")
