"""Driving Migrations through their phases: the kopf side of :mod:`.migration_rules`.

Pending (checked; pre-flight conditions) -> Scheduling (queued within the
limits, status.queuePosition) -> PreparingTarget (labels, finalizer, the VM's
annotation: the agents take over) -> Running (the target agent reported
TargetReady) -> Succeeded / Failed / Cancelled (the source agent reported
Completed). Every decision is taken on objects read fresh from the API server
under one lock, and every fact lives in the resources: a restarted operator
picks up where the last one stopped. docs: /work/notes/MIGRATION_PROTOCOL.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack

import kopf

from vapor.kube import Conflict, Kube, NotFound
from vapor.model import (
    GROUP,
    VERSION,
    Condition,
    Host,
    MetadataPatch,
    Migration,
    MigrationStatus,
    VirtualMachine,
    VirtualMachineStatus,
    find_host,
)
from vapor.model.migration import TERMINAL_PHASES, MigrationPhase
from vapor.model.names import (
    HOST_LABEL,
    MIGRATING_ANNOTATION,
    MIGRATION_FINALIZER,
    MIGRATION_SOURCE_LABEL,
    MIGRATION_TARGET_LABEL,
    ConditionType,
)

from . import metrics
from .migration_rules import check, in_flight_requests, plan_queue
from .placement import Request
from .settings import (
    FIELD_MANAGER,
    MIGRATION_INTERVAL,
    PARALLEL_MIGRATIONS,
    PARALLEL_OUTBOUND_PER_HOST,
)

log = logging.getLogger("vapor.operator.migration")
CONTROLLER = "operator"
PRE_FLIGHT = (ConditionType.DESTINATION_CAPACITY, ConditionType.CPU_COMPATIBLE, ConditionType.STORAGE_COMPATIBLE)


@dataclass
class _Turns:
    """One migration decision at a time in this process (the active replica is the only one acting)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_pass: float = 0.0


_turns = _Turns()


def lock() -> asyncio.Lock:
    """The lock every migration decision (and drain pass) is taken under."""
    return _turns.lock


def _kube(memo: Any) -> Kube:
    kube: Kube | None = memo.kube
    assert kube is not None
    return kube


# -- status ----------------------------------------------------------------------------------------


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


async def _write_status(kube: Kube, m: Migration, **changes: Unpack[StatusChanges]) -> Migration:
    """Apply the operator's status with ``changes``; return the new object (``m`` when nothing changed)."""
    if not changes.get("conditions"):
        changes.pop("conditions", None)
    current = owned_status(m)
    wanted = current.model_copy(update={**changes, "observed_generation": m.metadata.generation or 0})
    if wanted.to_apply() == current.to_apply():
        return m
    namespace = m.metadata.namespace
    migrations = kube.resources(Migration)
    await migrations.apply_status(m.name, wanted, namespace=namespace, field_manager=FIELD_MANAGER)
    if wanted.phase and wanted.phase != m.phase:
        metrics.migration_entered(wanted.phase)
        log.info(
            "migration=%s/%s phase=%s",
            namespace,
            m.name,
            wanted.phase,
            extra={"migration": m.name, "namespace": namespace, "phase": wanted.phase},
        )
    return await migrations.get(m.name, namespace)


async def _event(kube: Kube, obj: Any, reason: str, note: str, *, warning: bool = False) -> None:
    await kube.events.record(
        obj, reason=reason, note=note, controller=CONTROLLER, action="Migrate", type="Warning" if warning else "Normal"
    )


# -- facts -----------------------------------------------------------------------------------------


@dataclass
class Facts:
    """What one decision needs, read fresh from the API server."""

    hosts: list[Host]
    vms: dict[tuple[str, str], VirtualMachine]
    migrations: list[Migration]

    def vm_of(self, m: Migration) -> VirtualMachine | None:
        """The VM a migration moves, if it exists."""
        return self.vms.get((m.metadata.namespace or "", m.spec.vm_name))

    def placed(self, m: Migration) -> dict[str, list[Request]]:
        """What each host carries: its placed VMs (this one left out) and the VMs on their way to it."""
        vm = self.vm_of(m)
        out: dict[str, list[Request]] = {}
        for key, other in self.vms.items():
            host = other.status.host if other.status else None
            if host and (vm is None or key != (vm.metadata.namespace or "", vm.name)):
                out.setdefault(host, []).append(Request.of(other))
        for host, requests in in_flight_requests(self.migrations, self.vms, m).items():
            out.setdefault(host, []).extend(requests)
        return out


