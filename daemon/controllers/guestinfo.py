"""What a running guest tells about its network: its interfaces and addresses, and whether its guest agent answers.

The QEMU guest agent (over the domain's org.qemu.guest_agent.0 channel)
knows the guest's own interface names, MACs and addresses; when it does not
answer (not installed, not started yet, or the guest is paused), the DHCP
leases of the libvirt networks the VM is on give the addresses those handed
out. Loopback and link-local addresses are left out.

libvirt's agent lifecycle event says at once when a guest agent connects or
goes away; addresses change without any event, so :class:`AddressPoller`
looks at the running VMs (a few at a time, each call bounded) and queues a VM
for a reconcile only when what it sees differs from the VM's status, so an
unchanged guest costs no write. One ``listAllDomains`` per pass finds the
running domains (not a lookup and a state call per VM). A VM is looked at
every ``POLL_INTERVAL`` seconds for ``BOOT_WINDOW`` seconds after one of its
domain's events (started, resumed, guest agent connected: when addresses
come) or after a look that found a change; past that, each look that finds
nothing new doubles its interval, up to ``QUIET_INTERVAL`` (unless neither
its guest agent nor a DHCP lease answered yet: it may still be waiting for an
address, and stays at ``POLL_INTERVAL``). With 200 settled VMs that is a few
calls a second instead of about a hundred.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import libvirt  # type: ignore[import-untyped]

from vapor.model import VirtualMachine, names
from vapor.model.virtualmachine import LIVE_MIGRATABLE_PHASES, GuestInterface

from ..host.domain import domain_name
from ..host.libvirt import Libvirt
from .vmstatus import Other

log = logging.getLogger("vapor.agent.guestinfo")

POLL_INTERVAL = 7.0  # seconds between two looks at a running VM's addresses, while they may be coming
BOOT_WINDOW = 60.0  # seconds after a domain event (or a change seen) during which a VM is looked at that often
QUIET_INTERVAL = 60.0  # the longest wait between two looks at a VM whose guest network does not change
RUNNING_DOMAINS = libvirt.VIR_CONNECT_LIST_DOMAINS_RUNNING | libvirt.VIR_CONNECT_LIST_DOMAINS_PAUSED
POLL_CONCURRENCY = 4  # VMs looked at together
CONNECTED = "Connected"
NOT_CONNECTED = "NotConnected"


@dataclass(frozen=True)
class GuestNetwork:
    """A running guest's interfaces, whether they came from its agent, and its addresses without prefix."""

    agent: bool
    interfaces: list[GuestInterface] = field(default_factory=list)

    @property
    def addresses(self) -> list[str]:
        """Every address of every interface, without prefix length, sorted and once each."""
        return sorted({a.split("/")[0] for i in self.interfaces for a in i.addresses})

    def condition(self) -> Other:
        """The AgentConnected condition this tells."""
        kind = names.ConditionType.AGENT_CONNECTED
        if self.agent:
            return kind, "True", CONNECTED, "The QEMU guest agent answers."
        return (
            kind,
            "False",
            NOT_CONNECTED,
            "The QEMU guest agent does not answer (not installed or not started yet, or the guest is paused).",
        )

    def differs_from(self, vm: VirtualMachine) -> bool:
        """Whether the VM's status says something else (its addresses, interfaces or AgentConnected)."""
        status = vm.status
        stored = vm.condition(names.ConditionType.AGENT_CONNECTED)
        return (
            status is None
            or (status.addresses or []) != self.addresses
            or (status.interfaces or []) != self.interfaces
            or stored is None
            or stored.status != self.condition()[1]
        )


def _kept(address: str, prefix: int | None) -> str | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.is_loopback or ip.is_link_local:
        return None
    return f"{ip}/{prefix}" if prefix is not None else str(ip)


def interfaces_of(found: dict[str, dict[str, Any]] | None, source: str) -> list[GuestInterface]:
    """The answer of libvirt's interfaceAddresses as GuestInterfaces (``lo``, and those without addresses, left out)."""
    result: list[GuestInterface] = []
    for name, iface in sorted((found or {}).items()):
        if source == "agent" and name == "lo":
            continue
        addrs = iface.get("addrs") or []
        kept = [_kept(str(a.get("addr", "")), a.get("prefix")) for a in addrs]
        addresses = sorted({a for a in kept if a is not None})
        if not addresses:
            continue
        mac = iface.get("hwaddr")
        result.append(
            GuestInterface(
                name=name if source == "agent" else None,
                mac=str(mac).lower() if mac else None,
                addresses=addresses,
                source="agent" if source == "agent" else "lease",
            )
        )
    return result


