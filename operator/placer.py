"""Placing many VirtualMachines at once: decided in memory under the ledger's lock, written concurrently.

A fleet creates VMs faster than one placement at a time (a fresh read and
four writes under the lock each) can follow, so VMs are placed in batches.
Each batch takes every VM wanted since the last one and, under the ledger's
lock, decides them all in creation order against the ledger (:func:`.choose_host`),
each decision counting what the batch has already given: no host is given
more than it may give. A VM given a host is reserved on it
(:meth:`.Ledger.reserve`) until its write comes back, so every other
decision (the next batch, a Migration's admission, a drain) counts it too.
The lock is then let go, the next batch can be decided, and the writes run,
at most ``VAPOR_PLACEMENT_WRITES`` (64) at a time:

- a placement is one server-side apply of the status (host, hostId, phase
  Scheduled, condition Scheduled), made on the version the decision read
  (a VM changed meanwhile is read again and decided again), then the host
  label its host's agent selects on (last, so the agent sees it placed);
- a VM no host can take gets its Scheduled=False condition and phase
  Unschedulable, written only when they change, and a Warning Event once
  per distinct reason;
- the Scheduled Event and the Images' fetchHosts follow apart, holding up
  neither a write slot nor the next decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Iterable

from vapor.kube import Conflict, NotFound, WatchEvent
from vapor.model import ConditionStatus, Host, MetadataPatch, VirtualMachine, VirtualMachineStatus
from vapor.model.image import images_of
from vapor.model.names import HOST_LABEL, ConditionType
from vapor.rules.placement import Decision, HostFacts, Request, choose_host

from . import heap, images, metrics
from .ledger import Ledger, VMKey, vm_key
from .settings import FIELD_MANAGER

log = logging.getLogger("vapor.operator.placer")

WRITES = int(os.environ.get("VAPOR_PLACEMENT_WRITES", "64"))  # placements written at once
NOTES = 8  # Events and image syncs written at once
UNSEEN_SECONDS = 60.0  # how long a VM asked for is awaited from the ledger's watch (then the placement pass asks)
# The placement's own field manager: it applies host, hostId, phase and the Scheduled condition together,
# and nothing else applies as it, so no later apply of the operator gives those fields up.
PLACEMENT_MANAGER = f"{FIELD_MANAGER}-placement"


def unplaced(vm: VirtualMachine) -> bool:
    """Whether ``vm`` waits for a host."""
    return not vm.host and vm.metadata.deletion_timestamp is None


class Placer:
    """One loop that places the VMs it is asked to look at, a batch at a time."""

    def __init__(self, ledger: Ledger, writes: int = WRITES) -> None:
        self.ledger = ledger
        self._wanted: set[VMKey] = set()
        self._writing: set[VMKey] = set()  # decided, writes in flight: the next batch leaves them be
        self._unseen: dict[VMKey, float] = {}  # wanted before the ledger's watch brought them: when
        ledger.on_vm_change(self._arrived)
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(writes)
        self._notes = asyncio.Semaphore(NOTES)
        self._loop: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _arrived(self, event: WatchEvent[VirtualMachine]) -> None:
        key = vm_key(event.object)
        if self._unseen.pop(key, None) is not None and event.type != "DELETED":
            self.want([key])

    def want(self, keys: Iterable[VMKey]) -> None:
        """Look at these VMs in the next batch (placed or gone ones are passed over)."""
        self._wanted.update(keys)
        self._wake.set()
        if self._loop is None or self._loop.done():
            self._loop = asyncio.create_task(self._run(), name="placer")

    async def relabel(self) -> None:
        """Label every placed VM whose label a failed write left missing (its agent selects on it)."""
        for vm in self.ledger.vms():
            if vm.host and vm_key(vm) not in self._writing and vm.metadata.deletion_timestamp is None:
                with contextlib.suppress(NotFound):
                    await label(self.ledger, vm, vm.host)

    async def stop(self) -> None:
        """Stop deciding and cancel the writes in flight (a restarted operator places what is left)."""
        for task in [*(t for t in (self._loop,) if t is not None), *self._tasks]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._batch()
            except Exception:  # the placement pass asks again
                log.exception("a placement batch failed")
            if not self._wanted and not self._writing:  # a burst is over: its freed buffers go back to the system
                heap.give_back()

    async def _batch(self) -> None:
        keys = self._wanted - self._writing
        self._wanted -= keys
        ledger = self.ledger
        found = {key: ledger.vm(*key) for key in keys}
        now = time.monotonic()
        self._unseen = {k: at for k, at in self._unseen.items() if now - at < UNSEEN_SECONDS}
        self._unseen.update((key, now) for key, vm in found.items() if vm is None)  # placed once the watch brings it
        async with ledger.lock:
            todo = sorted(
                (vm for key in found if (vm := ledger.vm(*key)) is not None and unplaced(vm)),
                key=lambda vm: (vm.metadata.creation_timestamp is None, vm.metadata.creation_timestamp, vm_key(vm)),
            )
            if not todo:
                return
            hosts, images_now = sorted(ledger.hosts(), key=lambda h: h.name), ledger.images()
            facts = {h.name: HostFacts.of(h, ledger.cpu_ratio) for h in hosts}  # read once for the whole batch
            given = {host: (Request.total(requests),) for host, requests in ledger.carried().items()}
            placed_now: dict[VMKey, str] = {}
            for vm in todo:
                source = _source(ledger, vm, placed_now)
                decision = choose_host(vm, hosts, given, ledger.cpu_ratio, images_now, source, facts)
                key = vm_key(vm)
                if decision.host is not None:
                    request = Request.of(vm)
                    name = decision.host.name
                    given[name] = (given.get(name, (Request(0, 0),))[0] + request,)
                    placed_now[key] = name
                    ledger.reserve(key, name, request)
                self._writing.add(key)
                self._spawn(self._write(vm, decision))
        log.debug("batch: %d decided, %d placed", len(todo), len(placed_now))

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, vm: VirtualMachine, decision: Decision) -> None:
        key = vm_key(vm)
        try:
            async with self._slots:
                if decision.host is None:
                    await self._refuse(vm, decision)
                else:
                    await self._bind(vm, decision.host, decision.message)
        except NotFound:
            pass  # the VM went meanwhile
        except Exception:
            log.exception("vm=%s/%s: writing its placement failed; the placement pass tries again", *key)
        finally:
            self.ledger.release(key)
            self._writing.discard(key)
            if key in self._wanted:
                self._wake.set()

    async def _bind(self, vm: VirtualMachine, host: Host, message: str) -> None:
        ledger, key = self.ledger, vm_key(vm)
        vms = ledger.kube.resources(VirtualMachine)
        scheduled = vm.condition_after(ConditionType.SCHEDULED, "True", "Scheduled", message)
        status = VirtualMachineStatus(host=host.name, host_id=host.host_id, phase="Scheduled", conditions=[scheduled])
        try:
            vm = await vms.apply_status(
                vm.name, status, namespace=key[0], field_manager=PLACEMENT_MANAGER,
                resource_version=vm.metadata.resource_version,
            )  # fmt: skip
        except Conflict:  # changed since it was decided on: decide again on what it is now
            ledger.wrote(await vms.get(vm.name, key[0]))
            self._wanted.add(key)
            return
        ledger.wrote(vm)
        ledger.release(key)  # counted by its status.host from now on
        await label(ledger, vm, host.name)
        log.info("vm=%s/%s placed host=%s (%s)", key[0], vm.name, host.name, message)
        metrics.VMS_PLACED.inc()
        self._spawn(self._note(vm, host.name, message))

    async def _note(self, vm: VirtualMachine, host: str, message: str) -> None:
        async with self._notes:
            await images.sync_named(self.ledger, images_of(vm))  # the chosen host joins the Images' fetchHosts
            await self.ledger.kube.events.record(
                vm, reason="Scheduled", note=f"Placed on host {host}: {message}", controller="operator",
                action="Schedule",
            )  # fmt: skip

    async def _refuse(self, vm: VirtualMachine, decision: Decision) -> None:
        ledger, key = self.ledger, vm_key(vm)
        changed = await _set_scheduled(ledger, vm, "False", decision.reason, decision.message)
        if vm.phase in (None, "Pending"):
            await ledger.kube.resources(VirtualMachine).patch_status(
                vm.name, VirtualMachineStatus(phase="Unschedulable"), namespace=key[0], field_manager=FIELD_MANAGER
            )
        if changed:
            log.info("vm=%s/%s unschedulable: %s", key[0], vm.name, decision.message)
            await ledger.kube.events.record(
                vm, reason="FailedScheduling", note=decision.message, controller="operator", action="Schedule",
                type="Warning",
            )  # fmt: skip


def _source(ledger: Ledger, vm: VirtualMachine, placed_now: dict[VMKey, str]) -> VirtualMachine | None:
    """A clone's source VM, as placed by this batch if it was."""
    if vm.spec.clone_from is None:
        return None
    key = (vm.metadata.namespace or "", vm.spec.clone_from.vm)
    source = ledger.vm(*key)
    if source is None or key not in placed_now:
        return source
    status = (source.status or VirtualMachineStatus()).model_copy(update={"host": placed_now[key]})
    return source.model_copy(update={"status": status})


async def label(ledger: Ledger, vm: VirtualMachine, host: str) -> None:
    """Give a placed VM the host label its agent selects on, unless it has it."""
    if (vm.metadata.labels or {}).get(HOST_LABEL) == host:
        return
    vms = ledger.kube.resources(VirtualMachine)
    labelled = await vms.patch(
        vm.name, metadata=MetadataPatch(labels={HOST_LABEL: host}), namespace=vm.metadata.namespace,
        field_manager=FIELD_MANAGER,
    )  # fmt: skip
    ledger.wrote(labelled)


async def _set_scheduled(
    ledger: Ledger, vm: VirtualMachine, status: ConditionStatus, reason: str, message: str
) -> bool:
    """Apply the Scheduled condition; return whether it changed."""
    current = vm.condition(ConditionType.SCHEDULED)
    wanted = vm.condition_after(ConditionType.SCHEDULED, status, reason, message)
    if wanted.says_same_as(current):
        return False
    await ledger.kube.resources(VirtualMachine).apply_status(
        vm.name, VirtualMachineStatus(conditions=[wanted]), namespace=vm.metadata.namespace, field_manager=FIELD_MANAGER
    )
    return True