async def gather(kube: Kube) -> Facts:
    """Hosts, VMs and Migrations as they are now."""
    hosts, _ = await kube.resources(Host).list()
    vms, _ = await kube.resources(VirtualMachine).list()
    migrations, _ = await kube.resources(Migration).list()
    return Facts(hosts, {(v.metadata.namespace or "", v.name): v for v in vms}, migrations)


# -- the phases ------------------------------------------------------------------------------------


async def reconcile(kube: Kube, namespace: str, name: str) -> None:
    """Move one Migration on as far as the facts allow (idempotent)."""
    async with _turns.lock:
        try:
            m = await kube.resources(Migration).get(name, namespace)
        except NotFound:
            return
        before = m
        try:
            await _step(kube, m)
        except (NotFound, Conflict) as exc:  # changed or gone meanwhile: the next event or recheck decides again
            log.info("migration=%s/%s: an object changed while deciding: %s", namespace, name, exc)
        if before.is_active:  # a pass is needed only when this one ended and gave its slot back
            try:
                if not (await kube.resources(Migration).get(name, namespace)).is_terminal:
                    return
            except NotFound:
                pass
    await schedule_pass(kube)


async def _step(kube: Kube, m: Migration) -> None:
    phase = m.phase
    if m.is_terminal:
        await _finish(kube, m)
        return
    stopping = m.spec.cancel or m.metadata.deletion_timestamp is not None
    if phase in (None, "Pending", "Scheduling", "PreparingTarget") and stopping:
        why = "deleted" if m.metadata.deletion_timestamp is not None else "cancelled"
        m = await _write_status(kube, m, phase="Cancelled", queue_position=None)
        await _event(kube, m, "MigrationCancelled", f"Migration {why} before it started; the VM stays where it was")
        await _finish(kube, m)
        return
    if phase is None:
        m = await _write_status(kube, m, phase="Pending")
        phase = "Pending"
    if phase == "Pending":
        await _check_pending(kube, m)
    elif phase == "PreparingTarget":
        await _watch_preparing(kube, m)
    elif phase == "Running":
        await _watch_running(kube, m)


async def _fail(
    kube: Kube, m: Migration, reason: str, event: str, conditions: list[Condition] | None = None
) -> Migration:
    m = await _write_status(
        kube, m, phase="Failed", failure_reason=reason[:4000], queue_position=None, conditions=conditions
    )
    log.warning(
        "migration=%s/%s failed: %s", m.metadata.namespace, m.name, reason, extra={"migration": m.name, "why": reason}
    )
    await _event(kube, m, event, reason, warning=True)
    await _finish(kube, m)
    return m


async def _check_pending(kube: Kube, m: Migration) -> None:
    facts = await gather(kube)
    result = check(m, facts.vm_of(m), facts.hosts, facts.placed(m), facts.migrations)
    conditions = result.conditions or None
    if result.refusal:
        await _fail(kube, m, result.refusal, "MigrationRefused", conditions=conditions)
        return
    assert result.destination is not None
    m = await _write_status(
        kube,
        m,
        phase="Scheduling",
        source_host=result.source,
        target_host=result.destination.name,
        conditions=conditions,
    )
    await _event(
        kube,
        m,
        "MigrationChecked",
        f"Pre-flight checks passed: {m.spec.vm_name} can move from {result.source} to {result.destination.name}",
    )


async def _host_lost(hosts: list[Host], *names: str | None) -> str | None:
    for name in names:
        if not name:
            continue
        host = find_host(hosts, name)
        if host is None:
            return f"host {name} no longer exists"
        if not host.is_ready:
            ready = host.condition(ConditionType.READY)
            return f"host {name} became NotReady ({ready.message if ready else 'no heartbeat'})"
    return None


async def _watch_preparing(kube: Kube, m: Migration) -> None:
    target_ready = m.condition(ConditionType.TARGET_READY)
    if target_ready is not None and target_ready.status == "False":
        await _fail(
            kube,
            m,
            f"target host {m.status.target_host if m.status else '?'} could not prepare: "
            f"{target_ready.reason}: {target_ready.message}",
            "TargetNotReady",
        )
        return
    try:
        vm = await kube.resources(VirtualMachine).get(m.spec.vm_name, m.metadata.namespace)
    except NotFound:
        vm = None
    if vm is None or vm.metadata.deletion_timestamp is not None:
        await _fail(kube, m, f"VirtualMachine {m.spec.vm_name} was deleted before the move began", "VMDeleted")
        return
    hosts, _ = await kube.resources(Host).list()
    lost = await _host_lost(
        hosts, m.status.source_host if m.status else None, m.status.target_host if m.status else None
    )
    if lost:
        await _fail(kube, m, f"{lost} while the target was being prepared", "HostNotReady")
        return
    if target_ready is not None and target_ready.status == "True":
        m = await _write_status(kube, m, phase="Running")
        await _event(kube, m, "MigrationRunning", f"Target {m.status.target_host if m.status else ''} is ready; moving")


