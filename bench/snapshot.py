"""Snapshot create and restore of a VM with a full 1 GiB qcow2 disk, through REST against libvirt alone.

Baseline: a domain of the same shape (1 GiB qcow2 disk written through, 256
MiB of memory, no OS) snapshotted and reverted by direct libvirt calls, the
calls the agent makes (``snapshotCreateXML``; ``revertToSnapshot``, and for
a snapshot with memory a paused revert then ``managedSave``). Then the whole
system (control plane, operator, agent, gateway) does the same to a VM
through ``POST /vms/{id}/snapshots`` and ``.../restore``, each answered once
the agent reports it done. Both with and without memory: without, the VM is
stopped; with, it runs (a running domain's disks are kept only with its
memory). The guest runs no OS, so its memory is mostly untouched pages.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import libvirt

from tests.conftest import Kubectl
from tests.support.agent import qemu_reachable_dir
from tests.support.libvirtd import Libvirtd
from tests.support.stack import running_stack
from tests.support.wait import wait_until
from vapor.devenv import ControlPlane

ROUNDS = 5
DISK = "1G"
DOMAIN = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type><boot dev='hd'/></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>
<target dev='vda' bus='virtio'/></disk></devices></domain>"""
Times = dict[str, list[float]]


def _fill(path: Path) -> None:
    """Write the whole disk, so every cluster is allocated (a snapshot then covers 1 GiB of data)."""
    subprocess.run(["qemu-io", "-c", f"write -P 0x5a 0 {DISK}", str(path)], check=True, capture_output=True)


def _timed(times: list[float], step: Callable[[], object]) -> None:
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)


def _libvirt_rounds(conn: libvirt.virConnect, folder: Path) -> Times:
    disk = folder / "baseline.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), DISK], check=True)
    _fill(disk)
    dom = conn.defineXML(DOMAIN.format(name=f"bench-snap-{uuid.uuid4().hex[:6]}", disk=disk))
    times: Times = {k: [] for k in ("take", "restore", "take+memory", "restore+memory")}
    try:
        for i in range(ROUNDS):
            xml = f"<domainsnapshot><name>s{i}</name><memory snapshot='no'/></domainsnapshot>"
            _timed(times["take"], lambda x=xml: dom.snapshotCreateXML(x, 0))
            snap = dom.snapshotLookupByName(f"s{i}", 0)
            _timed(times["restore"], lambda s=snap: dom.revertToSnapshot(s, 0))
            snap.delete(0)
            dom.create()
            xml = f"<domainsnapshot><name>m{i}</name><memory snapshot='internal'/></domainsnapshot>"
            _timed(times["take+memory"], lambda x=xml: dom.snapshotCreateXML(x, 0))
            dom.destroy()
            snap = dom.snapshotLookupByName(f"m{i}", 0)

            def revert(s: libvirt.virDomainSnapshot = snap) -> None:
                dom.revertToSnapshot(s, libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED)
                dom.managedSave(0)

            _timed(times["restore+memory"], revert)
            dom.managedSaveRemove(0)
            snap.delete(0)
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
    return times


def _phase(api: httpx.Client, name: str) -> str:
    return str(api.get(f"/vms/{name}").json()["data"].get("phase"))


def _power(api: httpx.Client, name: str, action: str) -> None:
    body = {"action": action, "force": True} if action == "stop" else {"action": action}
    r = api.post(f"/vms/{name}/action", params={"wait": 60}, json=body)
    assert r.status_code == 200, r.text


def _vapor_rounds(api: httpx.Client, stack_state: Path) -> Times:
    r = api.post("/vms", json={"name": "bench-snap", "memory": "256Mi", "run_strategy": "Halted",
                               "disks": [{"name": "root", "size": "1Gi"}]})  # fmt: skip
    assert r.status_code == 201, r.text
    uid = r.json()["data"]["id"]
    wait_until(lambda: _phase(api, "bench-snap") == "Stopped", 60, what="bench-snap defined")
    _fill(stack_state / "agent" / "disks" / uid / "root.qcow2")
    base = "/vms/bench-snap/snapshots"
    times: Times = {k: [] for k in ("take", "restore", "take+memory", "restore+memory")}
    for i in range(ROUNDS):
        for memory in (False, True):
            suffix = "+memory" if memory else ""
            name = f"{'m' if memory else 's'}{i}"
            if memory:
                _power(api, "bench-snap", "start")
            start = time.perf_counter()
            r = api.post(base, params={"wait": 120}, json={"name": name, "include_memory": memory}, timeout=150)
            times["take" + suffix].append(time.perf_counter() - start)
            assert r.status_code == 201, r.text
            if memory:
                _power(api, "bench-snap", "stop")
            start = time.perf_counter()
            r = api.post(f"{base}/{name}/restore", params={"wait": 120}, timeout=150)
            times["restore" + suffix].append(time.perf_counter() - start)
            assert r.status_code == 200, r.text
            api.delete(f"{base}/{name}")
            wait_until(lambda n=name: n not in str(api.get(base).json()["data"]["items"]), 60, what=f"{name} merged")
    api.delete("/vms/bench-snap")
    wait_until(lambda: api.get("/vms/bench-snap").status_code == 404, 60, what="bench-snap deleted")
    return times


def main() -> None:
    """Print each step's median by libvirt alone and through Vapor's REST API, side by side."""
    folder = qemu_reachable_dir("vapor-bench-snapshot-")
    with Libvirtd() as daemon:
        conn = libvirt.open(daemon.uri)
        try:
            baseline = _libvirt_rounds(conn, folder)
        finally:
            conn.close()
        with (
            ControlPlane(folder / "cp") as cp,
            running_stack(cp, Kubectl(cp), daemon.uri) as stack,
            stack.client(stack.admin) as api,
        ):
            vapor = _vapor_rounds(api, stack.state)
    shutil.rmtree(folder, ignore_errors=True)
    print(f"  snapshots of a VM with a full {DISK}iB qcow2 disk and 256 MiB of memory, {ROUNDS} rounds (median):")
    print(f"  {'step':<34}{'libvirt alone':>14}{'Vapor REST':>14}{'overhead':>12}")
    labels = {
        "take": "take, stopped VM (disks)",
        "restore": "restore, disks",
        "take+memory": "take, running VM (disks + memory)",
        "restore+memory": "restore, disks + memory",
    }
    for key, label in labels.items():
        b, v = statistics.median(baseline[key]) * 1000, statistics.median(vapor[key]) * 1000
        print(f"  {label:<34}{b:11.1f} ms{v:11.1f} ms{v - b:9.1f} ms")
