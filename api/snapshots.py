"""/api/v1/vms/{id}/snapshots: a VM's snapshots, taken, restored and deleted through their resources.

A snapshot is a VirtualMachineSnapshot, a restore a VirtualMachineRestore
(see vapor.model.snapshot); the agent of the VM's host does the work, and
these routes wait for its answer a bounded time (?wait=, default 30 s) as
the power actions do. Both are made with the VM's host label and the VM as
their owner. Every write carries the user: the field manager
``vapor-gateway:<user>``, the requested-by annotation and an Event on the VM.
Viewers may list; taking, restoring and deleting is for admins.
"""

from __future__ import annotations

import asyncio
import time
from typing import TypeVar

from quart import Blueprint, current_app
from quart_schema import document_response, tag, validate_querystring, validate_request, validate_response

from vapor.agentapi.errors import ALREADY_EXISTS, CONFLICT, INVALID_INPUT, NOT_FOUND
from vapor.kube import Conflict, NotFound
from vapor.model import ObjectMeta, VirtualMachine
from vapor.model.names import HOST_LABEL, REQUESTED_BY_ANNOTATION, ConditionType
from vapor.model.snapshot import (
    VirtualMachineRestore,
    VirtualMachineRestoreSpec,
    VirtualMachineSnapshot,
    VirtualMachineSnapshotSpec,
)

from ._bodyless import NoBody, optional_body
from ._errors import APIError
from ._guard import current_user, require
from ._lookups import find_vm, vm_for_write
from ._schema import Failure, Success
from ._snapshotlookups import snapshots_of
from ._snapshotschema import (
    CreateSnapshotRequest,
    RestoreView,
    SnapshotDeleted,
    SnapshotList,
    SnapshotQuery,
    SnapshotView,
)
from ._state import gateway
from ._writes import as_user, field_manager, record_event

blueprint = Blueprint("snapshots", __name__, url_prefix="/api/v1/vms")

STOP_FIRST = "stop the VM first"
# Failures that are about what was asked (a disk that cannot hold a snapshot): 422; the rest are the VM's state: 409.
UNPROCESSABLE_REASONS = frozenset({"DiskCannotSnapshot", "NoDisks"})
POLL_SECONDS = 0.2
Waited = TypeVar("Waited", VirtualMachineSnapshot, VirtualMachineRestore)


def snapshot_view(snap: VirtualMachineSnapshot) -> SnapshotView:
    """How a snapshot reads over REST."""
    status = snap.status
    return SnapshotView(
        name=snap.name,
        vm=snap.spec.vm,
        namespace=snap.metadata.namespace or "",
        phase=snap.phase,
        include_memory=snap.spec.include_memory,
        memory=status.memory if status else None,
        size_bytes=status.size_bytes if status else None,
        disks=status.disks if status else None,
        host=status.host if status else None,
        creation_time=status.creation_time if status else None,
        failure_reason=status.failure_reason if status else None,
    )


def restore_view(restore: VirtualMachineRestore) -> RestoreView:
    """How a restore reads over REST."""
    status = restore.status
    return RestoreView(
        name=restore.name,
        vm=restore.spec.vm,
        namespace=restore.metadata.namespace or "",
        snapshot=restore.spec.snapshot,
        phase=restore.phase,
        host=status.host if status else None,
        completion_time=status.completion_time if status else None,
        failure_reason=status.failure_reason if status else None,
    )


def _metadata(vm: VirtualMachine, username: str, *, name: str | None = None, generate: str = "") -> ObjectMeta:
    """A snapshot's or restore's metadata: the VM's host label, the VM as owner, who asked."""
    owner = {"apiVersion": vm.api_version, "kind": vm.kind, "name": vm.name, "uid": vm.metadata.uid}
    host = (vm.metadata.labels or {}).get(HOST_LABEL)  # the label its agent selects on (the operator's, else later)
    return ObjectMeta(
        name=name,
        generate_name=None if name else f"{vm.name[:200]}-{generate}",
        namespace=vm.metadata.namespace,
        labels={HOST_LABEL: host} if host else None,
        annotations={REQUESTED_BY_ANNOTATION: username},
        owner_references=[owner],
    )