async def _watch_running(kube: Kube, m: Migration) -> None:
    completed = m.condition(ConditionType.COMPLETED)
    if completed is None or completed.status == "Unknown":
        return
    status = m.status
    assert status is not None
    if completed.status == "True":
        await _move_vm(kube, m)
        m = await _write_status(kube, m, phase="Succeeded")
        await _event(kube, m, "MigrationSucceeded", f"{m.spec.vm_name} now runs on {status.target_host}")
        await _finish(kube, m)
        return
    cancelled = m.spec.cancel or m.metadata.deletion_timestamp is not None
    why = f"{completed.reason}: {completed.message}" if completed.message else completed.reason
    if cancelled and completed.reason == "Aborted":
        m = await _write_status(kube, m, phase="Cancelled", failure_reason=f"cancelled: {why}"[:4000])
        await _event(kube, m, "MigrationCancelled", f"Migration aborted; {m.spec.vm_name} keeps running on the source")
        await _finish(kube, m)
        return
    await _fail(kube, m, why, "MigrationFailed")


async def _move_vm(kube: Kube, m: Migration) -> None:
    """Place the VM on the target (status first, then the label its new agent selects on), as scheduling does."""
    status = m.status
    assert status is not None and status.target_host
    namespace = m.metadata.namespace or ""
    vms = kube.resources(VirtualMachine)
    try:
        vm = await vms.get(m.spec.vm_name, namespace)
    except NotFound:
        return
    hosts, _ = await kube.resources(Host).list()
    target = find_host(hosts, status.target_host)
    host_id = target.host_id if target is not None else None
    if vm.host != status.target_host:
        await vms.patch_status(
            vm.name,
            VirtualMachineStatus(host=status.target_host, host_id=host_id),
            namespace=namespace,
            field_manager=FIELD_MANAGER,
        )
    if (vm.metadata.labels or {}).get(HOST_LABEL) != status.target_host:
        await vms.patch(
            vm.name,
            metadata=MetadataPatch(labels={HOST_LABEL: status.target_host}),
            namespace=namespace,
            field_manager=FIELD_MANAGER,
        )
        await _event(
            kube, vm, "Migrated", f"Moved from {status.source_host} to {status.target_host} by Migration {m.name}"
        )


async def _finish(kube: Kube, m: Migration) -> None:
    """After the end: the VM placed right (Succeeded), its annotation gone, then the finalizer (idempotent)."""
    namespace = m.metadata.namespace or ""
    vms = kube.resources(VirtualMachine)
    try:
        vm: VirtualMachine | None = await vms.get(m.spec.vm_name, namespace)
    except NotFound:
        vm = None
    if vm is not None and (vm.metadata.annotations or {}).get(MIGRATING_ANNOTATION) == m.name:
        if m.phase == "Succeeded":
            await _move_vm(kube, m)
        await vms.patch(
            vm.name,
            metadata=MetadataPatch(annotations={MIGRATING_ANNOTATION: None}),
            namespace=namespace,
            field_manager=FIELD_MANAGER,
        )
        if vm.status is not None and vm.status.migration == m.name:
            await vms.patch_status(
                vm.name, VirtualMachineStatus(migration=None), namespace=namespace, field_manager=FIELD_MANAGER
            )
    finalizers = m.metadata.finalizers or []
    if MIGRATION_FINALIZER in finalizers:
        await kube.resources(Migration).patch(
            m.name,
            metadata=MetadataPatch(
                finalizers=[f for f in finalizers if f != MIGRATION_FINALIZER],
                resource_version=m.metadata.resource_version,
            ),
            namespace=namespace,
            field_manager=FIELD_MANAGER,
        )


# -- the queue -------------------------------------------------------------------------------------


async def schedule_pass(kube: Kube) -> None:
    """Admit queued migrations within the limits and number the rest (one pass at a time; extra calls fold)."""
    asked = time.monotonic()
    async with _turns.lock:
        if _turns.last_pass > asked:  # a pass that began after this call already saw everything we would
            return
        _turns.last_pass = time.monotonic()
        facts = await gather(kube)
        plan = plan_queue(facts.migrations, PARALLEL_MIGRATIONS, PARALLEL_OUTBOUND_PER_HOST)
        for m in plan.admit:
            try:
                await _admit(kube, m, facts)
            except (NotFound, Conflict) as exc:  # changed meanwhile: the next pass sees it as it is
                log.info("migration=%s/%s not admitted this time: %s", m.metadata.namespace, m.name, exc)
                continue
        for m in facts.migrations:
            uid = m.metadata.uid or ""
            if m.phase != "Scheduling" or uid not in plan.positions:
                continue
            position = plan.positions[uid]
            if m.status is not None and m.status.queue_position == position:
                continue
            try:
                await _write_status(kube, m, queue_position=position)
            except NotFound:
                continue
            if m.status is None or m.status.queue_position is None:
                await _event(
                    kube, m, "MigrationQueued", f"Waiting in queue at position {position}: {plan.reasons[uid]}"
                )


