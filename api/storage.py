"""/api/v1/storage: a host's disks (from its Host status) and its mounts (as Mount resources).

Host-scoped (``?host=``, see _hostscope). ``GET /disks`` answers the
contract's shape from what the host's agent reports in ``status.disks``.
``POST /mount`` writes a Mount resource (labelled with the host, annotated
with who asked) and answers once the agent reports it Mounted, or with the
agent's message when it fails; ``DELETE /mount`` deletes the Mount, and the
agent unmounts before it goes. ``kubectl apply`` / ``kubectl delete`` of a
Mount do the same.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, current_app
from quart_schema import document_response, tag, validate_querystring, validate_request, validate_response

from vapor.agentapi.errors import ALREADY_EXISTS, CONFLICT, INVALID_INPUT, NOT_FOUND
from vapor.kube import Conflict, NotFound
from vapor.model import ObjectMeta, names
from vapor.model.mount import (
    DEVICE_NOT_FOUND,
    DEVICE_PATTERN,
    MOUNT_POINT_PATTERN,
    OPTIONS_PATTERN,
    Filesystem,
    Mount,
    MountSpec,
    forbidden_mount_point,
)

from ._agentdocs import documents_agent_errors
from ._agents import ask_agent
from ._errors import APIError
from ._guard import current_user, require
from ._hostscope import HOST_PARAMETER_HELP, scoped_host
from ._schema import Failure, Success
from ._state import gateway
from ._writes import as_user, field_manager, record_event

blueprint = Blueprint("storage", __name__, url_prefix="/api/v1/storage")
POLL_SECONDS = 0.3


class HostOnlyQuery(BaseModel):
    """Which host."""

    model_config = ConfigDict(extra="forbid")
    host: str | None = Field(default=None, description=HOST_PARAMETER_HELP)


class PartitionView(BaseModel):
    """A partition, or a filesystem straight on the disk."""

    name: str = Field(examples=["sda1"])
    path: str = Field(examples=["/dev/sda1"])
    size: int = Field(ge=0, description="Bytes.")
    filesystem: str | None = Field(description="From blkid (udev-independent).", examples=["ext4"])
    label: str | None = Field(default=None)
    uuid: str | None = Field(default=None)
    mount_point: str | None = Field(examples=["/boot"])
    used: int | None = Field(description="Bytes used, when mounted.")
    available: int | None = Field(description="Bytes available, when mounted.")


class DiskView(BaseModel):
    """A block device of the host."""

    name: str = Field(examples=["sda"])
    path: str = Field(examples=["/dev/sda"])
    size: int = Field(ge=0, description="Bytes.")
    model: str | None = Field(examples=["Samsung SSD 860"])
    type: str = Field(description="ssd, hdd, virtual or unknown.", examples=["ssd"])
    partitions: list[PartitionView]


class DiskList(BaseModel):
    """The host's disks."""

    disks: list[DiskView]


class MountQuery(HostOnlyQuery):
    """Which host, and how long to wait for its agent."""

    wait: float | None = Field(
        default=None, ge=0, le=300, description="Seconds to wait for the agent (default: the action timeout)."
    )


def _deadline(wait: float | None) -> float:
    return time.monotonic() + (float(current_app.config["ACTION_TIMEOUT"]) if wait is None else wait)


class MountRequest(BaseModel):
    """What to mount, and where."""

    model_config = ConfigDict(extra="forbid")
    device: str = Field(pattern=DEVICE_PATTERN, max_length=1024, examples=["/dev/sdb1"])
    mount_point: str = Field(pattern=MOUNT_POINT_PATTERN, max_length=1024, examples=["/mnt/data"])
    filesystem: Filesystem = Field(examples=["ext4"])
    options: str = Field(
        default="defaults",
        pattern=OPTIONS_PATTERN,
        max_length=1024,
        description=(
            "Comma-separated mount options; nosuid and nodev are added unless they say suid or dev; "
            "x-vapor.nonempty allows a directory that is not empty."
        ),
        examples=["rw,noatime"],
    )


class UnmountRequest(BaseModel):
    """Which mount to remove: its mount point."""

    model_config = ConfigDict(extra="forbid")
    mount_point: str = Field(pattern=MOUNT_POINT_PATTERN, max_length=1024, examples=["/mnt/data"])


class MountView(BaseModel):
    """A Mount as the agent last reported it."""

    name: str = Field(description="Name of the Mount resource.")
    host: str
    device: str
    mount_point: str
    filesystem: str
    options: str
    phase: str | None
    mounted: bool
    message: str | None


