"""The agent keeps its Host true: a stable id, a true inventory, prompt structural updates, a Lease."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psutil
import yaml
from kubernetes.aio.client.exceptions import ApiException
from kubernetes.aio.client.models import V1Lease
from pyroute2 import IPRoute

from vapor.devenv import ControlPlane
from vapor.devenv.processes import free_port
from vapor.kube import Kube
from vapor.model import Host, HostSpec, ObjectMeta, names, quantity_bytes
from vapor.model.host import DiskStatus

from ..support.agent import AgentProcess
from ..support.processes import ComponentProcess
from ..support.wait import eventually
from .conftest import host_of

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def block_devices() -> set[str]:
    """Block devices as /sys/block lists them, without RAM disks and empty (unattached) loops."""
    names = {d for d in os.listdir("/sys/block") if not d.startswith(("ram", "zram"))}
    return {d for d in names if int(Path(f"/sys/block/{d}/size").read_text()) > 0}


def add_veth(name: str, peer: str, address: str, prefixlen: int) -> None:
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="veth", peer=peer)
        ipr.addr("add", index=ipr.link_lookup(ifname=name)[0], address=address, prefixlen=prefixlen)


def del_link(name: str) -> None:
    with IPRoute() as ipr:
        ipr.link("del", ifname=name)


async def reported(kube: Kube, node: str, agent: AgentProcess) -> Host:
    async def probe() -> Host | None:
        host = await host_of(kube, node)
        return host if host and host.status and host.status.sync_cursor else None

    try:
        return await eventually(probe, 60, "the host's first inventory")  # type: ignore[no-any-return]
    except AssertionError:
        print(agent.log())
        raise


async def test_host_appears_with_a_true_inventory(kube: Kube, agent: AgentProcess, node_name: str) -> None:
    host = await reported(kube, node_name, agent)
    status = host.status
    assert status is not None
    assert status.id and UUID_RE.match(status.id)
    assert (host.metadata.labels or {})[names.HOST_ID_LABEL] == status.id
    assert status.hostname == socket.gethostname()
    assert status.kernel == platform.release()
    assert status.os and status.os in Path("/etc/os-release").read_text()
    assert status.boot_time is not None
    assert abs(status.boot_time.timestamp() - psutil.boot_time()) < 2
    assert status.load_average is not None and len(status.load_average) == 3
    assert status.cpu is not None and status.cpu.threads == psutil.cpu_count()
    assert status.memory is not None and status.memory.total == psutil.virtual_memory().total
    assert status.capacity is not None and status.capacity.cpu == os.cpu_count()
    assert quantity_bytes(status.capacity.memory or 0) == psutil.virtual_memory().total - 512 * 2**20

    # Interfaces and disks: the same as the kernel reports. Other tests on this machine may add or remove
    # some meanwhile, so compare with a fresh look until the agent's next scan has caught up.
    async def same_devices() -> Host | None:
        now = await host_of(kube, node_name)
        if not now or not now.status:
            return None
        nics_now = {i.name for i in now.status.interfaces or []} == set(psutil.net_if_addrs())
        return now if nics_now and {d.name for d in now.status.disks or []} == block_devices() else None

    host = await eventually(same_devices, 30, "the inventory to list the kernel's interfaces and disks")
    status = host.status
    nics = psutil.net_if_addrs()
    lo = next(i for i in status.interfaces or [] if i.name == "lo")
    assert lo.type == "loopback" and "127.0.0.1/8" in (lo.addresses or [])
    for iface in status.interfaces or []:
        if iface.name not in nics or iface.type not in ("ethernet", "loopback"):
            continue  # gone since the last scan, or a virtual link other tests may be changing right now
        ipv4 = {a.address for a in nics[iface.name] if a.family == socket.AF_INET}
        assert {a.split("/")[0] for a in iface.addresses or [] if ":" not in a} == ipv4
        macs = {a.address for a in nics[iface.name] if a.family == psutil.AF_LINK}
        assert iface.mac in macs or not macs
        assert iface.statistics is not None
    # Disks: what the kernel lists, with the root filesystem's mount and usage.
    root = psutil.disk_usage("/")
    parts = [p for d in status.disks or [] for p in d.partitions or [] if p.mount_point == "/"]
    if parts:  # the root filesystem sits on a block device here
        assert parts[0].filesystem and parts[0].used and parts[0].available
        assert abs((parts[0].used + parts[0].available) - (root.used + root.free)) < 2**30
    hv = status.hypervisor
    assert hv is not None and hv.driver == "QEMU" and hv.arch == platform.machine()
    assert hv.domain_types and "qemu" in hv.domain_types
    # The libvirtd fixture gave /dev/kvm to group kvm (mode 0660), so QEMU can use KVM wherever libvirt offers it.
    assert hv.kvm == ("kvm" in hv.domain_types)
    assert status.sync_cursor and status.sync_cursor >= int(psutil.boot_time())
    # Fields with another writer are left alone.
    assert status.vm_count is None and status.drain is None
    # The agent's own condition is about the network it applies; Ready is the operator's.
    assert {c.type for c in status.conditions or []} <= {"NetworkConfigured"}


async def test_the_id_is_stable_across_restarts_and_a_lost_host(
    kube: Kube, agent: AgentProcess, node_name: str
) -> None:
    first = await reported(kube, node_name, agent)
    assert first.status and first.status.id
    assert (agent.state_dir / "host-id").read_text().strip() == first.status.id
    assert agent.stop() == 0  # SIGTERM ends it cleanly
    await kube.resources(Host).delete(node_name)
    agent.start()
    again = await reported(kube, node_name, agent)
    assert again.metadata.uid != first.metadata.uid  # a new object ...
    assert again.status and again.status.id == first.status.id  # ... for the same machine
    assert (again.metadata.labels or {})[names.HOST_ID_LABEL] == first.status.id


async def test_a_persons_spec_and_labels_are_kept(
    kube: Kube, agent_factory: Callable[..., AgentProcess], node_name: str
) -> None:
    mine = Host(
        metadata=ObjectMeta(name=node_name, labels={"rack": "r7"}),
        spec=HostSpec(maintenance=True),
    )
    await kube.resources(Host).create(mine, field_manager="person")
    agent = agent_factory(node_name).start()
    host = await reported(kube, node_name, agent)
    assert host.spec.maintenance is True
    assert (host.metadata.labels or {})["rack"] == "r7"
    assert names.HOST_ID_LABEL in (host.metadata.labels or {})


async def test_a_new_interface_is_reported_promptly_and_an_idle_host_is_not_rewritten(
    kube: Kube, agent: AgentProcess, node_name: str
) -> None:
    await reported(kube, node_name, agent)
    # Idle: volatile numbers change all the time, but the inventory interval (60 s) has not passed.
    await asyncio.sleep(3)  # three scans of the agent
    # Other tests on this machine may add links or disks meanwhile, and such a change is written at once;
    # what must not happen is a write of volatile numbers alone (the agent logs which kind each write was).
    writes = [json.loads(line) for line in agent.log().splitlines() if '"wrote host status"' in line]
    assert writes and all(w["structural"] for w in writes)
    # A structural change (a veth pair appears) is written at the next scan.
    left, right = f"vt{uuid.uuid4().hex[:8]}", f"vu{uuid.uuid4().hex[:8]}"
    # pyroute2's synchronous IPRoute runs its own event loop: keep it off the test's loop.
    await asyncio.to_thread(add_veth, left, right, "198.51.100.7", 30)
    try:

        async def shows_veth() -> bool:
            host = await host_of(kube, node_name)
            ifaces = {i.name: i for i in (host.status.interfaces or [])} if host and host.status else {}
            return left in ifaces and ifaces[left].type == "veth" and ifaces[left].addresses == ["198.51.100.7/30"]

        await eventually(shows_veth, 30, "the new veth in the inventory")
    finally:
        await asyncio.to_thread(del_link, left)

    async def veth_gone() -> bool:
        host = await host_of(kube, node_name)
        return bool(host and host.status and left not in {i.name for i in host.status.interfaces or []})

    await eventually(veth_gone, 30, "the veth to leave the inventory")


async def test_the_lease_is_held_and_renewed(
    kube: Kube, agent_factory: Callable[..., AgentProcess], node_name: str, namespace: str
) -> None:
    agent_factory(node_name, lease_renew_interval=0.5).start()

    async def lease() -> object | None:
        try:
            return await kube.coordination.read_namespaced_lease(node_name, namespace)
        except Exception:
            return None

    first = await eventually(lease, 60, "the Lease")
    assert first.spec.holder_identity == node_name
    assert first.spec.lease_duration_seconds == 40
    renewed: datetime = first.spec.renew_time

    async def newer() -> bool:
        current = await lease()
        return bool(current and current.spec.renew_time > renewed)  # type: ignore[attr-defined]

    await eventually(newer, 30, "a renewal")
    current = await lease()
    refs = current.metadata.owner_references or []  # type: ignore[attr-defined]
    assert [r.kind for r in refs] == ["Host"] and refs[0].name == node_name


async def held_lease(kube: Kube, node_name: str, namespace: str) -> V1Lease:
    """The node's Lease once the agent holds it."""

    async def lease() -> V1Lease | None:
        try:
            found: V1Lease = await kube.coordination.read_namespaced_lease(node_name, namespace)
        except ApiException:
            return None
        return found if found.spec and found.spec.holder_identity == node_name and found.spec.renew_time else None

    return await eventually(lease, 60, "the agent's Lease")  # type: ignore[no-any-return]


