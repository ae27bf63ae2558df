"""/api/v1/vms: virtual machines, read from the watch cache, written as resource patches.

A VM is named by its stable id (uid) or by its name with ``?namespace=``
(default ``default``). Every write carries the user: the field manager
``vapor-gateway:<user>``, the requested-by annotation and an Event on the VM.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, current_app
from quart_schema import document_response, tag, validate_querystring, validate_request, validate_response

from vapor.agentapi.errors import ALREADY_EXISTS, CONFLICT, INVALID_INPUT, NOT_FOUND
from vapor.kube import Conflict, NotFound
from vapor.model import DiskSpec, MetadataPatch, NetworkSpec, ObjectMeta, VirtualMachine, VirtualMachineSpec
from vapor.model.cloudinit import CloudInitSpec
from vapor.model.names import REQUESTED_BY_ANNOTATION

from ._actions import plan
from ._bodies import BadContinue, decode_continue
from ._cloudinit import checked_cloud_init
from ._errors import APIError
from ._guard import current_user, require
from ._lookups import check_disk_images, find_vm, vm_for_write, vm_not_found
from ._querycache import cached_querystring
from ._schema import Failure, Success
from ._state import gateway
from ._views import vm_view
from ._vmpatch import PatchVMRequest, ceiling_problems, describe, merged_spec
from ._vmschema import (
    ActionQuery,
    ActionRequest,
    ActionResult,
    CreateVMRequest,
    DeleteResult,
    VMList,
    VMListQuery,
    VMQuery,
    VMView,
)
from ._writes import CACHE_CATCH_UP, as_user, field_manager, record_event

blueprint = Blueprint("vms", __name__, url_prefix="/api/v1/vms")


@blueprint.get("")
@require("viewer")
@tag(["vms"])
@cached_querystring(VMListQuery)
@document_response(Success[VMList])
async def list_vms(query_args: VMListQuery) -> Response:
    """Every virtual machine, or those of one namespace with ?namespace=; filtered and paged when asked.

    ?host= (name or id) and ?phase= keep the VMs placed on that Host or in that phase; ?limit=
    gives at most that many, in (namespace, name) order, with a ``continue`` token for the next
    page (?continue=) and ``remaining``, how many the next pages hold. A continue token the
    gateway did not make is INVALID_INPUT.
    """
    state = gateway()
    if not query_args.paged:
        return state.vm_bodies.response(query_args.namespace)
    q = query_args
    try:
        after = decode_continue(q.continue_) if q.continue_ else None
    except BadContinue:
        raise APIError(400, INVALID_INPUT, "continue is not a token of a previous page of this list") from None
    where = (q.namespace, q.host, q.phase)

    def make() -> bytes:
        return state.vm_bodies.page(*state.vm_pages.page(where, limit=q.limit, after=after))

    return state.vm_bodies.page_response((where, q.limit, after), make)


@blueprint.get("/<vm_id>")
@require("viewer")
@tag(["vms"])
@validate_querystring(VMQuery)
@validate_response(Success[VMView])
@document_response(Failure, 404)
async def get_vm(vm_id: str, query_args: VMQuery) -> Success[VMView]:
    """One virtual machine, by id or by name (?namespace=, default "default")."""
    return Success[VMView](data=vm_view(find_vm(vm_id, query_args.namespace)))


def _new_vm(data: CreateVMRequest, username: str, cloud_init: CloudInitSpec | None) -> VirtualMachine:
    spec: dict[str, Any] = {
        "cpu": data.cpu, "memory": data.memory, "run_strategy": data.run_strategy, "firmware": data.firmware,
        "max_cpu": data.max_cpu, "max_memory": data.max_memory,
    }  # fmt: skip
    if cloud_init is not None:
        spec["cloud_init"] = cloud_init
    if data.disks:
        spec["disks"] = [DiskSpec.model_validate(d.model_dump(exclude_none=True)) for d in data.disks]
    if data.networks:
        spec["networks"] = [NetworkSpec.model_validate(n.model_dump(exclude_none=True)) for n in data.networks]
    if data.host_selector:
        spec["host_selector"] = data.host_selector
    return VirtualMachine(
        metadata=ObjectMeta(name=data.name, namespace=data.namespace, annotations={REQUESTED_BY_ANNOTATION: username}),
        spec=VirtualMachineSpec(**spec),
    )


@blueprint.post("")
@require("admin")
@tag(["vms"])
@validate_request(CreateVMRequest)
@validate_response(Success[VMView], 201)
@document_response(Failure, 400)
@document_response(Failure, 403)
@document_response(Failure, 409)
@document_response(Failure, 422)
async def create_vm(data: CreateVMRequest) -> tuple[Success[VMView], int]:
    """Create a virtual machine (admin).

    ``memory`` is a quantity string such as "512Mi" or an integer number of
    MiB, at least 16Mi. The VM starts when ``run_strategy`` is Running.
    ``cloud_init`` configures the guest at its first boot; user-data that
    cannot be used (#cloud-config that is not a YAML mapping, over 64 KiB
    with the SSH keys merged in, a Secret or key that does not exist) is
    refused with 422 before anything is made, a Secret you may not read
    with 403. A disk's ``image`` must name an existing Image (422 otherwise).
    """
    user = current_user()
    state = gateway()
    await check_disk_images([d.image for d in data.disks or []])
    cloud_init = await checked_cloud_init(data.cloud_init, data.namespace)
    vm = _new_vm(data, user.username, cloud_init)
    if (problem := ceiling_problems(vm.spec)) is not None:
        raise problem
    try:
        created = await as_user().resources(VirtualMachine).create(vm, field_manager=field_manager(user.username))
    except NotFound:
        raise APIError(404, NOT_FOUND, f"namespace {data.namespace!r} does not exist") from None
    except Conflict:
        raise APIError(
            409, ALREADY_EXISTS, f"a virtual machine named {data.name!r} already exists in namespace {data.namespace!r}"
        ) from None
    await record_event(
        created,
        reason="Created",
        note=f"User {user.username!r} created the virtual machine through the REST API",
        action="Create",
    )
    uid = created.metadata.uid or ""
    await state.vms.wait_for(lambda: state.vms.by_uid(uid) is not None, CACHE_CATCH_UP)
    return Success[VMView](data=vm_view(created)), 201


@blueprint.patch("/<vm_id>")
@require("admin")
@tag(["vms"])
@validate_querystring(VMQuery)
@validate_request(PatchVMRequest)
@validate_response(Success[VMView])
@document_response(Failure, 400)
@document_response(Failure, 404)
@document_response(Failure, 409)
@document_response(Failure, 422)
async def patch_vm(vm_id: str, data: PatchVMRequest, query_args: VMQuery) -> Success[VMView]:
    """Change a virtual machine (admin): cpu, memory, their ceilings, disks, networks, cloud-init, run strategy.

    Any of cpu, max_cpu, memory, max_memory, disks, networks, cloud_init,
    run_strategy and graceful_shutdown_seconds. A list (disks, networks)
    replaces the whole list. A running VM takes live what it can: memory
    through the balloon up to max_memory, cpu up to max_cpu, a bigger disk,
    a new disk or network card; the rest (max_cpu,
    max_memory, a disk's bus, cloud_init, ...) waits for its next start, and
    the VM's pending_changes and condition RestartRequired name it. 400 for a
    body that does not fit (an unknown field, a wrong type); 422 naming the
    field for values the VM cannot take (memory above max_memory, cpu above
    max_cpu, a smaller disk, an Image that does not exist); 409 when the VM
    changed while this request was made (read it again and retry).
    """
    user = current_user()
    found = await vm_for_write(vm_id, query_args.namespace)
    namespace = found.metadata.namespace or query_args.namespace
    vms = as_user().resources(VirtualMachine)
    try:
        vm = await vms.get(found.name, namespace)  # the latest, whose resourceVersion the patch carries
    except NotFound:
        raise vm_not_found(vm_id, namespace) from None
    patch, _ = await merged_spec(data, vm.spec, namespace)
    if not data.model_fields_set:
        return Success[VMView](data=vm_view(vm))
    metadata = MetadataPatch(
        annotations={REQUESTED_BY_ANNOTATION: user.username}, resource_version=vm.metadata.resource_version
    )
    try:
        patched = await vms.patch(
            vm.name, metadata=metadata, spec=patch, namespace=namespace, field_manager=field_manager(user.username)
        )
    except NotFound:
        raise vm_not_found(vm_id, namespace) from None
    except Conflict:
        message = f"virtual machine {vm.name!r} changed while this change was made; read it again and retry"
        raise APIError(409, CONFLICT, message) from None
    note = f"User {user.username!r} changed {describe(data)} through the REST API"
    await record_event(patched, reason="Changed", note=note, action="Change")
    return Success[VMView](data=vm_view(patched))


@blueprint.delete("/<vm_id>")
@require("admin")
@tag(["vms"])
@validate_querystring(VMQuery)
@validate_response(Success[DeleteResult])
@document_response(Failure, 404)
async def delete_vm(vm_id: str, query_args: VMQuery) -> Success[DeleteResult]:
    """Delete a virtual machine (admin); its host's agent removes the domain and disks first."""
    user = current_user()
    vm = await vm_for_write(vm_id, query_args.namespace)
    namespace = vm.metadata.namespace or query_args.namespace
    await record_event(
        vm,
        reason="DeleteRequested",
        note=f"User {user.username!r} deleted the virtual machine through the REST API",
        action="Delete",
    )
    try:
        await as_user().resources(VirtualMachine).delete(vm.name, namespace)
    except NotFound:
        raise vm_not_found(vm_id, namespace) from None
    return Success[DeleteResult](
        data=DeleteResult(id=vm.metadata.uid or "", name=vm.name, namespace=namespace, message="deletion requested")
    )


@blueprint.post("/<vm_id>/action")
@require("admin")
@tag(["vms"])
@validate_querystring(ActionQuery)
@validate_request(ActionRequest)
@validate_response(Success[ActionResult])
@validate_response(Success[ActionResult], 202)
@document_response(Failure, 404)
async def vm_action(vm_id: str, data: ActionRequest, query_args: ActionQuery) -> tuple[Success[ActionResult], int]:
    """Start, stop (force: power off), restart, pause or resume a virtual machine (admin).

    Answers 200 with completed true once the VM's status shows the result
    (Running, Stopped, Paused; for restart, the agent's acknowledgement), or
    202 with completed false when ?wait= seconds (default 30; 0: do not wait)
    pass first.
    """
    user = current_user()
    state = gateway()
    vm = await vm_for_write(vm_id, query_args.namespace)
    namespace = vm.metadata.namespace or query_args.namespace
    action_plan = plan(data.action, data.force, user.username, vm)
    try:
        patched = (
            await as_user()
            .resources(VirtualMachine)
            .patch(
                vm.name,
                metadata=action_plan.metadata,
                spec=action_plan.spec,
                namespace=namespace,
                field_manager=field_manager(user.username),
            )
        )
    except NotFound:
        raise vm_not_found(vm_id, namespace) from None
    await record_event(
        patched,
        reason=f"{data.action.capitalize()}Requested",
        note=action_plan.describe(user.username),
        action=data.action.capitalize(),
    )
    wait = query_args.wait if query_args.wait is not None else float(current_app.config["ACTION_TIMEOUT"])
    uid = patched.metadata.uid

    generation = patched.metadata.generation or 0

    def current() -> VirtualMachine | None:
        found = state.vms.get(patched.name, namespace)
        return found if found is not None and found.metadata.uid == uid else None

    if wait > 0:
        await state.vms.wait_for(lambda: action_plan.settled(current(), generation), wait)
    now = current()
    completed = action_plan.done(now)
    result = ActionResult(
        id=uid or "",
        name=patched.name,
        namespace=namespace,
        action=data.action,
        force=data.force,
        completed=completed,
        phase=now.status.phase if now is not None and now.status is not None else None,
        target_phase=action_plan.target_phase,
        message=action_plan.outcome(now, generation, wait),
    )
    return Success[ActionResult](data=result), 200 if completed else 202
