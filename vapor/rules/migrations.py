"""Decisions about Migrations, without I/O: validation, pre-flight checks and the queue.

The operator's kopf side (:mod:`vapor.operator.migration`, :mod:`vapor.operator.migration_queue`) takes the
facts from its ledger and calls these functions; the gateway calls :func:`check` ahead of a request
(a VM's migration targets, host by host); tests call them directly. Everything here is computed
from resources only, so a restarted operator decides exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from vapor.model import Condition, ConditionStatus, Host, Image, Migration, VirtualMachine, find_host
from vapor.model.host import DEFAULT_CPU_ALLOCATION_RATIO
from vapor.model.image import images_of
from vapor.model.names import ConditionType
from vapor.model.snapshot import VirtualMachineSnapshot

from .images import IMAGE_FETCHING, on_target
from .placement import NO_IMAGES, HostFacts, Request, choose_host, evaluate

_EPOCH = datetime.min.replace(tzinfo=UTC)


def creation_order(m: Migration) -> tuple[datetime, str, str]:
    """Queue order: creation time, then namespace and name (stable across restarts)."""
    return (m.metadata.creation_timestamp or _EPOCH, m.metadata.namespace or "", m.name)


@dataclass
class Check:
    """The outcome of checking a Pending migration."""

    refusal: str | None = None  # a reason to fail it at once
    source: str | None = None
    destination: Host | None = None
    conditions: list[Condition] = field(default_factory=list)
    fetching: bool = False  # the destination is fetching the VM's images: wait (condition ImageReady False)


def cpu_compatibility(source: Host, destination: Host) -> tuple[ConditionStatus, str, str]:
    """Whether a guest running on ``source`` can run on ``destination``, from both hosts' hypervisor info."""
    src = source.status.hypervisor if source.status else None
    dst = destination.status.hypervisor if destination.status else None
    if src is None or dst is None or not src.cpu_model or not dst.cpu_model:
        missing = source.name if src is None or not src.cpu_model else destination.name
        return "Unknown", "NotReported", f"host {missing} has not reported its CPU model yet"
    if src.arch and dst.arch and src.arch != dst.arch:
        return "False", "ArchitectureMismatch", f"source is {src.arch}, destination is {dst.arch}"
    if src.cpu_vendor and dst.cpu_vendor and src.cpu_vendor != dst.cpu_vendor:
        return "False", "VendorMismatch", f"source CPU is {src.cpu_vendor}, destination CPU is {dst.cpu_vendor}"
    missing_features = sorted(set(src.cpu_features or ()) - set(dst.cpu_features or ()))
    if missing_features:
        shown = ", ".join(missing_features[:10]) + (" ..." if len(missing_features) > 10 else "")
        return (
            "False",
            "FeaturesMissing",
            f"destination CPU ({dst.cpu_model}) lacks {len(missing_features)} feature(s) of the source's: {shown}",
        )
    if src.cpu_model != dst.cpu_model:
        return "True", "FeaturesCovered", f"{src.cpu_model} -> {dst.cpu_model}: every source CPU feature is present"
    return "True", "SameModel", f"both hosts have CPU model {src.cpu_model}"


def storage_compatibility(vm: VirtualMachine, copy_storage: str) -> tuple[ConditionStatus, str, str]:
    """Whether the VM's disks can follow it.

    A disk with ``path`` is an existing image the user provided, taken to be on
    storage both hosts share; a disk with ``size``, or an overlay on an Image,
    is an image the source's agent created in its own storage, which only a
    copy (copyStorage all or incremental) brings to the destination.
    """
    disks = vm.spec.disks or []
    if not disks:
        return "True", "NoDisks", "the VM has no disks"
    if copy_storage != "none":
        return "True", "CopyStorage", f"{len(disks)} disk(s) copied to the destination (copyStorage {copy_storage})"
    local = [d.name for d in disks if d.size is not None or (d.image is not None and not d.cdrom)]
    if local:
        return (
            "False",
            "LocalDisks",
            f"disk(s) {', '.join(local)} are local images of the source host; set copyStorage to all or incremental",
        )
    return "True", "SharedStorage", "every disk is an existing image on shared storage"