async def test_sigterm_renews_the_lease_before_the_agent_exits(
    kube: Kube, agent_factory: Callable[..., AgentProcess], node_name: str, namespace: str
) -> None:
    # No renewal of its own for a minute: a renewal after the signal is the one the stop makes.
    agent = agent_factory(node_name, lease_renew_interval=60).start()
    before = (await held_lease(kube, node_name, namespace)).spec.renew_time
    await asyncio.sleep(0.5)  # the renewal at the stop is then apart from the first one, whatever the clocks
    signalled = datetime.now(UTC)
    started = time.monotonic()
    code = await asyncio.to_thread(agent.stop)
    took = time.monotonic() - started
    after = await kube.coordination.read_namespaced_lease(node_name, namespace)
    print(
        f"lease renewed {(after.spec.renew_time - signalled).total_seconds():+.3f}s after SIGTERM "
        f"(last renewal before it {(signalled - before).total_seconds():.3f}s earlier); exit in {took:.2f}s"
    )
    assert code == 0, agent.log()[-4000:]
    assert after.spec.renew_time > signalled > before, agent.log()[-4000:]
    # Still held: a stop is not the host going away.
    assert after.spec.holder_identity == node_name and after.spec.lease_duration_seconds == 40


async def test_an_unanswering_api_server_does_not_hold_the_exit_back(
    kube: Kube,
    agent_factory: Callable[..., AgentProcess],
    control_plane: ControlPlane,
    node_name: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    # The agent reaches the API server through a forwarder; a stopped forwarder answers nothing, as a
    # hung API server (connections are accepted by the kernel, and then no byte comes back).
    port = free_port()
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{port}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    upstream = control_plane.url.removeprefix("https://")
    forwarder = ComponentProcess("vapor.devenv.forward", [f"127.0.0.1:{port}", upstream], tmp_path / "forward.log")
    with forwarder:
        agent = agent_factory(node_name, kubeconfig=kubeconfig, lease_renew_interval=60).start()
        before = (await held_lease(kube, node_name, namespace)).spec.renew_time
        assert forwarder.proc is not None
        os.kill(forwarder.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            code = await asyncio.to_thread(agent.stop)
            took = time.monotonic() - started
        finally:
            os.kill(forwarder.proc.pid, signal.SIGCONT)
    print(f"exit in {took:.2f}s with the API server not answering")
    assert code == 0, agent.log()[-4000:]
    assert took < 8, agent.log()[-4000:]  # the renewal's 2 s and the rest of the stop; 20 s would be SIGKILL
    assert "could not renew the lease at exit" in agent.log()
    after = await kube.coordination.read_namespaced_lease(node_name, namespace)
    assert after.spec.renew_time == before and after.spec.holder_identity == node_name


async def test_volatile_numbers_are_refreshed_every_inventory_interval(
    kube: Kube, agent_factory: Callable[..., AgentProcess], node_name: str
) -> None:
    agent = agent_factory(node_name, inventory_interval=2).start()
    first = await reported(kube, node_name, agent)
    assert first.status and first.status.sync_cursor and first.status.uptime_seconds is not None

    async def refreshed() -> Host | None:
        host = await host_of(kube, node_name)
        ok = host and host.status and (host.status.sync_cursor or 0) > (first.status.sync_cursor or 0)  # type: ignore[union-attr]
        return host if ok else None

    later: Host = await eventually(refreshed, 30, "a refresh of the volatile numbers")
    assert later.status and (later.status.uptime_seconds or 0) > (first.status.uptime_seconds or 0)


def write_mbr(image: Path, start: int, sectors: int) -> None:
    """One Linux partition (type 0x83) in an MBR partition table (no fdisk on this machine)."""
    entry = bytes([0x00, 0, 0, 0, 0x83, 0, 0, 0]) + start.to_bytes(4, "little") + sectors.to_bytes(4, "little")
    with image.open("r+b") as f:
        f.seek(446)
        f.write(entry)
        f.seek(510)
        f.write(b"\x55\xaa")


def drop_partitions(device: str) -> None:
    """Remove the partitions the kernel knows of ``device`` (retrying: just after umount they may be busy)."""
    sysfs = Path("/sys/block") / device.removeprefix("/dev/")
    for _ in range(50):
        if not any(p.name.startswith(sysfs.name + "p") for p in sysfs.iterdir()):
            return
        subprocess.run(["partx", "--delete", device], capture_output=True, check=False)
        time.sleep(0.1)
    raise AssertionError(f"could not remove the partitions of {device}")


def run(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed: {done.stderr}"
    return done.stdout.strip()


async def test_a_new_disk_with_a_partition_and_filesystem_is_reported(
    kube: Kube, agent: AgentProcess, node_name: str, tmp_path: Path
) -> None:
    await reported(kube, node_name, agent)
    image, mount_point = tmp_path / "disk.img", tmp_path / "mnt"
    mount_point.mkdir()
    image.write_bytes(b"")
    os.truncate(image, 64 * 2**20)
    write_mbr(image, 2048, 64 * 2048 - 2048)
    label = f"vt{uuid.uuid4().hex[:8]}"
    device = run("losetup", "--find", "--show", str(image))  # a loop device plays the disk
    try:
        drop_partitions(device)  # a free loop device may still carry partitions an earlier user left behind
        run("partx", "--add", device)  # this kernel reads no partition tables itself; partx tells it
        run("mkfs.ext4", "-q", "-L", label, f"{device}p1")
        run("mount", f"{device}p1", str(mount_point))
        try:
            name = device.removeprefix("/dev/")

            async def shows_disk() -> DiskStatus | None:
                host = await host_of(kube, node_name)
                disks = {d.name: d for d in (host.status.disks or [])} if host and host.status else {}
                disk = disks.get(name)
                return disk if disk and disk.partitions and disk.partitions[0].mount_point else None

            disk: DiskStatus = await eventually(shows_disk, 30, "the loop disk in the inventory")
            assert disk.size == 64 * 2**20 and disk.type == "virtual"
            part = (disk.partitions or [])[0]
            assert part.name == f"{name}p1" and part.size == (64 * 2048 - 2048) * 512
            assert part.filesystem == "ext4" and part.label == label
            assert part.uuid == run("blkid", "-c", "/dev/null", "-s", "UUID", "-o", "value", f"{device}p1")
            assert part.mount_point == str(mount_point)
            usage = psutil.disk_usage(str(mount_point))
            assert part.used is not None and part.available is not None
            assert abs(part.available - usage.free) < 2**20
        finally:
            run("umount", str(mount_point))
    finally:
        drop_partitions(device)  # partitions added by partx outlive the loop device's detach here
        run("losetup", "-d", device)

    async def disk_gone() -> bool:
        host = await host_of(kube, node_name)
        return bool(host and host.status and name not in {d.name for d in host.status.disks or []})

    await eventually(disk_gone, 30, "the loop disk to leave the inventory")


async def test_a_host_deleted_under_a_running_agent_comes_back_and_owns_the_lease(
    kube: Kube, agent_factory: Callable[..., AgentProcess], node_name: str, namespace: str
) -> None:
    agent = agent_factory(node_name, lease_renew_interval=0.5).start()
    first = await reported(kube, node_name, agent)
    await kube.resources(Host).delete(node_name)

    async def back() -> Host | None:
        host = await host_of(kube, node_name)
        fresh = host and host.metadata.uid != first.metadata.uid and host.status and host.status.id
        return host if fresh else None

    again: Host = await eventually(back, 30, "the Host to be made again")
    assert again.status and first.status and again.status.id == first.status.id

    async def owned_by_new_host() -> bool:
        lease = await kube.coordination.read_namespaced_lease(node_name, namespace)
        return [r.uid for r in lease.metadata.owner_references or []] == [again.metadata.uid]

    await eventually(owned_by_new_host, 30, "the Lease to name the new Host as owner")
