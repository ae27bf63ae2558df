"""POST /vms of a Debian VM (image cached on its host) until SSH answers, against the same guest by libvirt alone.

Both run on one Testbed host (a libvirtd in its own network namespace, with a
NAT network): the baseline is :func:`bench.guest_boot.boot_to_ssh` (overlay,
seed ISO and domain made by direct libvirt calls, as the agent makes them);
then the whole of Vapor (control plane, operator, agent, gateway) runs on the
same host, fetches the image once, and each round POSTs a VM with the same
disk and cloud-init and times it until SSH answers at the address the API
reports. The difference is what Vapor adds to a boot.
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

import httpx

from tests.conftest import Kubectl
from tests.support.guest import ImageServer, guest_image, wait_for_ssh
from tests.support.stack import Stack, running_stack
from tests.support.wait import wait_until
from vapor.devenv import ControlPlane

from .guest_boot import bench_host

ROUNDS = 3


def _vm_body(name: str, image: str, network: str, key: str, run: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": "default",
        "cpu": 1,
        "memory": "512Mi",
        "disks": [{"name": "root", "image": image}],
        "networks": [{"name": "nic0", "type": "network", "source": network}],
        "cloud_init": {"hostname": name, "ssh_authorized_keys": [key]},
        "run_strategy": "Running",
        "host_selector": {"e2e-run": run},
    }


def _address(api: httpx.Client, name: str) -> str | None:
    vm = api.get(f"/vms/{name}").json().get("data") or {}
    return (vm.get("addresses") or [None])[0]


def _vapor_rounds(stack: Stack, image: Any, network: str, key: Any, netns: str) -> list[float]:
    times = []
    with ImageServer(image.path, "debian-12.qcow2") as served, stack.client(stack.admin) as api:
        r = api.post(
            "/images",
            json={"name": "bench-debian", "source": {"http": {"url": served.url}}, "checksum": image.sha256},
        )
        assert r.status_code == 201, r.text
        for i in range(ROUNDS + 1):  # round 0 fetches the image into the host's cache; it is not counted
            name = f"bench-{i}-{uuid.uuid4().hex[:4]}"
            start = time.monotonic()
            r = api.post("/vms", json=_vm_body(name, "bench-debian", network, key.public.strip(), stack.run))
            assert r.status_code in (200, 201), r.text
            address = wait_until(lambda n=name: _address(api, n), 300, every=0.1, what=f"{name}'s address")
            wait_for_ssh(address, key, netns=netns, timeout=300)
            if i:
                times.append(time.monotonic() - start)
            api.post(f"/vms/{name}/action", params={"wait": 60}, json={"action": "stop", "force": True})
            api.delete(f"/vms/{name}")
            wait_until(lambda n=name: api.get(f"/vms/{n}").status_code == 404, 60, what=f"{name} deleted")
        api.delete("/images/bench-debian")
    return times


def main() -> None:
    """Print boot-to-SSH by libvirt alone and through Vapor's REST API, side by side."""
    image = guest_image()
    with bench_host(image, "vapor-bench-guestvm-") as bench:
        baseline = bench.baseline(ROUNDS)
        with ControlPlane(bench.folder / "cp") as cp, running_stack(cp, Kubectl(cp), bench.host.uri) as stack:
            vapor = _vapor_rounds(stack, image, bench.network.name, bench.key, bench.host.netns)
    b, v = statistics.median(baseline), statistics.median(vapor)
    print(f"  boot to SSH answering, Debian guest, {ROUNDS} rounds (median):")
    print(f"  direct libvirt calls (overlay + seed + define + create)  {b:6.2f} s   (max {max(baseline):.2f} s)")
    print(f"  POST /vms (image cached) -> address -> SSH              {v:6.2f} s   (max {max(vapor):.2f} s)")
    print(f"  Vapor's overhead over libvirt                           {v - b:6.2f} s   (target <= 1 s)")