def snapshots_kept(
    vm: VirtualMachine, source: str, snapshots: Sequence[VirtualMachineSnapshot]
) -> tuple[ConditionStatus, str, str]:
    """Whether a move keeps the VM's snapshots: it cannot, they are inside its disks on ``source``."""
    names = sorted(s.name for s in snapshots)
    shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
    return (
        "False",
        "HasSnapshots",
        f"{vm.name} has {len(names)} snapshot(s) ({shown}) inside its disks on {source}, which a migration would "
        "lose (they do not move with the disks): delete them first",
    )


def _unpinned(vm: VirtualMachine) -> VirtualMachine:
    """The VM as placement should judge it for a move: spec.host names where it was asked to start, not a pin."""
    return vm.model_copy(update={"spec": vm.spec.model_copy(update={"host": None})})


def check(
    m: Migration,
    vm: VirtualMachine | None,
    hosts: Sequence[Host],
    placed: Mapping[str, Iterable[Request]],
    others: Iterable[Migration],
    cpu_ratio: int = DEFAULT_CPU_ALLOCATION_RATIO,
    images: Mapping[str, Image] = NO_IMAGES,
    snapshots: Sequence[VirtualMachineSnapshot] = (),
    facts: Mapping[str, HostFacts] | None = None,
) -> Check:
    """Validate a migration and compute its pre-flight conditions.

    ``placed`` maps each host to what its placed VMs take, including what
    admitted migrations are bringing to it; ``others`` are the other
    Migrations of the cluster; ``images`` the Images by name (a VM whose
    disks use some gets ImageReady: the destination must hold them all, and
    while it fetches them the check waits rather than refuses); ``snapshots``
    the VM's snapshots (a VM with any gets SnapshotsKept False: they live
    inside its disks on the source and would be lost by the move); ``facts``: hosts' :class:`HostFacts` by
    name where the caller knows them already (the gateway: what the operator last wrote on each Host).
    """
    namespace = m.metadata.namespace or ""
    result = Check()
    if vm is None:
        result.refusal = f"VirtualMachine {namespace}/{m.spec.vm_name} does not exist"
        return result
    if vm.metadata.deletion_timestamp is not None:
        result.refusal = f"VirtualMachine {namespace}/{vm.name} is being deleted"
        return result
    source = vm.status.host if vm.status else None
    if not source:
        result.refusal = f"VirtualMachine {namespace}/{vm.name} is not placed on any host yet"
        return result
    result.source = source
    if m.spec.live and not vm.can_live_migrate:
        result.refusal = (
            f"a live migration needs a running VM; {vm.name} is {vm.phase or 'not started'} (set live to false)"
        )
        return result
    rival = _earlier_active(m, others)
    if rival is not None:
        result.refusal = f"VirtualMachine {vm.name} already has an active migration: {rival}"
        return result
    movable = _unpinned(vm)
    if m.spec.destination_host:
        dest = find_host(hosts, m.spec.destination_host)
        if dest is None:
            result.refusal = f"destination host {m.spec.destination_host} does not exist"
            return result
        if dest.name == source:
            result.refusal = f"the VM already runs on {dest.name}: destination and source are the same host"
            return result
        if not dest.is_ready:
            result.refusal = f"destination host {dest.name} is not Ready"
            return result
        if dest.spec.maintenance:
            result.refusal = f"destination host {dest.name} is in maintenance"
            return result
    else:
        decision = choose_host(movable, [h for h in hosts if h.name != source], placed, cpu_ratio, images, facts=facts)
        if decision.host is None:
            result.conditions.append(
                m.condition_after(ConditionType.DESTINATION_CAPACITY, "False", "NoHostFits", decision.message)
            )
            result.refusal = f"no destination can take the VM: {decision.message}"
            return result
        dest = decision.host
    result.destination = dest
    known = facts.get(dest.name) if facts is not None else None
    fit = evaluate(movable, dest, placed.get(dest.name, ()), cpu_ratio=cpu_ratio, facts=known)
    if fit.fits:
        capacity = m.condition_after(
            ConditionType.DESTINATION_CAPACITY,
            "True",
            "Fits",
            f"{dest.name} has {fit.free_cpu} CPU and {fit.free_memory // 2**20}Mi free",
        )
    else:
        capacity = m.condition_after(
            ConditionType.DESTINATION_CAPACITY, "False", "Insufficient", f"{dest.name}: {', '.join(fit.reasons)}"
        )
    source_host = find_host(hosts, source)
    if source_host is None:
        cpu: tuple[ConditionStatus, str, str] = ("Unknown", "NotReported", f"source host {source} does not exist")
    else:
        cpu = cpu_compatibility(source_host, dest)
    storage = storage_compatibility(vm, m.spec.copy_storage)
    result.conditions = [
        capacity,
        m.condition_after(ConditionType.CPU_COMPATIBLE, *cpu),
        m.condition_after(ConditionType.STORAGE_COMPATIBLE, *storage),
    ]
    if images_of(vm):
        image_ready = m.condition_after(ConditionType.IMAGE_READY, *on_target(vm, dest.name, images))
        result.conditions.append(image_ready)
        result.fetching = image_ready.reason == IMAGE_FETCHING
    if snapshots:
        result.conditions.append(
            m.condition_after(ConditionType.SNAPSHOTS_KEPT, *snapshots_kept(vm, source, snapshots))
        )
    failed = [c for c in result.conditions if c.status == "False" and c.reason != IMAGE_FETCHING]
    if failed:
        result.refusal = "; ".join(f"{c.type}: {c.message}" for c in failed)
    return result


