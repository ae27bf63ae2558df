"""Runs the VirtualMachines placed on this node: keeps each libvirt domain as its resource asks.

The controller watches only VirtualMachines labelled ``vapor.io/host=<node>``
(a server-side selector: other nodes' VMs never reach this agent). Every
change of a VM, and every libvirt lifecycle event of its domain, puts the VM's
key on a work queue; a reconcile then reads the domain's state, acts on the
run strategy, restart requests and deletion, and writes what it sees to the
VM's status. Reconciling is idempotent, so an agent that restarts adopts the
domains it finds (matched by the uid in their metadata) and changes nothing
that is already right.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable

import libvirt  # type: ignore[import-untyped]

from vapor.cloudinit import CloudInitError
from vapor.kube import Conflict, Kube, KubeError, NotFound
from vapor.kube._informer import Key, key_of
from vapor.model import MetadataPatch, VirtualMachine, VirtualMachineStatus, names
from vapor.model.virtualmachine import VMPhase

from .._config import AgentConfig
from ..host import domain as _domain
from ..host.hypervisor import kvm_usable
from ..host.libvirt import EVENT_NAMES, Libvirt
from . import guestinfo
from . import vmstatus as _vmstatus
from .images import ImageController
from .loop import NodeController
from .vmchanges import Changes, restart_condition
from .vmclone import Cloner, cloned_of
from .vmimages import ImageWait, disks_for, image_ready_of, waiting_status
from .vmpower import Power
from .vmseed import Seed, Seeds
from .vmstatus import ACTIVE, VMError, phase_of, ready_of

log = logging.getLogger("vapor.agent.vms")

CONTROLLER = "agent"


class VMController(NodeController[VirtualMachine]):
    """Keeps the libvirt domains of this node's VirtualMachines as their resources ask."""

    def __init__(
        self,
        kube: Kube,
        config: AgentConfig,
        libvirt_conn: Libvirt,
        *,
        workers: int = 4,
        images: ImageController | None = None,
    ) -> None:
        super().__init__(kube, VirtualMachine, config)
        self.libvirt = libvirt_conn
        self.images = images  # the host's Images, for disks[].image
        if images is not None:
            images.listeners.append(self._image_changed)
        self.vms = kube.resources(VirtualMachine)
        self.seeds = Seeds(kube, libvirt_conn, config.disks_dir)
        self.cloner = Cloner(kube, libvirt_conn, config.disks_dir, self.informer.get, self._apply_status)
        self.changes = Changes(kube, libvirt_conn, config.disks_dir)
        self.domain_type = "qemu"
        self.arch = "x86_64"
        self._workers = workers
        self.power = Power(libvirt_conn, self._event, self.queue.add_after, self.cloner.hold)
        self._failures: dict[Key, int] = {}
        self.held: set[str] = set()  # uids whose domain a snapshot or restore works on: hands off meanwhile
        self.removed: list[Callable[[VirtualMachine], Awaitable[None]]] = []  # called once a VM's domain is gone

    @contextlib.asynccontextmanager
    async def holding(self, vm: VirtualMachine) -> AsyncIterator[None]:
        """Leave ``vm``'s domain alone while the block runs (a snapshot pauses it, a restore loads it); look after."""
        uid = vm.metadata.uid or ""
        self.held.add(uid)
        try:
            yield
        finally:
            self.held.discard(uid)
            self.queue.add(key_of(vm))

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Learn the domain type, start watching VMs and domains, and reconcile everything once."""
        caps = await self.libvirt.call(self.libvirt.connection().getCapabilities)
        auto = "kvm" if kvm_usable(caps) else "qemu"
        self.domain_type = auto if self.config.domain_type == "auto" else self.config.domain_type
        self.libvirt.on_lifecycle(self._on_domain_event)
        self.libvirt.on_agent_lifecycle(self._on_agent_event)
        await self.watch()
        await self._report_orphans()
        self.run(self.reconcile, workers=self._workers, name="vms")
        poller = guestinfo.AddressPoller(self.libvirt, self.informer.items, lambda vm: self.queue.add(key_of(vm)))
        self._tasks.append(asyncio.create_task(poller.run(), name="vms-addresses"))
        log.info("watching virtual machines", extra={"node": self.config.node_name, "domain_type": self.domain_type})

    def _on_domain_event(self, name: str, uuid: str, event: int, detail: int) -> None:
        self._queue_domain(name, "domain event", domain=uuid, event=EVENT_NAMES.get(event, event))

    def _on_agent_event(self, name: str, connected: bool) -> None:
        self._queue_domain(name, "guest agent " + ("connected" if connected else "went away"))

    def _queue_domain(self, name: str, what: str, **extra: object) -> None:
        key = _domain.key_of_domain(name)
        if key is not None and self.informer.get(key[1], key[0]) is not None:
            log.info(what, extra={"vm": "/".join(key), **extra})
            self.queue.add(key)

    def _image_changed(self, image: str) -> None:
        """An Image's copy here moved on: the VMs waiting for it look again."""
        for vm in self.informer.items():
            if any(d.image == image for d in vm.spec.disks or []):
                self.queue.add(key_of(vm))

    async def _report_orphans(self) -> None:
        """Log Vapor domains whose VM this node does not hold (they are left alone)."""
        known = {vm.metadata.uid for vm in self.informer.items()}
        for dom in await self.libvirt.call(self.libvirt.connection().listAllDomains, 0):
            meta = await self._metadata(dom)
            if meta is not None and meta.uid not in known:
                log.info("domain of no VM placed here; leaving it alone", extra={"domain": dom.name()})

    # -- reconcile ---------------------------------------------------------------------
    async def reconcile(self, key: Key) -> None:
        """Bring one VM's domain in line with its resource, then report what is."""
        vm = self.informer.get(key[1], key[0])
        if vm is None:
            self._failures.pop(key, None)
            return
        migrating = (vm.metadata.annotations or {}).get(names.MIGRATING_ANNOTATION)
        if migrating:
            # A Migration owns the domain now (it may be leaving or arriving): hands off until it ends. A deletion
            # waits too: the domain may already run on the target, whose agent removes it once the VM is bound there.
            log.debug("VM is migrating; leaving it alone", extra={"vm": "/".join(key), "migration": migrating})
            return
        if vm.metadata.uid in self.held and vm.metadata.deletion_timestamp is None:
            return  # a snapshot or restore has the domain; it queues the VM again when done
        try:
            if vm.metadata.deletion_timestamp is not None:
                await self._finalize(vm)
                return
            vm = await self._ensure_finalizer(vm)
            seed = await self._ensure_seed(vm)
            dom = await self._ensure_defined(vm, seed)
            await self.seeds.record(dom, seed)
            if seed is None:
                await self.seeds.remove(vm)
            await self.changes.bring(vm, dom, (await self.libvirt.call(dom.state))[0] in ACTIVE)
            await self.power.apply(vm, dom)
            await self._write_status(vm, dom)
            self._failures.pop(key, None)
        except Conflict:
            self.queue.add_after(key, 0.2)  # the cache is behind; the watch brings the fresh object
        except ImageWait as wait:
            if wait.failed:
                await self._failed(vm, wait.failure())
            else:  # progress wakes it too (the Image controller's listener)
                await self._apply_status(vm, waiting_status(vm, wait, self.power.restart_done(vm)))
                self.queue.add_after(key, 10.0)
        except VMError as exc:
            if not self.libvirt.alive():
                self._retry(key)
                return
            await self._failed(vm, exc)
        except libvirt.libvirtError as exc:
            if not self.libvirt.alive():  # libvirtd went away, not this VM: try again once reconnected
                self._retry(key)
                return
            await self._failed(vm, VMError("LibvirtError", str(exc)))
        except NotFound:
            return  # deleted meanwhile
        except KubeError as exc:
            log.warning("writing the VM failed", extra={"vm": "/".join(key), "error": str(exc)})
            self._retry(key)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception:  # a bug or a surprise must not leave the VM alone for good
            log.exception("reconcile failed", extra={"vm": "/".join(key)})
            self._retry(key)

    def _retry(self, key: Key, longest: float = 60.0) -> None:
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        self.queue.add_after(key, min(longest, 0.5 * 2**count))

    async def _failed(self, vm: VirtualMachine, exc: VMError) -> None:
        log.warning("VM failed", extra={"vm": "/".join(key_of(vm)), "reason": exc.reason, "error": exc.message})
        if self._failures.get(key_of(vm), 0) == 0:
            await self.kube.events.record(
                vm,
                reason=exc.reason,
                note=exc.message[:1000],
                controller=CONTROLLER,
                action="Reconcile",
                type="Warning",
            )
        try:
            failed = _vmstatus.build(
                vm,
                phase=await self._phase_now(vm, "Pending" if exc.waiting else "Failed", exc.leaves_domain),
                ready=("False", exc.reason, exc.message),
                restart_done=self.power.restart_done(vm),
                others=[exc.condition] if exc.condition else image_ready_of(vm),
            )
            await self._apply_status(vm, failed)
        except KubeError as err:
            log.warning("could not write the failure", extra={"vm": vm.name, "error": str(err)})
        self._retry(key_of(vm), 10.0 if exc.waiting else 60.0)

    async def _phase_now(self, vm: VirtualMachine, otherwise: VMPhase, look: bool) -> VMPhase:
        """With ``look``, the phase of the VM's running domain (left as it was), else ``otherwise``."""
        dom = await self.libvirt.lookup(_domain.domain_name(vm.metadata.namespace or "", vm.name)) if look else None
        if dom is None:
            return otherwise
        state, _ = await self.libvirt.call(dom.state)
        return phase_of(state, vm.spec.run_strategy, False) if state in ACTIVE else otherwise

    async def _ensure_seed(self, vm: VirtualMachine) -> Seed | None:
        """The VM's cloud-init seed, written when it changed; a VM whose seed cannot be made is not started."""
        try:
            seed = await self.seeds.ensure(vm)
        except CloudInitError as exc:
            dom, _ = await self.find_domain(vm)
            if dom is not None and vm.spec.run_strategy == "Halted":
                await self.power.apply(vm, dom)  # stopping needs no seed
            raise VMError(exc.reason, exc.message, waiting=exc.waiting, leaves_domain=True) from None
        if seed is not None and seed.rewritten:
            note = "Wrote a new cloud-init seed; the guest reads it at its next boot."
            await self._event(vm, "CloudInitUpdated", note, "Configure")
        return seed

    async def _ensure_finalizer(self, vm: VirtualMachine) -> VirtualMachine:
        finalizers = list(vm.metadata.finalizers or [])
        if names.VM_FINALIZER in finalizers:
            return vm
        patch = MetadataPatch(
            finalizers=[*finalizers, names.VM_FINALIZER], resource_version=vm.metadata.resource_version
        )
        return await self.vms.patch(
            vm.name, metadata=patch, namespace=vm.metadata.namespace, field_manager=names.FIELD_MANAGER_AGENT
        )

    async def _metadata(self, dom: libvirt.virDomain) -> _domain.VaporMetadata | None:
        try:
            text = await self.libvirt.call(dom.metadata, libvirt.VIR_DOMAIN_METADATA_ELEMENT, _domain.METADATA_NS, 0)
        except libvirt.libvirtError:
            return None
        return _domain.VaporMetadata.from_xml(text)

    async def find_domain(self, vm: VirtualMachine) -> tuple[libvirt.virDomain | None, _domain.VaporMetadata | None]:
        """The domain of ``vm`` (by name, checked against the uid in its metadata) and that metadata."""
        name = _domain.domain_name(vm.metadata.namespace or "", vm.name)
        dom = await self.libvirt.lookup(name)
        if dom is None:
            return None, None
        meta = await self._metadata(dom)
        if meta is None:
            raise VMError(
                "DomainNameTaken", f"a domain named {name} exists and was not made by Vapor; rename or remove it"
            )
        if meta.uid != vm.metadata.uid:
            # Left by an earlier VM of the same name whose resource was removed while no agent ran.
            log.warning("replacing a stale domain", extra={"domain": name, "stale_uid": meta.uid})
            await self.libvirt.remove(dom)
            await asyncio.to_thread(shutil.rmtree, self.config.disks_dir / meta.uid, True)
            return None, None
        return dom, meta

    async def _ensure_defined(self, vm: VirtualMachine, seed: Seed | None) -> libvirt.virDomain:
        dom, meta = await self.find_domain(vm)
        wanted = _domain.spec_hash(vm, self.domain_type)
        if dom is not None and meta is not None and await self.changes.definition_hash(dom) == wanted:
            return dom
        sources, images = await disks_for(self.config, vm, self.images, self.cloner.ensure)
        uuid = await self.libvirt.call(dom.UUIDString) if dom is not None else None
        macs = await self.changes.card_macs(dom) if dom is not None else None
        xml = _domain.build_xml(
            vm,
            domain_type=self.domain_type,
            storage_dir=self.config.disks_dir,
            arch=self.arch,
            uuid=uuid,
            sources=sources,
            seed=seed.path if seed is not None else None,
            images=images,
            macs=macs,
        )
        try:
            new = await self.libvirt.call(self.libvirt.connection().defineXML, xml)
        except libvirt.libvirtError as exc:
            raise VMError("DefineFailed", f"libvirt refused the domain: {exc}") from exc
        if dom is None:
            note = f"Defined domain {new.name()} ({self.domain_type})."
            await self._event(vm, "Defined", note, "Define")
        else:
            note = "Updated the domain definition; a running domain takes what it can live, the rest at its next start."
            await self._event(vm, "Redefined", note, "Define")
        return new

    async def _event(self, vm: VirtualMachine, reason: str, note: str, action: str) -> None:
        log.info(note, extra={"vm": "/".join(key_of(vm)), "reason": reason})
        await self.kube.events.record(vm, reason=reason, note=note, controller=CONTROLLER, action=action)

    async def _finalize(self, vm: VirtualMachine) -> None:
        if names.VM_FINALIZER not in (vm.metadata.finalizers or []):
            return
        uid = vm.metadata.uid or ""
        try:
            dom, _ = await self.find_domain(vm)
        except VMError:  # a domain of that name that Vapor did not make: not ours to remove
            dom = None
        if dom is not None:
            await self.libvirt.remove(dom)
        created = self.config.disks_dir / uid
        if created.exists():
            await asyncio.to_thread(shutil.rmtree, created)
        self.power.forget(vm)
        if self.images is not None:  # an Image being deleted may wait for this VM's overlay to go
            for disk in vm.spec.disks or []:
                if disk.image:
                    self.images.queue.add(disk.image)
        for removed in self.removed:  # the VM's snapshots went with its disks
            await removed(vm)
        finalizers = [f for f in vm.metadata.finalizers or [] if f != names.VM_FINALIZER]
        await self.vms.patch(
            vm.name,
            metadata=MetadataPatch(finalizers=finalizers, resource_version=vm.metadata.resource_version),
            namespace=vm.metadata.namespace,
            field_manager=names.FIELD_MANAGER_AGENT,
        )
        log.info("removed the domain and its disks", extra={"vm": "/".join(key_of(vm))})

    # -- status ------------------------------------------------------------------------
    async def _write_status(self, vm: VirtualMachine, dom: libvirt.virDomain) -> None:
        state, _ = await self.libvirt.call(dom.state)
        strategy = vm.spec.run_strategy
        phase = phase_of(state, strategy, self.power.stopping(vm, state))
        guest = await guestinfo.read(self.libvirt, dom) if state in ACTIVE else None  # cleared when it stops
        seed = await self.seeds.restart_condition(vm, dom, state in ACTIVE)
        pending, restart = restart_condition(seed, await self.changes.pending(vm, dom, state in ACTIVE))
        status = _vmstatus.build(
            vm,
            phase=phase,
            ready=ready_of(state, strategy, phase),
            domain_uuid=await self.libvirt.call(dom.UUIDString),
            addresses=guest.addresses if guest else None,
            interfaces=guest.interfaces if guest else None,
            restart_done=self.power.restart_done(vm),
            pending_changes=pending,
            others=[
                restart,
                *(c for c in (guest.condition() if guest else None,) if c is not None),
                *image_ready_of(vm),
                *cloned_of(vm),
            ],
        )
        await self._apply_status(vm, status)

    async def _apply_status(self, vm: VirtualMachine, status: VirtualMachineStatus) -> None:
        """Server-side apply of the agent's status fields, when they differ from what is stored."""
        if _vmstatus.unchanged(vm, status):
            return
        await self.vms.apply_status(
            vm.name, status, namespace=vm.metadata.namespace, field_manager=names.FIELD_MANAGER_AGENT, force=True
        )
        log.info("status", extra={"vm": "/".join(key_of(vm)), "phase": status.phase})
