"""POST /api/v1/vms/{id}/clone: a new VM made as a copy of another (spec.cloneFrom), in the same namespace.

The gateway writes the clone's VirtualMachine as the user (field manager,
Event) and checks what it can tell at once: the source, its snapshot, that
the source is stopped when no snapshot is given, and that no disk is a file
both VMs would write. The host's agent copies the disks (condition Cloned);
``kubectl apply`` of a VM with spec.cloneFrom does the same without these
early answers (the clone then waits or fails with the reason in Cloned).
"""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_response, tag, validate_querystring, validate_request, validate_response

from vapor.agentapi.errors import ALREADY_EXISTS, CONFLICT, NOT_FOUND
from vapor.kube import Conflict, NotFound
from vapor.model import ObjectMeta, VirtualMachine, VirtualMachineSnapshot
from vapor.model.cloudinit import CloudInitSpec
from vapor.model.names import REQUESTED_BY_ANNOTATION
from vapor.model.virtualmachine import CloneSource

from ._cloneschema import CloneRequest
from ._errors import APIError
from ._guard import current_user, require
from ._lookups import vm_for_write
from ._schema import Failure, Success
from ._state import gateway
from ._views import vm_view
from ._vmschema import VMQuery, VMView
from ._writes import CACHE_CATCH_UP, as_user, field_manager, record_event

blueprint = Blueprint("clones", __name__, url_prefix="/api/v1/vms")

# Phases in which a VM's disks may be written by its domain (or soon will be).
_MAY_RUN = frozenset({"Starting", "Running", "Paused", "Stopping", "Migrating"})


def _running(vm: VirtualMachine) -> bool:
    """Whether the VM runs or is asked to (its disks change under a copy)."""
    return vm.spec.run_strategy != "Halted" or vm.phase in _MAY_RUN


def _shared_file(vm: VirtualMachine) -> str | None:
    """The first writable disk at a path (a file the agent did not make): a clone would write it too."""
    for disk in vm.spec.disks or []:
        if disk.path is not None and not (disk.cdrom or disk.read_only):
            return f"disk {disk.name} is the file {disk.path}"
    return None


async def _check_snapshot(source: VirtualMachine, name: str) -> None:
    """404 for a snapshot that does not exist or is of another VM, 409 for one that is not Ready."""
    namespace = source.metadata.namespace or ""
    try:
        snap = await as_user().resources(VirtualMachineSnapshot).get(name, namespace)
    except NotFound:
        snap = None
    if snap is None or snap.spec.vm != source.name:
        raise APIError(404, NOT_FOUND, f"no snapshot {name!r} of virtual machine {source.name!r} in {namespace!r}")
    if snap.phase != "Ready":
        raise APIError(409, CONFLICT, f"snapshot {name!r} is {snap.phase or 'Pending'}, not Ready: clone once it is")


def clone_of(source: VirtualMachine, data: CloneRequest, username: str) -> VirtualMachine:
    """The clone's VirtualMachine: the source's spec, new MACs, its own hostname, cloneFrom naming the source."""
    spec = source.spec.model_copy(deep=True)
    spec.run_strategy = data.run_strategy
    spec.clone_from = CloneSource(vm=source.name, snapshot=data.snapshot, mode="full" if data.full_copy else "linked")
    for net in spec.networks or []:
        net.mac = None  # libvirt gives the clone new ones
    if spec.cloud_init is not None:
        spec.cloud_init.hostname = data.hostname  # None: the clone's name
    elif data.hostname is not None:
        spec.cloud_init = CloudInitSpec(hostname=data.hostname)
    labels = {k: v for k, v in (source.metadata.labels or {}).items() if not k.startswith("vapor.io/")}
    return VirtualMachine(
        metadata=ObjectMeta(
            name=data.name,
            namespace=source.metadata.namespace,
            labels=labels or None,
            annotations={REQUESTED_BY_ANNOTATION: username},
        ),
        spec=spec,
    )


@blueprint.post("/<vm_id>/clone")
@require("admin")
@tag(["vms"])
@validate_querystring(VMQuery)
@validate_request(CloneRequest)
@validate_response(Success[VMView], 201)
@document_response(Failure, 400)
@document_response(Failure, 403)
@document_response(Failure, 404)
@document_response(Failure, 409)
async def clone_vm(vm_id: str, data: CloneRequest, query_args: VMQuery) -> tuple[Success[VMView], int]:
    """Clone a virtual machine (admin): a new VM in the same namespace, on the same host, with copies of its disks.

    The clone has the source's CPU, memory, disks, networks, firmware and
    cloud-init, with new MAC addresses and ``hostname`` (else its own name)
    as its hostname; cloud-init's instance-id is the clone's id, so its
    first boot runs cloud-init anew. Its disks are copied by the host's
    agent before it starts (condition Cloned: False with reason Copying and
    the progress, then True): a disk that is an overlay on an Image becomes
    a new overlay on the same Image holding only the source's changes, or a
    whole copy with ``full_copy``.

    Refused: 404 for an unknown VM or snapshot; 409 ALREADY_EXISTS when the
    name is taken, 409 CONFLICT when the VM runs and no ``snapshot`` is
    given (stop it, or clone from a snapshot), when the snapshot is not
    Ready, or when a disk is a file at a path (Vapor copies only the disks
    it made).
    """
    user = current_user()
    state = gateway()
    source = await vm_for_write(vm_id, query_args.namespace)
    namespace = source.metadata.namespace or query_args.namespace
    shared = _shared_file(source)
    if shared is not None:
        message = f"{shared}, which Vapor does not copy: copy it yourself and make the new VM with its own path"
        raise APIError(409, CONFLICT, message)
    if data.snapshot is not None:
        await _check_snapshot(source, data.snapshot)
    elif _running(source):
        raise APIError(
            409, CONFLICT, f"virtual machine {source.name!r} is running: stop the VM or clone from a snapshot"
        )
    try:
        created = (
            await as_user()
            .resources(VirtualMachine)
            .create(clone_of(source, data, user.username), field_manager=field_manager(user.username))
        )
    except Conflict:
        raise APIError(
            409, ALREADY_EXISTS, f"a virtual machine named {data.name!r} already exists in namespace {namespace!r}"
        ) from None
    what = f"snapshot {data.snapshot!r} of {source.name!r}" if data.snapshot else repr(source.name)
    how = "full copies" if data.full_copy else "linked copies"
    note = f"User {user.username!r} cloned the virtual machine from {what} ({how}) through the REST API"
    await record_event(created, reason="Created", note=note, action="Create")
    await record_event(
        source, reason="Cloned", note=f"User {user.username!r} cloned it as {data.name!r}", action="Clone"
    )
    uid = created.metadata.uid or ""
    await state.vms.wait_for(lambda: state.vms.by_uid(uid) is not None, CACHE_CATCH_UP)
    return Success[VMView](data=vm_view(created)), 201
