"""Loop devices for the storage tests: sparse files under the test's tmp dir, attached with losetup.

Every device is unmounted (wherever it is mounted), detached and its file
removed at teardown, even when the test failed.
"""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

SECTOR = 512
# mkfs.xfs wants at least 300 MB; the files are sparse, so this costs no disk.
DEFAULT_SIZE = 320 * 1024 * 1024


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def mbr_with_one_partition(path: Path, size: int) -> None:
    """Write an MBR partition table with one Linux partition from 1 MiB to the end (as fdisk would)."""
    start = 2048
    count = size // SECTOR - start
    entry = struct.pack("<B3sB3sII", 0x00, b"\x00\x00\x00", 0x83, b"\x00\x00\x00", start, count)
    with path.open("r+b") as f:
        f.seek(446)
        f.write(entry + b"\x00" * 48 + b"\x55\xaa")


class LoopDevices:
    """Makes loop devices and takes every one of them down again."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.devices: list[tuple[str, Path]] = []

    def make(self, size: int = DEFAULT_SIZE, *, partitioned: bool = False, backing: Path | None = None) -> str:
        """A new loop device (``/dev/loopN``) over a fresh sparse file, optionally with one partition."""
        path = backing or self.folder / f"disk{len(self.devices)}.img"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            f.truncate(size)
        if partitioned:
            mbr_with_one_partition(path, size)
        device = _run("losetup", "--find", "--show", *(["--partscan"] if partitioned else []), str(path))
        self.devices.append((device, path))
        return device

    def cleanup(self) -> None:
        """Unmount every mount of our devices (partitions too), detach them, remove their files."""
        for device, path in reversed(self.devices):
            names = {os.path.basename(device)}
            sys_dir = Path("/sys/class/block") / os.path.basename(device)
            if sys_dir.exists():
                names |= {c.name for c in sys_dir.iterdir() if (c / "partition").exists()}
            for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
                source = line.partition(" - ")[2].split()
                if len(source) > 1 and os.path.basename(source[1]) in names:
                    subprocess.run(["umount", "-l", line.split()[4]], check=False, capture_output=True)
            subprocess.run(["losetup", "-d", device], check=False, capture_output=True)
            path.unlink(missing_ok=True)
        self.devices.clear()


def blkid(device: str) -> dict[str, str]:
    """TYPE, LABEL, UUID of ``device`` as blkid probes it."""
    out = subprocess.run(
        ["blkid", "-p", "-c", "/dev/null", "-o", "export", device], capture_output=True, text=True, check=False
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def mount(device: str, target: Path, *options: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    _run("mount", *options, device, str(target))


def is_mounted(target: Path) -> bool:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return any(line.split()[4] == str(target) for line in lines)