async def read(conn: Libvirt, dom: libvirt.virDomain) -> GuestNetwork:
    """Ask the guest agent; when it does not answer, the DHCP leases of the VM's libvirt networks."""
    try:
        found = await conn.call(dom.interfaceAddresses, libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, 0)
        return GuestNetwork(agent=True, interfaces=interfaces_of(found, "agent"))
    except libvirt.libvirtError:
        pass  # no agent, or it does not answer: the leases then
    try:
        found = await conn.call(dom.interfaceAddresses, libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, 0)
    except libvirt.libvirtError:
        found = None
    return GuestNetwork(agent=False, interfaces=interfaces_of(found, "lease"))


@dataclass
class _Looks:
    """When a VM's guest network was last seen to move, and when to look at it next."""

    moved: float  # a domain event, or a look that found a change
    due: float = 0.0
    interval: float = POLL_INTERVAL


class AddressPoller:
    """Queues the running VMs whose guest network differs from their status, looking less often at quiet ones."""

    def __init__(
        self,
        conn: Libvirt,
        vms: Callable[[], Iterable[VirtualMachine]],
        changed: Callable[[VirtualMachine], None],
    ) -> None:
        self.conn = conn
        self.vms = vms
        self.changed = changed
        self._limit = asyncio.Semaphore(POLL_CONCURRENCY)
        self._looks: dict[str, _Looks] = {}  # by domain name
        conn.on_lifecycle(lambda name, _uuid, _event, _detail: self.wake(name))
        conn.on_agent_lifecycle(lambda name, _connected: self.wake(name))

    def wake(self, domain: str, now: float | None = None) -> None:
        """Something happened to ``domain``: look at it at the next pass, and often for a while."""
        self._looks[domain] = _Looks(moved=time.monotonic() if now is None else now)

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            if not self.conn.alive():
                continue
            await self.pass_once()

    async def pass_once(self, now: float | None = None) -> None:
        """Look at every running VM that is due (at ``now``, a time.monotonic() reading)."""
        now = time.monotonic() if now is None else now
        running = {
            domain_name(vm.metadata.namespace or "", vm.name): vm
            for vm in self.vms()
            if vm.phase in LIVE_MIGRATABLE_PHASES  # the domain is active
        }
        for gone in self._looks.keys() - running.keys():
            del self._looks[gone]
        due = [name for name in running if self._looks.setdefault(name, _Looks(moved=now)).due <= now]
        if not due:
            return
        try:
            listed = await self.conn.call(self.conn.connection().listAllDomains, RUNNING_DOMAINS)
            domains = {d.name(): d for d in listed}
        except libvirt.libvirtError as exc:
            log.debug("could not list the running domains", extra={"error": str(exc)})
            return
        await asyncio.gather(*(self._look(running[name], domains.get(name), now) for name in due))

    async def _look(self, vm: VirtualMachine, dom: libvirt.virDomain | None, now: float) -> None:
        if dom is None:  # not running (any more): its status says so once its event is handled
            return
        async with self._limit:
            try:
                seen = await read(self.conn, dom)
            except libvirt.libvirtError as exc:
                log.debug("could not look at the guest", extra={"vm": vm.name, "error": str(exc)})
                return
        looks = self._looks.get(dom.name())
        if looks is None:  # the VM stopped meanwhile
            return
        if seen.differs_from(vm):
            self.changed(vm)
            looks.moved = now
        # A guest with neither its agent nor an address may be waiting for its DHCP lease: it stays looked at often.
        quiet = now - looks.moved >= BOOT_WINDOW and (seen.agent or bool(seen.interfaces))
        looks.interval = min(QUIET_INTERVAL, looks.interval * 2) if quiet else POLL_INTERVAL
        looks.due = now + looks.interval - 1.0  # a second early: the pass that comes then takes it