def _earlier_active(m: Migration, others: Iterable[Migration]) -> str | None:
    """Another Migration of the same VM that passed its checks and has not ended (queued or under way).

    Pending ones do not count: they are checked one at a time, so of two
    valid Migrations of one VM the first checked goes on and the other fails.
    """
    for other in others:
        if other.metadata.uid == m.metadata.uid or other.metadata.namespace != m.metadata.namespace:
            continue
        if other.spec.vm_name != m.spec.vm_name or other.metadata.deletion_timestamp:
            continue
        if other.is_active or other.phase == "Scheduling":
            return other.name
    return None


@dataclass
class Plan:
    """One scheduling pass: who starts now, and everyone else's place in the queue."""

    admit: list[Migration] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)  # uid: 1..n
    reasons: dict[str, str] = field(default_factory=dict)  # uid: what holds it back


def plan_queue(migrations: Iterable[Migration], parallel: int, per_host: int) -> Plan:
    """Admit queued migrations (phase Scheduling) in creation order within the limits.

    ``parallel`` bounds the active migrations of the cluster, ``per_host`` the
    active migrations leaving one source host. A migration held back only by
    its source's limit does not hold back those behind it.
    """
    migrations = list(migrations)
    active = [m for m in migrations if m.is_active]
    outbound: dict[str, int] = {}
    for m in active:
        src = m.status.source_host if m.status else None
        if src:
            outbound[src] = outbound.get(src, 0) + 1
    running = len(active)
    plan = Plan()
    waiting = sorted(
        (m for m in migrations if m.phase == "Scheduling" and m.metadata.deletion_timestamp is None),
        key=creation_order,
    )
    for m in waiting:
        src = (m.status.source_host if m.status else None) or ""
        if running >= parallel:
            plan.reasons[m.metadata.uid or ""] = f"{running} migrations running, the cluster allows {parallel}"
        elif outbound.get(src, 0) >= per_host:
            plan.reasons[m.metadata.uid or ""] = (
                f"{outbound[src]} migrations leaving host {src}, a host allows {per_host}"
            )
        else:
            plan.admit.append(m)
            running += 1
            outbound[src] = outbound.get(src, 0) + 1
            continue
        plan.positions[m.metadata.uid or ""] = len(plan.positions) + 1
    return plan
