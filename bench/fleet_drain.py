"""A drain on a fleet: one host of ``VAPOR_DRAIN_HOSTS`` (10) with ``VAPOR_DRAIN_VMS_PER_HOST`` (50) VMs each.

The hosts, their VMs' phases and the agents' part of each Migration are
played by the load generator (bench/_fleet.py, bench/_fleet_migrations.py:
the target prepares in 0.5 s, libvirt's job takes 2 s); the control plane,
the operator and the gateway are real, at the default migration limits (5
at once in the cluster, 2 leaving one host). The VMs are created through
REST, then the fullest host is put in maintenance; printed: the time from
spec.maintenance true to status.drain Drained, how many VMs moved, and what
the limits alone would allow (VMs / 2 outbound at once x one migration's played time).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter

from tests.support.pam import LinuxUser
from vapor.devenv import ControlPlane
from vapor.devenv.processes import Component
from vapor.kube import Kube
from vapor.model import Host, HostSpec

from ._fleet import PlayedFleet
from ._fleet_migrations import PlayedMigrations
from .fleet import create_all, fleet_stack, login, make_namespaces, wait_running


async def _run(cp: ControlPlane, url: str, admin: LinuxUser, _operator: Component, _gateway: Component) -> None:
    hosts, per_host = int(os.environ.get("VAPOR_DRAIN_HOSTS", 10)), int(os.environ.get("VAPOR_DRAIN_VMS_PER_HOST", 50))
    count = hosts * per_host
    kube = await Kube.connect(str(cp.kubeconfig))
    await make_namespaces(kube)
    fleet = PlayedFleet(kube, hosts, start_delay=0.2)
    moves = PlayedMigrations(kube, lambda host: host in fleet.names)
    await fleet.start()
    await moves.start()
    try:
        token = await login(url, admin)
        await asyncio.sleep(5)  # the operator sees the Leases and marks the Hosts Ready
        played = f"prepare {moves.prepare} s, move {moves.transfer} s"
        print(f"  {hosts} played hosts, {count} VMs; played migration: {played}")
        await create_all(url, token, fleet, count, 100)
        await wait_running(fleet, count, timeout=300)
        on_host = Counter(vm.status.host for vm in fleet.vms() if vm.status and vm.status.host)
        host, n = on_host.most_common(1)[0]
        start = time.monotonic()
        await kube.resources(Host).patch(host, spec=HostSpec.partial(maintenance=True), field_manager="bench")
        phase = None
        while time.monotonic() - start < 600:
            got = await kube.resources(Host).get(host)
            drain = got.status.drain if got.status else None
            phase = drain.phase if drain else None
            if phase in ("Drained", "Failed"):
                break
            await asyncio.sleep(0.2)
        took = time.monotonic() - start
        left = sum(1 for vm in fleet.vms() if vm.status and vm.status.host == host)
        ideal = n / 2 * (moves.prepare + moves.transfer)
        print(f"  drain of {host} with {n} VMs: {phase} in {took:.1f} s ({n / took:.1f} VMs/s), {left} VMs left on it")
        each = moves.prepare + moves.transfer
        print(f"  the limits alone (2 leaving a host at once, {each:.1f} s each): {ideal:.1f} s")
    finally:
        await moves.stop()
        await fleet.stop()
        await kube.close()


def main() -> None:
    """Start the stack, fill the played hosts, drain one, print how long it took."""
    with fleet_stack() as stack:
        asyncio.run(_run(*stack))