async def _admit(kube: Kube, m: Migration, facts: Facts) -> None:
    """Give a queued migration its slot: checked again, then labels, finalizer, VM annotation, PreparingTarget."""
    result = check(m, facts.vm_of(m), facts.hosts, facts.placed(m), facts.migrations)
    if result.refusal:
        await _fail(kube, m, result.refusal, "MigrationRefused", conditions=result.conditions or None)
        return
    assert result.destination is not None and result.source is not None
    source, target = result.source, result.destination.name
    namespace = m.metadata.namespace or ""
    vms = kube.resources(VirtualMachine)
    vm = await vms.get(m.spec.vm_name, namespace)  # fresh: its agent writes its status all the time
    holder = (vm.metadata.annotations or {}).get(MIGRATING_ANNOTATION)
    if holder and holder != m.name:
        await _fail(kube, m, f"VirtualMachine {vm.name} is being moved by Migration {holder}", "MigrationRefused")
        return
    finalizers = list(m.metadata.finalizers or [])
    if MIGRATION_FINALIZER not in finalizers:
        finalizers.append(MIGRATION_FINALIZER)
    m = await kube.resources(Migration).patch(
        m.name,
        metadata=MetadataPatch(
            labels={MIGRATION_SOURCE_LABEL: source, MIGRATION_TARGET_LABEL: target},
            finalizers=finalizers,
            resource_version=m.metadata.resource_version,
        ),
        namespace=namespace,
        field_manager=FIELD_MANAGER,
    )
    await vms.patch(
        vm.name,
        metadata=MetadataPatch(annotations={MIGRATING_ANNOTATION: m.name}),
        namespace=namespace,
        field_manager=FIELD_MANAGER,
    )
    await vms.patch_status(
        vm.name, VirtualMachineStatus(migration=m.name), namespace=namespace, field_manager=FIELD_MANAGER
    )
    m = await _write_status(
        kube,
        m,
        phase="PreparingTarget",
        source_host=source,
        target_host=target,
        queue_position=None,
        conditions=result.conditions,
    )
    facts.migrations = [m if o.metadata.uid == m.metadata.uid else o for o in facts.migrations]
    await _event(kube, m, "MigrationStarted", f"Preparing host {target} to receive {vm.name} from {source}")


# -- kopf ------------------------------------------------------------------------------------------


def _needs_attention(status: kopf.Status, meta: kopf.Meta, **_: Any) -> bool:
    terminal = status.get("phase") in TERMINAL_PHASES
    return not terminal or MIGRATION_FINALIZER in (meta.get("finalizers") or [])


@kopf.on.event(GROUP, VERSION, "migrations")
async def migration_changed(type: str, namespace: str | None, name: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    """Act on every change of a Migration (its spec, the agents' conditions, its deletion)."""
    kube = _kube(memo)
    if type == "DELETED":
        await schedule_pass(kube)  # a slot may be free now
        return
    status = body.get("status", {})
    phase = status.get("phase")
    if phase in TERMINAL_PHASES and MIGRATION_FINALIZER not in (body.meta.get("finalizers") or []):
        await schedule_pass(kube)  # nothing left to do for it, but its slot may be free now
        return
    completed = any(c.get("type") == ConditionType.COMPLETED for c in status.get("conditions") or [])
    if phase == "Running" and not completed:
        return  # progress from the source agent: only its Completed condition concerns the operator
    await reconcile(kube, namespace or "", name)


@kopf.timer(GROUP, VERSION, "migrations", interval=MIGRATION_INTERVAL, when=_needs_attention)
async def migration_recheck(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """Look again now and then: hosts turn NotReady and slots free up without the Migration changing."""
    await reconcile(_kube(memo), namespace or "", name)


@kopf.on.event(GROUP, VERSION, "hosts")
async def host_changed_for_migrations(type: str, name: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    """A host that turns NotReady (or goes) fails the migrations preparing on it: look at them at once."""
    host = Host.from_api(dict(body))
    if type != "DELETED" and host.is_ready:
        return
    kube = _kube(memo)
    found, _version = await kube.resources(Migration).list()
    for m in found:
        status = m.status
        if status is None or status.phase != "PreparingTarget" or name not in (status.source_host, status.target_host):
            continue
        await reconcile(kube, m.metadata.namespace or "", m.name)
