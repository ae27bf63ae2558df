"""The operator's one account of the fleet: what each Host has, has been promised and is receiving.

Four watch caches (Hosts, VirtualMachines, Migrations, Images) feed it, so a decision
costs no LIST; every decision that gives out room (placing a VM, checking or
admitting a Migration, a drain pass) is taken under its one lock. What this
process wrote a moment ago may not have come back through the watches yet:
the answer of every write is kept as a promise over the cached object until
the watch delivers that version or a later one (resourceVersions are etcd's
revisions, which only grow), so the next decision already sees it.

A host carries the VMs placed on it (status.host) and the VMs that admitted
migrations are bringing to it; while a VM moves it counts on both hosts, so
a VM created meanwhile cannot take the room its migration was promised.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from vapor.kube import Informer, Kube, WatchEvent
from vapor.model import (
    Condition,
    Host,
    Image,
    MetadataPatch,
    Migration,
    Resource,
    VirtualMachine,
    VirtualMachineStatus,
    find_host,
)
from vapor.model.host import DEFAULT_CPU_ALLOCATION_RATIO
from vapor.model.names import FIELD_MANAGER_OPERATOR as FIELD_MANAGER
from vapor.model.names import HOST_LABEL
from vapor.model.snapshot import VirtualMachineSnapshot
from vapor.model.virtualmachine import VMPhase
from vapor.rules.placement import Request, allocatable

from .tally import NOTHING, Tally

R = TypeVar("R", bound=Resource)  # type: ignore[type-arg]
VMKey = tuple[str, str]  # (namespace, name)
PROMISE_SECONDS = 60.0  # a promise the watch never confirmed (history compacted meanwhile) is dropped after this


def vm_key(vm: VirtualMachine) -> VMKey:
    """(namespace, name) of a VM."""
    return (vm.metadata.namespace or "", vm.name)


def _version(obj: Resource) -> int:  # type: ignore[type-arg]
    """metadata.resourceVersion as a number (etcd's revision, which only grows), -1 when it is not one."""
    rv = obj.metadata.resource_version or ""
    return int(rv) if rv.isdigit() else -1


class _Promised(Generic[R]):
    """One kind's watch cache with the objects this process wrote laid over it until the watch catches up."""

    def __init__(self, kube: Kube, kind: type[R]) -> None:
        self.cache: Informer[R] = Informer(kube, kind, managed_fields=False)  # who wrote what: never asked here
        self._wrote: dict[str, tuple[R, float]] = {}  # uid: (the write's answer, when)
        self._named: dict[tuple[str | None, str], str] = {}  # (namespace, name): uid of a promise
        self.cache.on_change(self._delivered)

    def _delivered(self, event: WatchEvent[R]) -> None:
        uid = event.object.metadata.uid or ""
        promise = self._wrote.get(uid)
        if promise is not None and (event.type == "DELETED" or _version(event.object) >= _version(promise[0])):
            self._forget(uid)

    def _forget(self, uid: str) -> None:
        obj, _at = self._wrote.pop(uid)
        key = (obj.metadata.namespace or None, obj.name)
        if self._named.get(key) == uid:
            del self._named[key]

    def _fresher(self, obj: R) -> bool:
        cached = self.cache.by_uid(obj.metadata.uid or "")
        return cached is None or _version(obj) > _version(cached)

    def _kept(self, uid: str, now: float) -> R | None:
        """The promise for ``uid`` while it still says more than the cache, else None (and it is dropped)."""
        obj, at = self._wrote[uid]
        if now - at > PROMISE_SECONDS or not self._fresher(obj):
            self._forget(uid)
            return None
        return obj

    def wrote(self, obj: R) -> None:
        """Keep ``obj`` (a write's answer) until the watch delivers that version or a later one."""
        gone = obj.metadata.deletion_timestamp is not None and not obj.metadata.finalizers
        if not gone and self._fresher(obj):
            uid = obj.metadata.uid or ""
            self._wrote[uid] = (obj, time.monotonic())
            self._named[(obj.metadata.namespace or None, obj.name)] = uid

    def promised(self) -> list[R]:
        """The objects written and not yet brought back by the watch, as written."""
        now = time.monotonic()
        return [obj for uid in list(self._wrote) if (obj := self._kept(uid, now)) is not None]

    def items(self) -> list[R]:
        """Every object, as this process last knows it."""
        by_uid = {o.metadata.uid or "": o for o in self.cache.items()}
        by_uid.update({o.metadata.uid or "": o for o in self.promised()})
        return list(by_uid.values())

    def get(self, name: str, namespace: str | None = None) -> R | None:
        """One object by name, as this process last knows it."""
        uid = self._named.get((namespace or None, name))
        promised = self._kept(uid, time.monotonic()) if uid is not None else None
        return promised or self.cache.get(name, namespace)


class Ledger:
    """Hosts, VMs and Migrations as the operator knows them, and what each host carries."""

    def __init__(self, kube: Kube, cpu_ratio: int = DEFAULT_CPU_ALLOCATION_RATIO) -> None:
        self.kube = kube
        self.cpu_ratio = cpu_ratio
        self.lock = asyncio.Lock()  # every decision that gives out room or slots is taken under it
        self._hosts = _Promised(kube, Host)
        self._vms = _Promised(kube, VirtualMachine)
        self._migrations = _Promised(kube, Migration)
        self._images = _Promised(kube, Image)  # read by placement and migration checks; written by .images
        self._snapshots = _Promised(kube, VirtualMachineSnapshot)  # a VM's snapshots hold its migrations back
        self._writes = 0  # with the caches' generations: whether the last carried() still holds
        self._carried: tuple[tuple[int, int, int], dict[str, list[Request]]] | None = None
        self._reserved: dict[VMKey, tuple[str, Request]] = {}  # placements decided, their writes in flight
        self._tally = Tally()  # each host's placed VMs, summed as the VM watch brings them
        self._vms.cache.on_change(self._tallied)

    def on_vm_change(self, handler: Callable[[WatchEvent[VirtualMachine]], None]) -> None:
        """Call ``handler`` for every VM change the ledger's watch brings."""
        self._vms.cache.on_change(handler)

    def _tallied(self, event: WatchEvent[VirtualMachine]) -> None:
        if event.type == "DELETED":
            self._tally.drop(event.object)
        else:
            self._tally.put(event.object)

    async def start(self) -> None:
        """Fill the caches (the first lists) and follow the watches."""
        await asyncio.gather(*(p.cache.start() for p in self._caches()))
        self._tally.fill(self._vms.cache.items())

    async def stop(self) -> None:
        """Stop the watches."""
        for p in self._caches():
            await p.cache.stop()

    def _caches(
        self,
    ) -> tuple[
        _Promised[Host],
        _Promised[VirtualMachine],
        _Promised[Migration],
        _Promised[Image],
        _Promised[VirtualMachineSnapshot],
    ]:
        return (self._hosts, self._vms, self._migrations, self._images, self._snapshots)

    # -- reading ---------------------------------------------------------------------------------
    def hosts(self) -> list[Host]:
        """Every Host."""
        return self._hosts.items()

    def host(self, name_or_id: str) -> Host | None:
        """A Host by name or stable id."""
        return self._hosts.get(name_or_id) or find_host(self._hosts.items(), name_or_id)

    def vms(self) -> list[VirtualMachine]:
        """Every VirtualMachine."""
        return self._vms.items()

    def vm(self, namespace: str, name: str) -> VirtualMachine | None:
        """A VirtualMachine by namespace and name."""
        return self._vms.get(name, namespace)

    def vm_of(self, m: Migration) -> VirtualMachine | None:
        """The VM a Migration moves, if it exists."""
        return self.vm(m.metadata.namespace or "", m.spec.vm_name)

    def migrations(self) -> list[Migration]:
        """Every Migration."""
        return self._migrations.items()

    def images(self) -> dict[str, Image]:
        """Every Image, by name."""
        return {i.name: i for i in self._images.items()}

    def image(self, name: str) -> Image | None:
        """An Image by name."""
        return self._images.get(name)

    def snapshots_wait(self) -> bool:
        """Whether some snapshot is not claimed by a host yet (no status)."""
        return any(s.status is None for s in self._snapshots.items())

    def snapshots_of(self, vm: VirtualMachine) -> list[VirtualMachineSnapshot]:
        """The snapshots of ``vm`` (by name in its namespace, not of an earlier VM of that name), deleted ones too."""
        return [
            s
            for s in self._snapshots.items()
            if s.metadata.namespace == vm.metadata.namespace
            and s.spec.vm == vm.name
            and (s.status is None or s.status.vm_uid in (None, vm.metadata.uid))
        ]

    def on_host(self, host: str) -> list[VirtualMachine]:
        """The VMs placed on ``host``."""
        return [vm for vm in self.vms() if vm.host == host]

    async def seen(self, vm: VirtualMachine, *, gone: bool, timeout: float = 5.0) -> None:
        """Wait until the VM cache holds ``vm``'s version or a later one (``gone``: no longer holds it).

        kopf's watch and the ledger's are two watches: an event handler that
        decides from the ledger waits for it to catch up first.
        """
        uid, version = vm.metadata.uid or "", _version(vm)

        def caught_up() -> bool:
            cached = self._vms.cache.by_uid(uid)
            return cached is None if gone else cached is not None and _version(cached) >= version

        if not caught_up():
            await self._vms.cache.wait_for(caught_up, timeout)

    def carried(self, exclude: VMKey | None = None) -> dict[str, list[Request]]:
        """What each host carries: its placed VMs and the VMs admitted migrations bring (``exclude`` left out)."""
        if exclude is None:  # every host's health check asks: count once per change
            now = (self._vms.cache.generation, self._migrations.cache.generation, self._writes)
            if self._carried is None or self._carried[0] != now:
                self._carried = (now, self._count(None))
            return self._carried[1]
        return self._count(exclude)

    def _count(self, exclude: VMKey | None) -> dict[str, list[Request]]:
        totals = self._tally.totals()  # the VM cache's placed VMs; what it has not brought yet is laid over it

        def shift(entry: tuple[str, Request] | None, sign: int) -> None:
            if entry is not None:
                host, request = entry
                totals[host] = totals.get(host, NOTHING) + request if sign > 0 else totals.get(host, NOTHING) - request

        for vm in self._vms.promised():
            shift(self._tally.of(vm.metadata.uid or ""), -1)
            shift((vm.host, Request.of(vm)) if vm.host else None, +1)
        if exclude is not None:
            left_out = self.vm(exclude[0], exclude[1])
            if left_out is not None and left_out.host:
                shift((left_out.host, Request.of(left_out)), -1)
        for m in self.migrations():
            key = (m.metadata.namespace or "", m.spec.vm_name)
            moving = self.vm(*key) if m.is_active and m.target_host and key != exclude else None
            if m.target_host and moving and moving.host != m.target_host:
                shift((m.target_host, Request.of(moving)), +1)
        for key, entry in self._reserved.items():
            moving = self.vm(*key)
            if moving is not None and not moving.host and key != exclude:
                shift(entry, +1)
        return {host: [total] for host, total in totals.items()}

    def vm_count(self, host: str) -> int:
        """How many VMs are placed on ``host`` (as :meth:`on_host` counts them, without a pass over every VM)."""
        count = self._tally.count(host)
        for vm in self._vms.promised():
            counted = self._tally.of(vm.metadata.uid or "")
            count += (vm.host == host) - (counted is not None and counted[0] == host)
        return count

    def reserve(self, key: VMKey, host: str, request: Request) -> None:
        """Count ``request`` on ``host`` for the unplaced VM ``key`` while its placement is being written."""
        self._reserved[key] = (host, request)
        self._writes += 1

    def release(self, key: VMKey) -> None:
        """Stop counting a reservation (its placement was written and is counted, or it failed)."""
        if self._reserved.pop(key, None) is not None:
            self._writes += 1

    def allocation(self, host: Host) -> tuple[Request | None, Request]:
        """What ``host`` may give (None before it reported capacity) and what it has given."""
        return allocatable(host, self.cpu_ratio), Request.total(self.carried().get(host.name, ()))

    # -- writing ---------------------------------------------------------------------------------
    def wrote(self, obj: Host | VirtualMachine | Migration | Image) -> None:
        """Count a write's answer at once (the watch brings it a moment later)."""
        self._writes += 1
        if isinstance(obj, Host):
            self._hosts.wrote(obj)
        elif isinstance(obj, VirtualMachine):
            self._vms.wrote(obj)
        elif isinstance(obj, Image):
            self._images.wrote(obj)
        else:
            self._migrations.wrote(obj)

    async def bind_vm(
        self, vm: VirtualMachine, host: Host, *, phase: VMPhase | None = None, condition: Condition | None = None
    ) -> VirtualMachine:
        """Place ``vm`` on ``host``: status.host and hostId (and ``phase``, ``condition``), then the host label.

        The label comes last because the host's agent selects on it: it sees
        the VM only once it is fully placed. Used by placement and by a
        migration that moved the VM. NotFound when the VM went meanwhile.
        """
        vms = self.kube.resources(VirtualMachine)
        namespace = vm.metadata.namespace
        status = VirtualMachineStatus(host=host.name, host_id=host.host_id)
        if phase is not None:
            status.phase = phase
        if vm.host != host.name or phase is not None:
            vm = await vms.patch_status(vm.name, status, namespace=namespace, field_manager=FIELD_MANAGER)
            self.wrote(vm)
        if condition is not None:
            await vms.apply_status(
                vm.name, VirtualMachineStatus(conditions=[condition]), namespace=namespace, field_manager=FIELD_MANAGER
            )
        if (vm.metadata.labels or {}).get(HOST_LABEL) != host.name:
            vm = await vms.patch(
                vm.name, metadata=MetadataPatch(labels={HOST_LABEL: host.name}), namespace=namespace,
                field_manager=FIELD_MANAGER,
            )  # fmt: skip
            self.wrote(vm)
        return vm
