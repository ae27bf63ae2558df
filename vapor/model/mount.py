"""Mount: a filesystem a host should have mounted (cluster-scoped).

The resource is the truth: the host's agent mounts what it asks for, mounts it
again after a restart or reboot, and unmounts it when the Mount is deleted.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from ._meta import Condition, Model, conditions_field
from ._resource import AGE, CRDInfo, PrinterColumn, Resource

Filesystem = Literal["ext4", "ext3", "ext2", "xfs", "btrfs", "vfat", "exfat"]
MountPhase = Literal["Pending", "Formatting", "Mounted", "Unmounting", "Failed"]
DEVICE_PATTERN = r"^/dev/[A-Za-z0-9][A-Za-z0-9._:+-]*(/[A-Za-z0-9][A-Za-z0-9._:+-]*)*$"
MOUNT_POINT_PATTERN = r"^/[A-Za-z0-9._@+-]+(/[A-Za-z0-9._@+-]+)*$"
OPTIONS_PATTERN = r"^[A-Za-z0-9_=.:/@+-]+(,[A-Za-z0-9_=.:/@+-]+)*$"
# Reason of the Ready condition when the host has no such device (the gateway answers NOT_FOUND).
DEVICE_NOT_FOUND = "DeviceNotFound"
# Places no Mount may cover: the system's own trees, root's home, cron's spool, Vapor's state.
FORBIDDEN_MOUNT_POINTS = (
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/boot",
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/root",
    "/var/spool/cron",
    "/var/lib/kubelet",
    "/var/lib/vapor",
)
# Folders that may not be covered themselves, though a folder inside them may (/home/alice/data).
FORBIDDEN_EXACT_MOUNT_POINTS = ("/home",)


def forbidden_mount_point(path: str) -> bool:
    """Whether a Mount may not cover ``path`` (a clean absolute path): /, a system tree, or /home itself."""
    return (
        path == "/"
        or path in FORBIDDEN_EXACT_MOUNT_POINTS
        or any(path == p or path.startswith(p + "/") for p in FORBIDDEN_MOUNT_POINTS)
    )


def _listed(paths: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{p}'" for p in paths) + "]"


class FormatSpec(Model):
    """Format the device first, but only when it carries no filesystem yet."""

    label: str | None = Field(default=None, description="Filesystem label.", pattern=r"^[A-Za-z0-9_.-]{1,16}$")


class MountSpec(Model):
    """What to mount, where, on which host."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": _listed(FORBIDDEN_MOUNT_POINTS)
                    + ".all(p, self.mountPoint != p && !self.mountPoint.startsWith(p + '/'))"
                    + " && !(self.mountPoint in "
                    + _listed(FORBIDDEN_EXACT_MOUNT_POINTS)
                    + ")",
                    "message": "mountPoint must not be a system directory ("
                    + ", ".join(FORBIDDEN_MOUNT_POINTS)
                    + " and what is under them) nor "
                    + ", ".join(FORBIDDEN_EXACT_MOUNT_POINTS)
                    + " itself",
                    "fieldPath": ".mountPoint",
                },
                {
                    "rule": "!self.mountPoint.contains('/../') && !self.mountPoint.endsWith('/..') && !self.mountPoint.contains('/./')",
                    "message": "mountPoint must be a plain absolute path without . or .. parts",
                    "fieldPath": ".mountPoint",
                },
                {
                    "rule": "!self.device.contains('/../') && !self.device.endsWith('/..')",
                    "message": "device must not contain .. parts",
                    "fieldPath": ".device",
                },
                {
                    "rule": "self.host == oldSelf.host && self.device == oldSelf.device && self.mountPoint == oldSelf.mountPoint",
                    "message": "host, device and mountPoint cannot be changed; create a new Mount instead",
                },
            ]
        }
    )

    host: str = Field(description="Name of the Host that mounts it.", min_length=1, max_length=253)
    device: str = Field(
        description="Block device under /dev, for example /dev/sdb1 or /dev/disk/by-label/DATA.",
        pattern=DEVICE_PATTERN,
        max_length=1024,
    )
    mount_point: str = Field(
        description="Absolute directory to mount on, for example /mnt/data; created when missing.",
        pattern=MOUNT_POINT_PATTERN,
        max_length=1024,
    )
    filesystem: Filesystem = Field(description="Filesystem type: ext4, ext3, ext2, xfs, btrfs, vfat or exfat.")
    options: str = Field(
        default="defaults",
        description=(
            "Mount options, comma-separated as in fstab (for example rw,noatime); nosuid and nodev are added "
            "unless they say suid or dev; x-vapor.nonempty allows a directory that is not empty."
        ),
        pattern=OPTIONS_PATTERN,
        max_length=1024,
    )
    format: FormatSpec | None = Field(
        default=None,
        description="Format the device with the filesystem above if it has none yet; a device that already has a filesystem is never reformatted.",
    )


class MountStatus(Model):
    """The mount as the host's agent sees it."""

    phase: MountPhase | None = Field(default=None, description="Pending, Formatting, Mounted, Unmounting or Failed.")
    mounted: bool = Field(default=False, description="Whether the device is mounted at the mount point now.")
    message: str | None = Field(default=None, description="What happened last, in a sentence (the error when Failed).")
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the agent last acted on."
    )
    conditions: list[Condition] | None = conditions_field("mount")


class Mount(Resource[MountSpec, MountStatus]):
    """A filesystem that a host should keep mounted.

    The host's agent mounts it, mounts it again after restarts, records it as
    an Event on the Host, and unmounts it when the Mount is deleted.
    """

    kind: Literal["Mount"] = "Mount"
    spec: MountSpec = Field(description="What to mount, where, on which host.")
    status: MountStatus | None = Field(default=None, description="The mount as the host's agent sees it.")

    crd = CRDInfo(
        plural="mounts",
        scope="Cluster",
        short_names=("vmount",),
        printer_columns=(
            PrinterColumn("Host", ".spec.host"),
            PrinterColumn("Device", ".spec.device"),
            PrinterColumn("Mount Point", ".spec.mountPoint"),
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("FS", ".spec.filesystem", priority=1),
            AGE,
        ),
    )