def _wait_seconds(query: SnapshotQuery) -> float:
    return query.wait if query.wait is not None else float(current_app.config["ACTION_TIMEOUT"])


async def _settled(obj: Waited, done: frozenset[str], seconds: float) -> Waited:
    """``obj`` read again until its phase is in ``done`` or ``seconds`` pass."""
    resources = gateway().kube.resources(type(obj))
    deadline = time.monotonic() + seconds
    while obj.phase not in done and time.monotonic() < deadline:
        await asyncio.sleep(POLL_SECONDS)
        try:
            obj = await resources.get(obj.name, obj.metadata.namespace)
        except NotFound:
            break
    return obj


def _failure(obj: VirtualMachineSnapshot | VirtualMachineRestore, what: str) -> APIError:
    """The error of a Failed snapshot or restore: 422 for a disk that cannot hold one, else 409."""
    ready = obj.condition(ConditionType.READY)
    reason = ready.reason if ready else ""
    message = (obj.status.failure_reason if obj.status else None) or "the agent gave no reason"
    if reason in UNPROCESSABLE_REASONS:
        return APIError(422, INVALID_INPUT, f"{what} failed: {message}", details=obj.name)
    return APIError(409, CONFLICT, f"{what} failed: {message}", details=obj.name)


async def _snapshot_of(vm: VirtualMachine, name: str) -> VirtualMachineSnapshot:
    try:
        snap = await gateway().kube.resources(VirtualMachineSnapshot).get(name, vm.metadata.namespace)
    except NotFound:
        snap = None
    if snap is None or snap.spec.vm != vm.name:
        raise APIError(404, NOT_FOUND, f"virtual machine {vm.name!r} has no snapshot named {name!r}")
    return snap


@blueprint.get("/<vm_id>/snapshots")
@require("viewer")
@tag(["snapshots"])
@validate_querystring(SnapshotQuery)
@validate_response(Success[SnapshotList])
@document_response(Failure, 400)
@document_response(Failure, 404)
async def list_snapshots(vm_id: str, query_args: SnapshotQuery) -> Success[SnapshotList]:
    """The snapshots of a virtual machine, oldest first."""
    vm = find_vm(vm_id, query_args.namespace)
    return Success[SnapshotList](data=SnapshotList(items=[snapshot_view(s) for s in await snapshots_of(vm)]))


@blueprint.post("/<vm_id>/snapshots")
@require("admin")
@tag(["snapshots"])
@validate_querystring(SnapshotQuery)
@validate_request(CreateSnapshotRequest)
@validate_response(Success[SnapshotView], 201)
@validate_response(Success[SnapshotView], 202)
@document_response(Failure, 400)
@document_response(Failure, 403)
@document_response(Failure, 404)
@document_response(Failure, 409)
@document_response(Failure, 422)
async def create_snapshot(
    vm_id: str, data: CreateSnapshotRequest, query_args: SnapshotQuery
) -> tuple[Success[SnapshotView], int]:
    """Take a snapshot of a virtual machine (admin).

    Answers 201 with the snapshot once its host's agent reports it Ready, or
    202 with its phase when ?wait= seconds (default 30) pass first. A VM
    whose disks cannot hold a snapshot (a raw file or a block device) is
    422; a running VM without ``include_memory`` is 409 (stop it, or keep
    its memory); a name already taken is 409 ALREADY_EXISTS. The failed
    snapshot stays, as the record of why (delete it like any other).
    """
    user = current_user()
    vm = await vm_for_write(vm_id, query_args.namespace)
    snap = VirtualMachineSnapshot(
        metadata=_metadata(vm, user.username, name=data.name, generate="snap-"),
        spec=VirtualMachineSnapshotSpec(vm=vm.name, include_memory=data.include_memory),
    )
    try:
        made = (
            await as_user().resources(VirtualMachineSnapshot).create(snap, field_manager=field_manager(user.username))
        )
    except Conflict:
        raise APIError(409, ALREADY_EXISTS, f"a snapshot named {data.name!r} already exists") from None
    memory = " with its memory" if data.include_memory else ""
    note = f"User {user.username!r} asked for snapshot {made.name}{memory} through the REST API"
    await record_event(vm, reason="SnapshotRequested", note=note, action="Snapshot")
    made = await _settled(made, frozenset({"Ready", "Failed"}), _wait_seconds(query_args))
    if made.phase == "Failed":
        raise _failure(made, f"snapshot {made.name}")
    return Success[SnapshotView](data=snapshot_view(made)), 201 if made.phase == "Ready" else 202


