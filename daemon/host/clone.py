"""A clone's disks (spec.cloneFrom) copied from its source VM's disk files with ``qemu-img convert``.

Each disk of the clone that the agent makes (a ``size`` disk, or an overlay
on an Image) and that the source VM has under the same name is copied from
the source's file on this host instead of being made blank or fresh:

- linked (the default), a source disk that is an overlay on an Image: a new
  overlay on the same cached Image that carries only the source's own
  changes (``convert -B <cached image>``); made in the time it takes to copy
  those changes, and the Image is in use by the clone as by any overlay;
- full, or a source disk the agent made blank: a standalone qcow2 copy;
- a source disk at a ``path`` (not the agent's) is not copied: a read-only
  one (or a CD-ROM) the clone may share, a writable one is refused
  (CloneUnsupported), since both VMs would write the same file.

With a snapshot the copy is read from the snapshot inside the source's qcow2
files (``-l snapshot.name=<its name in libvirt>``, see ``snapshots.libvirt_name``), so the
source may run meanwhile; without one it must be stopped. A copy is written
to ``<file>.part`` and renamed when complete: a disk file that exists is a
whole one, and a failed copy leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from vapor.model import VirtualMachine
from vapor.model.virtualmachine import DiskSpec

from .domain import created_disk_path
from .imagecache import CachedImage

log = logging.getLogger("vapor.agent.clone")

Progress = Callable[[str, float], Awaitable[None]]  # (disk name, percent done)
_PERCENT = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


class CloneRefused(Exception):
    """The clone's disks cannot be copied; ``reason`` (a CamelCase word) and ``message`` say why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class CloneNotYet(CloneRefused):
    """The clone's disks cannot be copied yet (what they are copied from is not there yet)."""


@dataclass(frozen=True)
class DiskCopy:
    """One disk of the clone to copy: from the source's file to the clone's, on an Image when linked."""

    name: str
    source: Path
    target: Path
    backing: CachedImage | None


def _made_by_agent(disk: DiskSpec) -> bool:
    """Whether the agent keeps this disk's file (a size-disk or an overlay on an Image), not a given file."""
    return not disk.cdrom and (disk.size is not None or disk.image is not None)


def plan(
    clone: VirtualMachine, source: VirtualMachine, disks_dir: Path, images: Mapping[str, CachedImage]
) -> list[DiskCopy]:
    """The disks of ``clone`` to copy from ``source`` whose files are not there yet (``images``: by disk name).

    CloneRefused for a writable disk at a path the clone would share with its source.
    """
    spec = clone.spec.clone_from
    if spec is None:
        return []
    theirs = {d.name: d for d in source.spec.disks or []}
    copies: list[DiskCopy] = []
    for disk in clone.spec.disks or []:
        original = theirs.get(disk.name)
        if original is None:
            continue  # a disk the source does not have: made as for any new VM
        if not _made_by_agent(disk):
            if disk.path is not None and disk.path == original.path and not (disk.read_only or disk.cdrom):
                raise CloneRefused(
                    "CloneUnsupported",
                    f"disk {disk.name} is the file {disk.path}, which the source VM {source.name} writes too; "
                    "Vapor copies only the disks it made: copy the file and give the clone its own path",
                )
            continue
        if not _made_by_agent(original):
            raise CloneRefused(
                "CloneUnsupported",
                f"disk {disk.name} of the source VM {source.name} is the file {original.path}, which Vapor does "
                "not copy: copy it yourself and give the clone a path disk",
            )
        target = created_disk_path(disks_dir, clone.metadata.uid or "", disk)
        if target.exists():
            continue
        cached = images.get(disk.name)
        linked = spec.mode == "linked" and disk.image is not None and disk.image == original.image
        copies.append(
            DiskCopy(
                disk.name,
                created_disk_path(disks_dir, source.metadata.uid or "", original),
                target,
                cached if linked else None,
            )
        )
    return copies


def partial_path(target: Path) -> Path:
    """Where a copy is written until it is complete."""
    return target.with_name(target.name + ".part")


async def copy_disk(copy: DiskCopy, snapshot: str | None, progress: Progress | None = None) -> None:
    """Copy one disk (from ``snapshot`` inside the source's file when given); CloneRefused when qemu-img fails."""
    if not copy.source.exists():  # a source made a moment ago: its agent makes its disks before anything else
        message = f"disk {copy.name}: the source's file {copy.source} is not here (yet)"
        raise CloneNotYet("CloneSourceDiskMissing", message)
    part = partial_path(copy.target)
    part.parent.mkdir(parents=True, exist_ok=True)
    part.parent.chmod(0o711)  # QEMU runs as its own user: it must be able to reach the image
    args = ["qemu-img", "convert", "-p", "-f", "qcow2", "-O", "qcow2"]
    if snapshot is not None:  # a snapshot is never written: it may be read while the source runs
        args += ["-U", "-l", f"snapshot.name={snapshot}"]
    if copy.backing is not None:
        args += ["-B", str(copy.backing.path), "-F", copy.backing.format]
    proc = await asyncio.create_subprocess_exec(
        *args, str(copy.source), str(part), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        errors = asyncio.create_task(proc.stderr.read()) if proc.stderr else None
        await _follow(proc, copy.name, progress)
        await proc.wait()
        error = (await errors).decode(errors="replace").strip() if errors else ""
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        part.unlink(missing_ok=True)
        raise
    if proc.returncode != 0:
        part.unlink(missing_ok=True)
        what = f"disk {copy.name}" + (f" as snapshot {snapshot} kept it" if snapshot else "")
        raise CloneRefused("CloneFailed", f"qemu-img could not copy {what}: {error or proc.returncode}")
    part.rename(copy.target)
    how = "linked to its Image" if copy.backing is not None else "whole"
    log.info("copied disk", extra={"disk": copy.name, "from": str(copy.source), "to": str(copy.target), "as": how})


async def _follow(proc: asyncio.subprocess.Process, name: str, progress: Progress | None) -> None:
    """Read the percentages of qemu-img's progress lines ("(42.00/100%)") and hand each on."""
    if proc.stdout is None:
        return
    while chunk := await proc.stdout.read(256):
        found = _PERCENT.findall(chunk)
        if found and progress is not None:
            await progress(name, float(found[-1]))


async def copy_disks(copies: list[DiskCopy], snapshot: str | None, progress: Progress | None = None) -> None:
    """Copy every disk; when one fails, the ones this call made are removed too (a clone is whole or not there)."""
    done: list[Path] = []
    try:
        for copy in copies:
            await copy_disk(copy, snapshot, progress)
            done.append(copy.target)
    except BaseException:
        for path in done:
            path.unlink(missing_ok=True)
        raise
