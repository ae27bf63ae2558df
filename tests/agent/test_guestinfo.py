"""The guest network poller at 200 VMs' scale: one domain listing per pass, quiet guests looked at less often.

Runs against libvirt's test driver kept in the machine's libvirtd
(``test+unix:///default``, as bench agent_fleet): its running domains answer
``interfaceAddresses`` with a made-up address, which is all the poller needs;
the test's domains have names of their own and are destroyed at the end. Every libvirt call goes through the agent's
:class:`Libvirt` and is counted by name here.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest

from vapor.agent.controllers import guestinfo
from vapor.agent.host.libvirt import Libvirt
from vapor.model import ObjectMeta, VirtualMachine, VirtualMachineSpec, VirtualMachineStatus
from vapor.model._meta import Condition

from ..support.libvirtd import Libvirtd

T = TypeVar("T")
VMS = 20


class CountingLibvirt(Libvirt):
    """The agent's libvirt connection, counting its calls by name."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.calls: Counter[str] = Counter()

    async def call(self, func: Callable[..., T], *args: Any) -> T:
        self.calls[getattr(func, "__name__", "call")] += 1
        return await super().call(func, *args)


def _domain_xml(name: str, i: int) -> str:
    return (
        f"<domain type='test'><name>{name}</name><memory>16384</memory><vcpu>1</vcpu><os><type>hvm</type></os>"
        f"<devices><interface type='network'><source network='default'/>"
        f"<mac address='52:54:00:00:10:{i:02x}'/></interface></devices></domain>"
    )


@pytest.fixture
async def conn(libvirtd: Libvirtd) -> AsyncIterator[CountingLibvirt]:
    lv = CountingLibvirt("test+unix:///default")
    await lv.open()
    yield lv
    await lv.close()


def _vm(namespace: str, name: str, seen: guestinfo.GuestNetwork | None = None) -> VirtualMachine:
    status = VirtualMachineStatus(phase="Running")
    if seen is not None:  # what the reconcile writes after the poller queued the VM
        kind, state, reason, message = seen.condition()
        status = VirtualMachineStatus(
            phase="Running",
            addresses=seen.addresses,
            interfaces=seen.interfaces,
            conditions=[Condition(type=kind, status=state, reason=reason, message=message)],
        )
    meta = ObjectMeta(name=name, namespace=namespace)
    return VirtualMachine(metadata=meta, spec=VirtualMachineSpec(cpu=1, memory="16Mi"), status=status)


async def test_settled_guests_cost_one_listing_a_pass_and_fewer_looks(conn: CountingLibvirt) -> None:
    namespace = f"gi{uuid.uuid4().hex[:6]}"
    raw = conn.connection()
    doms = [raw.createXML(_domain_xml(f"{namespace}_vm-{i}", i), 0) for i in range(VMS)]
    try:
        vms = {f"vm-{i}": _vm(namespace, f"vm-{i}") for i in range(VMS)}
        queued: list[str] = []
        poller = guestinfo.AddressPoller(conn, lambda: list(vms.values()), lambda vm: queued.append(vm.name))

        await poller.pass_once(now=0.0)
        # One listing for the pass, then the guest agent's answer per VM: no lookup or state call per VM.
        assert conn.calls["listAllDomains"] == 1
        assert conn.calls["lookupByName"] == 0 and conn.calls["state"] == 0
        assert conn.calls["interfaceAddresses"] == VMS
        assert sorted(queued) == sorted(vms)  # the status said nothing yet: every VM is queued

        # The reconcile writes what was seen; from then on the guests are quiet.
        for dom in doms:
            name = dom.name().split("_", 1)[1]
            vms[name] = _vm(namespace, name, await guestinfo.read(conn, dom))
        queued.clear()
        conn.calls.clear()
        t = 0.0
        while t < 600.0:  # ten minutes of passes, one every POLL_INTERVAL
            t += guestinfo.POLL_INTERVAL
            await poller.pass_once(now=t)
        assert queued == []
        looks = conn.calls["interfaceAddresses"] / VMS
        every_pass = 600.0 / guestinfo.POLL_INTERVAL  # 85: what polling each VM every pass costs
        # Often during the first minute (addresses may still come), then at most once a minute or so.
        assert looks <= guestinfo.BOOT_WINDOW / guestinfo.POLL_INTERVAL + 600.0 / guestinfo.QUIET_INTERVAL + 3
        assert looks < every_pass / 4
        assert conn.calls["lookupByName"] == 0 and conn.calls["state"] == 0

        # A domain event (its guest agent connected) brings a quiet VM back to the next pass.
        conn.calls.clear()
        poller.wake(f"{namespace}_vm-3", now=t)
        await poller.pass_once(now=t + guestinfo.POLL_INTERVAL)
        assert conn.calls["interfaceAddresses"] >= 1

        # A guest whose address changed is queued at its next look.
        vms["vm-5"] = _vm(namespace, "vm-5")
        poller.wake(f"{namespace}_vm-5", now=t)
        await poller.pass_once(now=t + 2 * guestinfo.POLL_INTERVAL)
        assert "vm-5" in queued
    finally:
        for dom in doms:
            dom.destroy()
