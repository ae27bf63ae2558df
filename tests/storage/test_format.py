"""Formatting real loop devices, and every guard that refuses one (on loop devices playing the part).

Nothing here is ever aimed at a disk or file of the machine: each refusal is
shown on a loop device of the test that is mounted, holds a mounted
partition, backs a VM disk, or is the root disk in the facts the guard reads.
"""

from __future__ import annotations

import os
from pathlib import Path

import libvirt
import pytest

from vapor.agent.host import format as _format
from vapor.agent.host.format import Facts, MountEntry, Refused

from .loops import LoopDevices, blkid, mount


def facts() -> Facts:
    return _format.gather_facts()


def devno(device: str) -> str:
    rdev = os.stat(device).st_rdev
    return f"{os.major(rdev)}:{os.minor(rdev)}"


def refused(
    device: str, filesystem: str = "ext4", label: str | None = None, with_facts: Facts | None = None
) -> Refused:
    with pytest.raises(Refused) as caught:
        _format.format_device(device, filesystem, label, with_facts or facts())
    return caught.value


@pytest.mark.parametrize(("filesystem", "label"), [("ext4", "DATA-ext4"), ("xfs", "DATA_xfs")])
def test_formats_a_loop_device_that_blkid_then_reads(loops: LoopDevices, filesystem: str, label: str) -> None:
    device = loops.make()
    assert _format.format_device(device, filesystem, label, facts()) is True
    probe = blkid(device)
    assert probe["TYPE"] == filesystem
    assert probe["LABEL"] == label
    assert probe["UUID"]


def test_format_if_blank_leaves_a_filesystem_alone(loops: LoopDevices) -> None:
    device = loops.make()
    assert _format.format_device(device, "ext4", "FIRST", facts(), only_if_blank=True) is True
    uuid = blkid(device)["UUID"]
    assert _format.format_device(device, "xfs", "SECOND", facts(), only_if_blank=True) is False
    assert blkid(device) | {} == blkid(device) and blkid(device)["UUID"] == uuid
    assert blkid(device)["TYPE"] == "ext4"


def test_refuses_a_mounted_device(loops: LoopDevices, tmp_path: Path) -> None:
    device = loops.make()
    _format.format_device(device, "ext4", None, facts())
    uuid = blkid(device)["UUID"]
    mount(device, tmp_path / "mnt")
    error = refused(device)
    assert error.code == "CONFLICT"
    assert "is mounted at" in error.message and str(tmp_path / "mnt") in error.message
    assert blkid(device)["UUID"] == uuid  # untouched


def test_refuses_a_disk_whose_partition_is_mounted(loops: LoopDevices, tmp_path: Path) -> None:
    disk = loops.make(partitioned=True)
    partition = f"{disk}p1"
    if not Path(partition).exists():
        pytest.skip("this kernel does not scan partitions of loop devices (no MBR support), so no partition to mount")
    _format.format_device(partition, "ext4", "PART", facts())
    mount(partition, tmp_path / "mnt")
    error = refused(disk)
    assert error.code == "CONFLICT"
    assert f"holds {os.path.basename(partition)}, which is mounted" in error.message
    assert blkid(partition)["LABEL"] == "PART"


@pytest.mark.parametrize("mount_point", ["/", "/boot", "/boot/efi"])
def test_refuses_the_root_or_boot_disk(loops: LoopDevices, mount_point: str) -> None:
    """The loop device plays the system disk: it is at / (or /boot) in the host's mount table the guard reads."""
    disk = loops.make()
    played = facts()
    played.system_mounts.append(MountEntry(devno(disk), mount_point, "ext4", disk))
    error = refused(disk, with_facts=played)
    assert error.code == "PERMISSION_DENIED"
    assert "root or boot disk" in error.message
    assert "TYPE" not in blkid(disk)