@blueprint.post("/<vm_id>/snapshots/<name>/restore")
@require("admin")
@tag(["snapshots"])
@validate_querystring(SnapshotQuery)
@optional_body(NoBody)
@validate_response(Success[RestoreView])
@validate_response(Success[RestoreView], 202)
@document_response(Failure, 400)
@document_response(Failure, 403)
@document_response(Failure, 404)
@document_response(Failure, 409)
async def restore_snapshot(
    vm_id: str, name: str, query_args: SnapshotQuery, data: NoBody
) -> tuple[Success[RestoreView], int]:
    """Put a stopped virtual machine back to one of its snapshots (admin).

    The VM must be stopped first (stop action; runStrategy Halted and its
    domain off): a running one is refused at once with 409 CONFLICT. Answers
    200 once the agent reverted the disks (and memory, when the snapshot kept
    it: the next start resumes the guest), 202 with the restore's phase when
    ?wait= seconds (default 30) pass first, 409 when the agent refused it.
    """
    user = current_user()
    vm = await vm_for_write(vm_id, query_args.namespace)
    snap = await _snapshot_of(vm, name)
    phase = vm.status.phase if vm.status else None
    if vm.spec.run_strategy != "Halted" or phase not in ("Stopped", "Failed", None):
        raise APIError(
            409, CONFLICT, f"{STOP_FIRST}: {vm.name} is {phase or vm.spec.run_strategy}", details="action: stop"
        )
    restore = VirtualMachineRestore(
        metadata=_metadata(vm, user.username, generate="restore-"),
        spec=VirtualMachineRestoreSpec(vm=vm.name, snapshot=snap.name),
    )
    made = await as_user().resources(VirtualMachineRestore).create(restore, field_manager=field_manager(user.username))
    note = f"User {user.username!r} asked to restore snapshot {snap.name} ({made.name}) through the REST API"
    await record_event(vm, reason="RestoreRequested", note=note, action="Restore")
    made = await _settled(made, frozenset({"Succeeded", "Failed"}), _wait_seconds(query_args))
    if made.phase == "Failed":
        raise _failure(made, f"restore {made.name}")
    return Success[RestoreView](data=restore_view(made)), 200 if made.phase == "Succeeded" else 202


@blueprint.delete("/<vm_id>/snapshots/<name>")
@require("admin")
@tag(["snapshots"])
@validate_querystring(SnapshotQuery)
@validate_response(Success[SnapshotDeleted])
@document_response(Failure, 400)
@document_response(Failure, 403)
@document_response(Failure, 404)
async def delete_snapshot(vm_id: str, name: str, query_args: SnapshotQuery) -> Success[SnapshotDeleted]:
    """Delete a snapshot (admin): its host's agent merges it away from the disks first; the VM is untouched."""
    user = current_user()
    vm = await vm_for_write(vm_id, query_args.namespace)
    snap = await _snapshot_of(vm, name)
    namespace = vm.metadata.namespace or query_args.namespace
    try:
        await as_user().resources(VirtualMachineSnapshot).delete(snap.name, namespace)
    except NotFound:
        raise APIError(404, NOT_FOUND, f"virtual machine {vm.name!r} has no snapshot named {name!r}") from None
    note = f"User {user.username!r} deleted snapshot {snap.name} through the REST API"
    await record_event(vm, reason="SnapshotDeleteRequested", note=note, action="DeleteSnapshot")
    return Success[SnapshotDeleted](
        data=SnapshotDeleted(name=snap.name, vm=vm.name, namespace=namespace, message="deletion requested")
    )