def _view(mount: Mount) -> MountView:
    status = mount.status
    return MountView(
        name=mount.name,
        host=mount.spec.host,
        device=mount.spec.device,
        mount_point=mount.spec.mount_point,
        filesystem=mount.spec.filesystem,
        options=mount.spec.options,
        phase=status.phase if status else None,
        mounted=bool(status and status.mounted),
        message=status.message if status else None,
    )


def mount_name(host: str, mount_point: str) -> str:
    """The Mount's name: the host and a digest of the mount point (one Mount per host and directory)."""
    slug = re.sub(r"[^a-z0-9]+", "-", mount_point.lower()).strip("-")[:40] or "root"
    digest = hashlib.sha256(mount_point.encode()).hexdigest()[:8]
    return f"{host[:200]}-{slug}-{digest}".replace("--", "-")


def _check_mount_point(mount_point: str) -> None:
    parts = mount_point.split("/")
    if any(p in (".", "..") for p in parts):
        raise APIError(400, INVALID_INPUT, "mount_point must not contain . or .. parts")
    if forbidden_mount_point(mount_point):
        raise APIError(400, INVALID_INPUT, f"{mount_point} is a system directory; mount somewhere else")


def _check_device(device: str) -> None:
    if any(p in (".", "..") for p in device.split("/")):
        raise APIError(400, INVALID_INPUT, "device must not contain . or .. parts")


@blueprint.get("/disks")
@require("viewer")
@tag(["storage"])
@validate_querystring(HostOnlyQuery)
@validate_response(Success[DiskList])
@document_response(Failure, 400)
@document_response(Failure, 404)
async def disks(query_args: HostOnlyQuery) -> Success[DiskList]:
    """Disks of the host with their partitions: size, filesystem, label, UUID, mount point, usage."""
    host = scoped_host(query_args.host)
    reported = (host.status.disks if host.status else None) or []
    views = [
        DiskView(
            name=d.name,
            path=d.path,
            size=d.size,
            model=d.model,
            type=d.type,
            partitions=[PartitionView.model_validate(p.model_dump()) for p in d.partitions or []],
        )
        for d in reported
    ]
    return Success[DiskList](data=DiskList(disks=views))


async def _wait(name: str, until: float) -> Mount | None:
    resources = gateway().kube.resources(Mount)
    while True:
        try:
            mount = await resources.get(name)
        except NotFound:
            return None
        status = mount.status
        if (
            status is not None
            and status.observed_generation == mount.metadata.generation
            and status.phase in ("Mounted", "Failed")
        ):
            return mount
        if time.monotonic() >= until:
            return mount
        await asyncio.sleep(POLL_SECONDS)


async def _remove(name: str, until: float) -> None:
    """Delete the Mount (as the user) and wait (until ``until``) for the agent to let it go."""
    resources = as_user().resources(Mount)
    try:
        await resources.delete(name)
        while time.monotonic() < until:
            await resources.get(name)
            await asyncio.sleep(POLL_SECONDS)
    except NotFound:
        pass


@blueprint.post("/mount")
@require("admin")
@tag(["storage"])
@validate_querystring(MountQuery)
@validate_request(MountRequest)
@validate_response(Success[MountView], 200)
@validate_response(Success[MountView], 202)
@document_response(Failure, 400)
@document_response(Failure, 404)
@document_response(Failure, 409)
async def mount(data: MountRequest, query_args: MountQuery) -> tuple[Success[MountView], int]:
    """Mount a filesystem on the host (admin): writes a Mount resource that the host's agent carries out.

    The host's agent decides whether the device exists (a disk attached a
    moment ago is mounted even before /storage/disks lists it). Answers 200
    when the agent reports it Mounted, 404 NOT_FOUND when the host has no
    such device (the Mount is removed again), 409 CONFLICT with the agent's
    message when it refused or failed (the Mount stays, Failed, until
    deleted), 202 when the agent has not answered within the action timeout.
    Unless the options say suid or dev, the filesystem is mounted nosuid,nodev.
    """
    _check_mount_point(data.mount_point)
    _check_device(data.device)
    host = scoped_host(query_args.host)
    user = current_user()
    kube = as_user()
    name = mount_name(host.name, data.mount_point)
    obj = Mount(
        metadata=ObjectMeta(
            name=name,
            labels={names.HOST_LABEL: host.name},
            annotations={names.REQUESTED_BY_ANNOTATION: user.username},
        ),
        spec=MountSpec(
            host=host.name,
            device=data.device,
            mount_point=data.mount_point,
            filesystem=data.filesystem,
            options=data.options,
        ),
    )
    try:
        created = await kube.resources(Mount).create(obj, field_manager=field_manager(user.username))
    except Conflict:
        raise APIError(
            409, ALREADY_EXISTS, f"{data.mount_point} on host {host.name} already has a Mount ({name})"
        ) from None
    await record_event(
        host,
        reason="MountRequested",
        note=f"User {user.username!r} asked to mount {data.device} on {data.mount_point} (Mount {name})",
        action="Mount",
    )
    until = _deadline(query_args.wait)
    now = await _wait(created.name, until) or created
    ready = now.condition(names.ConditionType.READY)
    if ready is not None and ready.reason == DEVICE_NOT_FOUND:  # the agent sees every device: none to wait for
        await _remove(now.name, until)
        raise APIError(404, NOT_FOUND, f"host {host.name} has no device {data.device}: {ready.message}")
    if now.status is not None and now.status.phase == "Failed":
        raise APIError(409, CONFLICT, now.status.message or "the mount failed", details=f"Mount {name}")
    done = now.status is not None and now.status.phase == "Mounted"
    return Success[MountView](data=_view(now)), 200 if done else 202


