"""LOAD GENERATOR: many hosts played by one process, as kwok plays kubelets (issue 18).

This is not an agent and stands in for none in any functional test; it makes
the load that N agents put on the control plane, the operator and the
gateway, so that their limits can be measured without N machines:

- each played host has a Host with an inventory (capacity) and the agent's
  own heartbeat (vapor.agent's Heartbeat: a Lease renewed every ``renew``
  seconds), and writes nothing else while nothing changes;
- a VM the operator places on a played host goes through the phases the
  agent reports: Starting, then Running ``start_delay`` seconds later (the
  time libvirt takes to define and start a small domain), or Stopped when its
  run strategy is Halted, each one status write with the agent's field
  manager;
- when each VM was created, placed and Running is kept for the figures.

One process watches every VM (one watch, not one per host as real agents
have): the API server's cost of N watches is not part of what it makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field

from vapor.agent.controllers.heartbeat import Heartbeat
from vapor.kube import Informer, Kube
from vapor.model import Condition, Host, HostSpec, HostStatus, ObjectMeta, VirtualMachine, VirtualMachineStatus, names
from vapor.model.host import HostCapacity


@dataclass
class VMTimes:
    """When one VM was asked for, placed, and seen Running (time.monotonic seconds)."""

    created: float | None = None
    placed: float | None = None
    running: float | None = None


@dataclass
class PlayedFleet:
    """``hosts`` played hosts of ``cpu`` CPUs and ``memory`` each, labelled ``fleet=<run>``."""

    kube: Kube
    hosts: int
    cpu: int = 64
    memory: str = "256Gi"
    start_delay: float = 1.0
    renew: float = 10.0
    run: str = field(default_factory=lambda: f"f{uuid.uuid4().hex[:6]}")
    times: dict[str, VMTimes] = field(default_factory=dict)
    status_writes: int = 0
    names: set[str] = field(default_factory=set)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _moving: set[str] = field(default_factory=set)
    _informer: Informer[VirtualMachine] | None = None

    async def start(self) -> None:
        """Make the Hosts with their inventory, start their heartbeats and the VM watch."""
        resources = self.kube.resources(Host)
        for i in range(self.hosts):
            name = f"{self.run}-h{i:03d}"
            meta = ObjectMeta(name=name, labels={"fleet": self.run})
            await resources.create(Host(metadata=meta, spec=HostSpec()), field_manager=names.FIELD_MANAGER_AGENT)
            status = HostStatus(
                id=str(uuid.uuid4()), hostname=name, capacity=HostCapacity(cpu=self.cpu, memory=self.memory)
            )
            await resources.patch_status(name, status, field_manager=names.FIELD_MANAGER_AGENT)
            self.names.add(name)
            beat = Heartbeat(self.kube, name, names.LEASE_NAMESPACE, renew_seconds=self.renew)
            # Spread the renewals over the interval, as hosts started at different times are.
            self._tasks.append(asyncio.create_task(self._beat(beat, self.renew * i / max(self.hosts, 1))))
        self._informer = Informer(self.kube, VirtualMachine)
        self._informer.on_change(self._changed)
        await self._informer.start(timeout=120)

    async def _beat(self, beat: Heartbeat, offset: float) -> None:
        await asyncio.sleep(offset)
        await beat.run()

    def created(self, key: str) -> None:
        """Note that the VM ``namespace/name`` was asked for now."""
        self.times.setdefault(key, VMTimes()).created = time.monotonic()

    async def _changed(self, event: object) -> None:
        vm: VirtualMachine | None = getattr(event, "object", None)
        if vm is None or vm.status is None or vm.status.host not in self.names:
            return
        key = f"{vm.metadata.namespace}/{vm.name}"
        times = self.times.setdefault(key, VMTimes())
        now = time.monotonic()
        if times.placed is None:
            times.placed = now
        if vm.status.phase == "Running" and times.running is None:
            times.running = now
        wanted = "Running" if vm.spec.run_strategy == "Running" else "Stopped"
        if vm.status.phase in (wanted, "Starting") or key in self._moving:
            return
        self._moving.add(key)
        self._tasks.append(asyncio.create_task(self._move(vm, wanted)))

    async def _move(self, vm: VirtualMachine, wanted: str) -> None:
        """The agent's writes for one VM: Starting, then after start_delay Running (or at once Stopped)."""
        key = f"{vm.metadata.namespace}/{vm.name}"
        try:
            if wanted == "Running":
                await self._report(vm, "Starting")
                await asyncio.sleep(self.start_delay)
            await self._report(vm, wanted)
        finally:
            self._moving.discard(key)

    async def _report(self, vm: VirtualMachine, phase: str) -> None:
        ready = Condition.after(
            vm.condition(names.ConditionType.READY),
            type=names.ConditionType.READY,
            status="True" if phase in ("Running", "Stopped") else "False",
            reason=f"Domain{phase}",
            message=f"played by the load generator: {phase}",
        )
        status = VirtualMachineStatus(phase=phase, observed_generation=vm.metadata.generation, conditions=[ready])
        with contextlib.suppress(Exception):  # a VM deleted meanwhile
            await self.kube.resources(VirtualMachine).patch_status(
                vm.name, status, namespace=vm.metadata.namespace, field_manager=names.FIELD_MANAGER_AGENT
            )
            self.status_writes += 1

    async def stop(self) -> None:
        """Stop the heartbeats and the watch; the Hosts stay (delete them with ``delete_hosts``)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._informer:
            await self._informer.stop()

    def vms(self) -> list[VirtualMachine]:
        """Every VM as the watch last saw it."""
        return self._informer.items() if self._informer else []
