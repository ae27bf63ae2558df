"""Keeps this node's Host resource true: creates it, labels it with the id, writes the inventory.

The inventory is looked at every ``scan_interval`` seconds, and at once when
``refresh()`` is called (a block device appeared or went, a Mount was
mounted or unmounted), but written only when it changed: a structural change
(an interface, an address, a disk, a mount) at once, volatile numbers
(counters, load, uptime, usage) at most every ``inventory_interval`` seconds.
The status is written by server-side apply of the agent's own fields, so the
operator's fields (the Ready condition, vmCount, drain) are never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from typing import Any

from kubernetes.aio.client.exceptions import ApiException

from vapor.kube import Conflict, Informer, Kube, KubeError, NotFound, WatchEvent
from vapor.model import Host, HostSpec, HostStatus, MetadataPatch, ObjectMeta, names
from vapor.model.host import HostCapacity, HypervisorInfo

from .._config import AgentConfig
from ..host import hypervisor as _hypervisor
from ..host import inventory as _inventory
from ..host.libvirt import Libvirt

log = logging.getLogger("vapor.agent.host")

# Numbers that change all the time; written at most every inventory interval.
_VOLATILE_TOP = ("uptimeSeconds", "loadAverage", "syncCursor")
_VOLATILE = {
    "cpu": ("usagePercent", "frequencyMhz"),
    "memory": ("available", "used", "usagePercent", "swapUsed"),
}


def structural(status: dict[str, Any]) -> dict[str, Any]:
    """The status without its volatile numbers: what must be written as soon as it changes."""
    out = copy.deepcopy(status)
    for key in _VOLATILE_TOP:
        out.pop(key, None)
    for section, keys in _VOLATILE.items():
        for key in keys:
            out.get(section, {}).pop(key, None)
    for iface in out.get("interfaces", []):
        iface.pop("statistics", None)
    for disk in out.get("disks", []):
        for part in disk.get("partitions") or []:
            part.pop("used", None)
            part.pop("available", None)
    return out


class HostReporter:
    """Writes the node's Host: metadata once, status whenever the inventory changed."""

    def __init__(self, kube: Kube, config: AgentConfig, host_id: str, libvirt: Libvirt | None) -> None:
        self.kube = kube
        self.config = config
        self.host_id = host_id
        self.libvirt = libvirt
        self.hosts = kube.resources(Host)
        self.writes = 0
        self.host: Host | None = None  # the Host as last created or read
        self.informer: Informer[Host] | None = None
        self._lost = False  # the Host was deleted (or lost its id label): make it again at the next scan
        self._written: dict[str, Any] | None = None  # structural part of the last write
        self._written_at = 0.0
        self._last_full: dict[str, Any] | None = None
        self._hypervisor: HypervisorInfo | None = None
        self._hypervisor_at = 0.0
        self._look_now = asyncio.Event()

    def refresh(self) -> None:
        """Look at the inventory now rather than at the next scan (the disks or mounts changed)."""
        self._look_now.set()

    @property
    def name(self) -> str:
        """The Host's name: the node's name."""
        return self.config.node_name

    async def ensure_host(self) -> Host:
        """Create the Host when missing; otherwise only make sure it carries the id label."""
        try:
            host = await self.hosts.get(self.name)
        except NotFound:
            fresh = Host(
                metadata=ObjectMeta(name=self.name, labels={names.HOST_ID_LABEL: self.host_id}), spec=HostSpec()
            )
            try:
                self.host = await self.hosts.create(fresh, field_manager=names.FIELD_MANAGER_AGENT)
                log.info("created the host", extra={"host": self.name, "host_id": self.host_id})
                return self.host
            except Conflict:  # created meanwhile (a person, or our previous life): fall through
                host = await self.hosts.get(self.name)
        if (host.metadata.labels or {}).get(names.HOST_ID_LABEL) != self.host_id:
            host = await self.hosts.patch(
                self.name,
                metadata=MetadataPatch(labels={names.HOST_ID_LABEL: self.host_id}),
                field_manager=names.FIELD_MANAGER_AGENT,
            )
        self.host = host
        return host

    async def watch(self) -> None:
        """Follow this node's Host (by its id label) to notice at once when it is deleted."""
        self.informer = Informer(self.kube, Host, label_selector=f"{names.HOST_ID_LABEL}={self.host_id}")

        def changed(event: WatchEvent[Host]) -> None:
            if event.object.name != self.name:
                return
            if event.type == "DELETED":
                self._lost = True
            else:
                self.host = event.object

        self.informer.on_change(changed)
        await self.informer.start()

    async def stop(self) -> None:
        """Stop following the Host."""
        if self.informer is not None:
            await self.informer.stop()

    async def _hypervisor_info(self) -> HypervisorInfo | None:
        """The hypervisor as libvirt describes it, read again every inventory interval.

        While libvirtd is away (restarted, e.g. to serve TLS) the last reading stands: the CPU, the migration
        address and URI do not go with the daemon, and a Host without them takes no migrations and gets no
        migration certificate. The agent's readiness tells that the connection is lost.
        """
        if self.libvirt is None or self.libvirt.conn is None:
            return self._hypervisor
        now = time.monotonic()
        if self._hypervisor is None or now - self._hypervisor_at >= self.config.inventory_interval:
            try:
                self._hypervisor = await self.libvirt.call(
                    _hypervisor.describe,
                    self.libvirt.connection(),
                    self.config.migration_address,
                    self.config.migration_transport,
                )
                self._hypervisor_at = now
            except Exception as exc:
                log.warning("could not read libvirt capabilities", extra={"error": str(exc)})
        return self._hypervisor

    def _collect(self) -> HostStatus:
        memory = _inventory.memory()
        cpu = _inventory.cpu()
        return HostStatus(
            id=self.host_id,
            **_inventory.system(),
            cpu=cpu,
            memory=memory,
            interfaces=None,  # the network reconciler (_network.py) owns status.interfaces
            disks=_inventory.disks(),
            capacity=HostCapacity(cpu=cpu.threads, memory=max(0, (memory.total or 0) - self.config.reserved_memory)),
        )

    async def inventory(self) -> dict[str, Any]:
        """The status the agent would write now (without the sync cursor)."""
        status = await asyncio.to_thread(self._collect)
        status.hypervisor = await self._hypervisor_info()
        # Unknown values are left out rather than written as null (the schema wants strings).
        return status.model_dump(by_alias=True, exclude_none=True, mode="json")

    async def write(self, status: dict[str, Any]) -> None:
        """Server-side apply of the agent's status fields, with a fresh sync cursor."""
        typed = HostStatus.model_validate(status).model_copy(update={"sync_cursor": int(time.time())})
        await self.hosts.apply_status(self.name, typed, field_manager=names.FIELD_MANAGER_AGENT, force=True)
        self.writes += 1

    async def sync_once(self, *, force: bool = False) -> bool:
        """Look at the inventory and write it if it is due; whether it was written."""
        if self._lost:
            self._lost = False
            await self.ensure_host()
            force = True
        status = await self.inventory()
        shape = structural(status)
        now = time.monotonic()
        due = (
            force
            or shape != self._written
            or (status != self._last_full and now - self._written_at >= self.config.inventory_interval)
        )
        if not due:
            return False
        try:
            await self.write(status)
        except NotFound:  # the Host was deleted: make it again, then write
            await self.ensure_host()
            await self.write(status)
        log.debug("wrote host status", extra={"structural": shape != self._written})
        self._written, self._written_at, self._last_full = shape, now, status
        return True

    async def run(self) -> None:
        """Keep the status true until cancelled."""
        while True:
            try:
                await self.sync_once()
            except (TimeoutError, KubeError, ApiException, OSError) as exc:
                log.warning("host status write failed", extra={"error": str(exc)})
                self._written = None  # try again at the next scan
                self._lost = self._lost or isinstance(exc, NotFound)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._look_now.wait(), self.config.scan_interval)
            self._look_now.clear()
