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
from typing import Any

import kopf

from vapor.kube import Conflict, Kube, NotFound
from vapor.model import GROUP, VERSION, Condition, Host, Migration, VirtualMachine
from vapor.model.names import (
    HOST_LABEL,
    MIGRATING_ANNOTATION,
    MIGRATION_FINALIZER,
    MIGRATION_SOURCE_LABEL,
    MIGRATION_TARGET_LABEL,
    ConditionType,
)

from . import metrics
from .migration_rules import (
    ACTIVE_PHASES,
    check,
    find_host,
    in_flight_requests,
    is_terminal,
    phase_of,
    plan_queue,
)
from .placement import Request, host_ready
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


def _owned_status(m: Migration) -> dict[str, Any]:
    """The status fields the operator owns, as they are now (server-side apply wants all of them every time)."""
    s = m.status
    out: dict[str, Any] = {}
    if s is not None:
        for key, value in (
            ("phase", s.phase),
            ("sourceHost", s.source_host),
            ("targetHost", s.target_host),
            ("queuePosition", s.queue_position),
            ("failureReason", s.failure_reason),
            ("observedGeneration", s.observed_generation),
        ):
            if value is not None:
                out[key] = value
    conditions = [c.to_api() for c in (s.conditions or []) if c.type in PRE_FLIGHT] if s else []
    if conditions:
        out["conditions"] = conditions
    return out


async def _write_status(kube: Kube, m: Migration, **changes: Any) -> Migration:
    """Apply the operator's status with ``changes`` (camelCase keys; None drops a field); return the new object."""
    status = _owned_status(m)
    conditions: list[Condition] | None = changes.pop("conditions", None)
    for key, value in changes.items():
        if value is None:
            status.pop(key, None)
        else:
            status[key] = value
    if conditions is not None:
        status["conditions"] = [c.to_api() for c in conditions]
    status["observedGeneration"] = m.metadata.generation or 0
    if status == _owned_status(m):
        return m
    namespace = m.metadata.namespace
    migrations = kube.resources(Migration)
    await migrations.apply_status(m.name, status, namespace=namespace, field_manager=FIELD_MANAGER)
    new_phase = status.get("phase")
    if new_phase and new_phase != phase_of(m):
        metrics.migration_entered(new_phase)
        log.info(
            "migration=%s/%s phase=%s",
            namespace,
            m.name,
            new_phase,
            extra={"migration": m.name, "namespace": namespace, "phase": new_phase},
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
        before = phase_of(m)
        try:
            await _step(kube, m)
        except (NotFound, Conflict) as exc:  # changed or gone meanwhile: the next event or recheck decides again
            log.info("migration=%s/%s: an object changed while deciding: %s", namespace, name, exc)
        if before in ACTIVE_PHASES:  # a pass is needed only when this one ended and gave its slot back
            try:
                if not is_terminal(await kube.resources(Migration).get(name, namespace)):
                    return
            except NotFound:
                pass
    await schedule_pass(kube)


async def _step(kube: Kube, m: Migration) -> None:
    phase = phase_of(m)
    if is_terminal(m):
        await _finish(kube, m)
        return
    stopping = m.spec.cancel or m.metadata.deletion_timestamp is not None
    if phase in (None, "Pending", "Scheduling", "PreparingTarget") and stopping:
        why = "deleted" if m.metadata.deletion_timestamp is not None else "cancelled"
        m = await _write_status(kube, m, phase="Cancelled", queuePosition=None)
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


async def _fail(kube: Kube, m: Migration, reason: str, event: str, **extra: Any) -> Migration:
    m = await _write_status(kube, m, phase="Failed", failureReason=reason[:4000], queuePosition=None, **extra)
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
        sourceHost=result.source,
        targetHost=result.destination.name,
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
        if not host_ready(host):
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
        m = await _write_status(kube, m, phase="Cancelled", failureReason=f"cancelled: {why}"[:4000])
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
    host_id = target.status.id if target is not None and target.status else None
    if vm.status is None or vm.status.host != status.target_host:
        await vms.patch_status(
            vm.name, {"host": status.target_host, "hostId": host_id}, namespace=namespace, field_manager=FIELD_MANAGER
        )
    if (vm.metadata.labels or {}).get(HOST_LABEL) != status.target_host:
        await vms.patch(
            vm.name,
            {"metadata": {"labels": {HOST_LABEL: status.target_host}}},
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
        if phase_of(m) == "Succeeded":
            await _move_vm(kube, m)
        await vms.patch(
            vm.name,
            {"metadata": {"annotations": {MIGRATING_ANNOTATION: None}}},
            namespace=namespace,
            field_manager=FIELD_MANAGER,
        )
        if vm.status is not None and vm.status.migration == m.name:
            await vms.patch_status(vm.name, {"migration": None}, namespace=namespace, field_manager=FIELD_MANAGER)
    finalizers = m.metadata.finalizers or []
    if MIGRATION_FINALIZER in finalizers:
        await kube.resources(Migration).patch(
            m.name,
            {
                "metadata": {
                    "finalizers": [f for f in finalizers if f != MIGRATION_FINALIZER],
                    "resourceVersion": m.metadata.resource_version,
                }
            },
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
            if phase_of(m) != "Scheduling" or uid not in plan.positions:
                continue
            position = plan.positions[uid]
            if m.status is not None and m.status.queue_position == position:
                continue
            try:
                await _write_status(kube, m, queuePosition=position)
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
        {
            "metadata": {
                "labels": {MIGRATION_SOURCE_LABEL: source, MIGRATION_TARGET_LABEL: target},
                "finalizers": finalizers,
                "resourceVersion": m.metadata.resource_version,
            }
        },
        namespace=namespace,
        field_manager=FIELD_MANAGER,
    )
    await vms.patch(
        vm.name,
        {"metadata": {"annotations": {MIGRATING_ANNOTATION: m.name}}},
        namespace=namespace,
        field_manager=FIELD_MANAGER,
    )
    await vms.patch_status(vm.name, {"migration": m.name}, namespace=namespace, field_manager=FIELD_MANAGER)
    m = await _write_status(
        kube,
        m,
        phase="PreparingTarget",
        sourceHost=source,
        targetHost=target,
        queuePosition=None,
        conditions=result.conditions or None,
    )
    facts.migrations = [m if o.metadata.uid == m.metadata.uid else o for o in facts.migrations]
    await _event(kube, m, "MigrationStarted", f"Preparing host {target} to receive {vm.name} from {source}")


# -- kopf ------------------------------------------------------------------------------------------


def _needs_attention(status: kopf.Status, meta: kopf.Meta, **_: Any) -> bool:
    terminal = status.get("phase") in ("Succeeded", "Failed", "Cancelled")
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
    if phase in ("Succeeded", "Failed", "Cancelled") and MIGRATION_FINALIZER not in (body.meta.get("finalizers") or []):
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
    if type != "DELETED" and host_ready(host):
        return
    kube = _kube(memo)
    found, _version = await kube.resources(Migration).list()
    for m in found:
        status = m.status
        if status is None or status.phase != "PreparingTarget" or name not in (status.source_host, status.target_host):
            continue
        await reconcile(kube, m.metadata.namespace or "", m.name)