def test_refuses_a_disk_mounted_at_root_in_a_private_mount_namespace(loops: LoopDevices, tmp_path: Path) -> None:
    """Read the mount table of a process whose namespace has the loop device at /boot: that disk is refused."""
    import subprocess

    device = loops.make()
    _format.format_device(device, "ext4", None, facts())
    target = tmp_path / "boot"
    target.mkdir()
    # A private namespace where the device is mounted on /boot (over the host's, seen only there).
    script = f"mount --make-rprivate / && mount {device} /boot && cat /proc/self/mountinfo"
    table = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, check=True).stdout
    played = facts()
    played.system_mounts = _format.parse_mountinfo(table)
    error = refused(device, with_facts=played)
    assert error.code in ("PERMISSION_DENIED", "CONFLICT")
    assert "mounted at /boot" in error.message or "root or boot disk" in error.message


def test_refuses_a_loop_device_of_a_vm_image(loops: LoopDevices, tmp_path: Path) -> None:
    disks_dir = tmp_path / "disks"
    device = loops.make(backing=disks_dir / "vm-root.img")
    error = refused(device, with_facts=_format.gather_facts(disks_dir=disks_dir))
    assert error.code == "CONFLICT" and "VM image" in error.message


def test_refuses_a_device_that_a_libvirt_domain_uses(loops: LoopDevices) -> None:
    device = loops.make()
    conn = libvirt.open("test:///default")
    try:
        name = f"vtest-{os.getpid()}-{os.path.basename(device)}"
        dom = conn.defineXML(
            f"<domain type='test'><name>{name}</name><memory>65536</memory><os><type>hvm</type></os>"
            f"<devices><disk type='block' device='disk'><source dev='{device}'/><target dev='vda'/></disk>"
            "</devices></domain>"
        )
        try:
            sources = _format.libvirt_disk_sources(conn)
            assert device in sources
            error = refused(device, with_facts=_format.gather_facts(vm_disks=sources))
            assert error.code == "CONFLICT" and "virtual machine" in error.message
        finally:
            dom.undefine()
    finally:
        conn.close()


def test_bad_paths(tmp_path: Path) -> None:
    shm = Path("/dev/shm") / f"vtest-{os.getpid()}-file"
    link = Path("/dev/shm") / f"vtest-{os.getpid()}-link"
    shm.write_text("not a disk")
    outside = tmp_path / "outside"
    outside.write_text("x")
    link.symlink_to(outside)
    try:
        cases = {
            "sdb": "INVALID_INPUT",  # not a path
            str(outside): "INVALID_INPUT",  # not under /dev
            "/dev/../tmp/x": "INVALID_INPUT",  # .. trick
            str(link): "INVALID_INPUT",  # a symlink out of /dev
            str(shm): "INVALID_INPUT",  # not a block device
            f"/dev/vtest-missing-{os.getpid()}": "NOT_FOUND",
        }
        for device, code in cases.items():
            assert refused(device).code == code, device
        assert outside.read_text() == "x" and shm.read_text() == "not a disk"
    finally:
        shm.unlink()
        link.unlink()


@pytest.mark.parametrize(
    ("filesystem", "label", "needle"),
    [
        ("ntfs", None, "not supported"),
        ("ext4; rm -rf /", None, "not supported"),
        ("xfs", "THIRTEENCHARS", "at most 12"),
        ("ext4", "SEVENTEEN-CHARS-X", "at most 16"),
        ("ext4", "bad label", "letters, digits"),
        ("ext4", "-F", None),
        ("ext4", "", "letters, digits"),
    ],
)
def test_bad_filesystem_or_label(loops: LoopDevices, filesystem: str, label: str | None, needle: str | None) -> None:
    device = loops.make()
    if needle is None:  # a label that looks like an option is only a label: mkfs gets it after -L
        assert _format.format_device(device, filesystem, label, facts())
        assert blkid(device)["LABEL"] == label
        return
    error = refused(device, filesystem, label)
    assert error.code == "INVALID_INPUT" and needle in error.message
    assert "TYPE" not in blkid(device)