@blueprint.delete("/mount")
@require("admin")
@tag(["storage"])
@validate_querystring(MountQuery)
@validate_request(UnmountRequest)
@validate_response(Success[MountView], 200)
@validate_response(Success[MountView], 202)
@document_response(Failure, 400)
@document_response(Failure, 404)
async def unmount(data: UnmountRequest, query_args: MountQuery) -> tuple[Success[MountView], int]:
    """Unmount (admin): deletes the host's Mount of ``mount_point``; the agent unmounts before it goes.

    Answers 200 once the Mount is gone (unmounted), 202 when the agent has
    not finished within the action timeout (the Mount then shows why).
    """
    _check_mount_point(data.mount_point)
    host = scoped_host(query_args.host)
    kube = gateway().kube
    resources = kube.resources(Mount)
    items, _ = await resources.list(label_selector=f"{names.HOST_LABEL}={host.name}")
    found = next((m for m in items if m.spec.mount_point == data.mount_point and m.spec.host == host.name), None)
    if found is None:
        raise APIError(404, NOT_FOUND, f"host {host.name} has no Mount of {data.mount_point}")
    user = current_user()
    await record_event(
        host,
        reason="UnmountRequested",
        note=f"User {user.username!r} asked to unmount {data.mount_point} (Mount {found.name})",
        action="Unmount",
    )
    try:
        await as_user().resources(Mount).delete(found.name)
    except NotFound:
        return Success[MountView](data=_view(found)), 200
    until = _deadline(query_args.wait)
    last = found
    while time.monotonic() < until:
        try:
            last = await resources.get(found.name)
        except NotFound:
            view = _view(last)
            view.phase, view.mounted, view.message = "Unmounted", False, f"Unmounted {data.mount_point}"
            return Success[MountView](data=view), 200
        await asyncio.sleep(POLL_SECONDS)
    return Success[MountView](data=_view(last)), 202


# -- format -----------------------------------------------------------------------------------------

FORMAT_TIMEOUT = 300.0  # mkfs of a large disk takes a while; the agent answers when it is done


class FormatRequest(BaseModel):
    """What to format, and how."""

    model_config = ConfigDict(extra="forbid")
    device: str = Field(pattern=DEVICE_PATTERN, max_length=1024, examples=["/dev/sdb"])
    filesystem: Filesystem = Field(examples=["ext4"])
    label: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,16}$",
        description="Filesystem label (letters, digits, _ . -; ext4 takes 16 characters, xfs 12).",
        examples=["DATA"],
    )


class FormatResult(BaseModel):
    """The formatted device."""

    device: str
    filesystem: str
    label: str | None = None
    message: str = Field(examples=["Formatted /dev/sdb as ext4"])


@blueprint.post("/format")
@require("admin")
@tag(["storage"])
@validate_querystring(HostOnlyQuery)
@validate_request(FormatRequest)
@validate_response(Success[FormatResult])
@document_response(Failure, 400)
@document_response(Failure, 403)
@document_response(Failure, 404)
@document_response(Failure, 409)
@documents_agent_errors
async def format_device(data: FormatRequest, query_args: HostOnlyQuery) -> Success[FormatResult]:
    """Format a device of the host (all its data is lost).

    The host's agent refuses a device that is mounted, holds a mounted
    partition, backs a VM's disk, or is (or holds) the root or boot
    filesystem, and anything that is not a block device under /dev; each
    format is recorded as an Event on the Host, with the user who asked.
    """
    host = scoped_host(query_args.host)
    user = current_user()
    await record_event(
        host,
        reason="FormatRequested",
        note=f"User {user.username!r} asked to format {data.device} as {data.filesystem}",
        action="Format",
    )
    answer = await ask_agent(
        "POST", "/storage/format", host=host.name, json=data.model_dump(exclude_none=True), timeout=FORMAT_TIMEOUT
    )
    return Success[FormatResult](data=FormatResult.model_validate(answer))
