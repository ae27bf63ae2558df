"""Live migration over REST: POST /api/v1/vms/{id}/migrate and /api/v1/migrations.

A migration request becomes a Migration resource (named after the VM with a
short random suffix, carrying the user in the requested-by annotation and the
field manager); the operator and the agents take it from there. Reads come
from the Migration watch cache. Cancelling (DELETE or POST .../cancel) sets
spec.cancel: the operator stops a migration that has not started, the source
agent aborts a running one, and the VM keeps running where it was.

The gateway refuses what cannot work before creating anything (unknown VM or
host, same host, a live move of a VM that is not running, a VM already being
moved, a VM with snapshots, a destination that is not Ready or in maintenance); the operator checks
again, with capacity and CPU and storage compatibility, and says so in the
Migration's status. GET /api/v1/vms/{id}/migration-targets (Vapor's, beyond the contract) shows
those checks ahead, host by host, from the operator's own rules (:mod:`._preflight`).
"""

from __future__ import annotations

import secrets

from quart import Blueprint
from quart_schema import document_response, tag, validate_querystring, validate_request, validate_response

from vapor.agentapi.errors import CONFLICT, INVALID_INPUT, NOT_FOUND
from vapor.kube import NotFound
from vapor.model import Host, Migration, MigrationSpec, ObjectMeta, VirtualMachine
from vapor.model.names import REQUESTED_BY_ANNOTATION

from ._bodyless import optional_body
from ._errors import INVALID_INPUT_STATUS, APIError
from ._guard import current_user, require
from ._lookups import find_host, find_migration, find_vm, hosts_by_name, vm_for_write
from ._migrationschema import (
    CancelRequest,
    MigrateRequest,
    MigrationList,
    MigrationListQuery,
    MigrationStarted,
    MigrationTargets,
    MigrationTargetsQuery,
    MigrationView,
)
from ._preflight import migration_targets
from ._schema import Failure, Success
from ._snapshotlookups import refuse_to_move_snapshots, snapshots_of
from ._state import gateway
from ._views import migration_view
from ._vmschema import VMQuery
from ._writes import CACHE_CATCH_UP, as_user, field_manager, record_event

blueprint = Blueprint("migrations", __name__, url_prefix="/api/v1")

_NAME_ROOM = 253 - 6  # "-" and five random characters


def migration_name(vm: str) -> str:
    """<vm>-<five random hex digits>: the Migration of one request."""
    return f"{vm[:_NAME_ROOM]}-{secrets.token_hex(3)[:5]}"


def view(m: Migration) -> MigrationView:
    """The REST form of a cached or fresh Migration."""
    vm = gateway().vms.get(m.spec.vm_name, m.metadata.namespace)
    return migration_view(m, hosts_by_name(), vm)


def _active_migration(vm: VirtualMachine) -> Migration | None:
    namespace = vm.metadata.namespace
    for m in gateway().migrations.items():
        if m.metadata.namespace != namespace or m.spec.vm_name != vm.name:
            continue
        if not m.is_terminal and not m.spec.cancel and m.metadata.deletion_timestamp is None:
            return m
    return None


def _conflict(message: str, details: str | None = None) -> APIError:
    return APIError(409, CONFLICT, message, details)


def _refuse_early(vm: VirtualMachine, data: MigrateRequest) -> Host | None:
    """What the gateway can already tell is wrong; the destination Host, if one was named."""
    if data.post_copy and not data.live:
        raise APIError(INVALID_INPUT_STATUS, INVALID_INPUT, "post_copy needs a live migration (live: true)")
    if vm.metadata.deletion_timestamp is not None:
        raise _conflict(f"virtual machine {vm.name!r} is being deleted")
    source = vm.host
    if not source:
        raise _conflict(f"virtual machine {vm.name!r} is not placed on any host yet; there is nothing to move")
    if data.live and not vm.can_live_migrate:
        raise _conflict(
            f"virtual machine {vm.name!r} is {vm.phase or 'not started'}: a live migration needs it running",
            "start it first, or ask for an offline migration with live: false",
        )
    destination = find_host(data.destination_host_id) if data.destination_host_id else None
    if destination is not None:
        if destination.name == source:  # the VM's state, not the request's form: a client that read it moments
            raise _conflict(  # ago may have seen the VM still on its previous host (the chaos soak's one 400)
                f"virtual machine {vm.name!r} already runs on host {destination.name!r}: pick another destination"
            )
        if not destination.is_ready:
            raise _conflict(f"destination host {destination.name!r} is not Ready (its agent is not reporting)")
        if destination.spec.maintenance:
            raise _conflict(f"destination host {destination.name!r} is in maintenance")
    busy = _active_migration(vm)
    if busy is not None:
        raise _conflict(
            f"virtual machine {vm.name!r} is already being moved by migration {busy.name!r}",
            f"cancel it first: POST /api/v1/migrations/{busy.metadata.uid}/cancel",
        )
    return destination


@blueprint.post("/vms/<vm_id>/migrate")
@require("admin")
@tag(["migrations"])
@validate_querystring(VMQuery)
@validate_request(MigrateRequest)
@validate_response(Success[MigrationStarted], 201)
@document_response(Failure, 400)
@document_response(Failure, 404)
@document_response(Failure, 409)
async def migrate_vm(vm_id: str, data: MigrateRequest, query_args: VMQuery) -> tuple[Success[MigrationStarted], int]:
    """Move a virtual machine to another host (admin); answers 201 with the new migration's id.

    The VM is named by id or by name (?namespace=, default "default");
    ``destination_host_id`` by host id or name (left out: the operator picks a
    Ready host with room). Follow the migration at GET /api/v1/migrations/{id};
    the operator queues it when the cluster's limits are reached. What the
    VM's state refuses is 409: a VM not placed, not running for a live move,
    already being moved, or already on the destination; a destination not
    Ready or in maintenance; a VM with snapshots (they are kept inside its
    disks on its host and would be lost by the move: delete them first).
    """
    user = current_user()
    state = gateway()
    vm = await vm_for_write(vm_id, query_args.namespace)
    namespace = vm.metadata.namespace or query_args.namespace
    destination = _refuse_early(vm, data)
    await refuse_to_move_snapshots(vm)
    spec = MigrationSpec(  # the request's fields are the spec's, but for the destination (an id or name)
        vm_name=vm.name,
        destination_host=destination.name if destination is not None else None,
        **data.model_dump(exclude={"destination_host_id"}),
    )
    migration = Migration(
        metadata=ObjectMeta(
            name=migration_name(vm.name),
            namespace=namespace,
            annotations={REQUESTED_BY_ANNOTATION: user.username},
        ),
        spec=spec,
    )
    created = await as_user().resources(Migration).create(migration, field_manager=field_manager(user.username))
    where = destination.name if destination is not None else "a host the operator picks"
    note = f"User {user.username!r} asked through the REST API to move the VM to {where}"
    await record_event(created, reason="MigrationRequested", note=note, action="Migrate")
    await record_event(vm, reason="MigrationRequested", note=f"{note} (Migration {created.name})", action="Migrate")
    uid = created.metadata.uid or ""
    await state.migrations.wait_for(lambda: state.migrations.by_uid(uid) is not None, CACHE_CATCH_UP)
    started = MigrationStarted(
        migration_id=uid,
        name=created.name,
        namespace=namespace,
        vm_id=vm.metadata.uid or "",
        vm_name=vm.name,
        destination_host_id=destination.host_id if destination is not None else None,
        destination_host_name=destination.name if destination is not None else None,
    )
    return Success[MigrationStarted](data=started), 201


@blueprint.get("/vms/<vm_id>/migration-targets")
@require("viewer")
@tag(["migrations"])
@validate_querystring(MigrationTargetsQuery)
@validate_response(Success[MigrationTargets])
@document_response(Failure, 400)
@document_response(Failure, 404)
async def get_migration_targets(vm_id: str, query_args: MigrationTargetsQuery) -> Success[MigrationTargets]:
    """Every host as the VM's destination: whether it can take the VM now, and each pre-flight check (Vapor's).

    The checks are the operator's own (capacity, CPU compatibility, storage,
    the VM's images and snapshots), run as it will run them on a Migration
    to that host made now with ``copy_storage`` and ``live``; a host ruled
    out before them (the VM's own host, not Ready, in maintenance) has one
    check, Refused, saying why. Nothing is created. The VM is named by id or
    by name (?namespace=, default "default").
    """
    vm = find_vm(vm_id, query_args.namespace)
    snapshots = await snapshots_of(vm)
    targets = migration_targets(vm, snapshots, query_args.copy_storage, query_args.live)
    return Success[MigrationTargets](data=targets)


def _matches(m: Migration, q: MigrationListQuery, hosts: dict[str, Host]) -> bool:
    status = m.status
    phase = m.phase or "Pending"
    if q.namespace and m.metadata.namespace != q.namespace:
        return False
    if q.phase and phase != q.phase:
        return False
    if q.active is not None and (not m.is_terminal) != q.active:
        return False
    if q.vm_id:
        vm = gateway().vms.get(m.spec.vm_name, m.metadata.namespace)
        if q.vm_id != m.spec.vm_name and (vm is None or vm.metadata.uid != q.vm_id):
            return False
    if q.host_id:
        involved = {status.source_host, status.target_host} if status else set()
        involved.add(m.spec.destination_host)
        ids = {hosts[n].host_id for n in involved if n in hosts}
        if q.host_id not in involved and q.host_id not in ids:
            return False
    return True


@blueprint.get("/migrations")
@require("viewer")
@tag(["migrations"])
@validate_querystring(MigrationListQuery)
@validate_response(Success[MigrationList])
@document_response(Failure, 400)
async def list_migrations(query_args: MigrationListQuery) -> Success[MigrationList]:
    """Migrations, newest first.

    Filters: namespace, vm_id (a VM's id or name), host_id (source or
    destination, id or name), phase, active (true: unfinished only).
    """
    hosts = hosts_by_name()
    found = [m for m in gateway().migrations.items() if _matches(m, query_args, hosts)]
    found.sort(
        key=lambda m: (m.metadata.creation_timestamp.timestamp() if m.metadata.creation_timestamp else 0, m.name)
    )
    views = [view(m) for m in reversed(found)]
    return Success[MigrationList](data=MigrationList(migrations=views, count=len(views)))


@blueprint.get("/migrations/<migration_id>")
@require("viewer")
@tag(["migrations"])
@validate_querystring(VMQuery)
@validate_response(Success[MigrationView])
@document_response(Failure, 404)
async def get_migration(migration_id: str, query_args: VMQuery) -> Success[MigrationView]:
    """One migration, by id or by name (?namespace=, default "default"): phase, progress, times, downtime, failure."""
    return Success[MigrationView](data=view(find_migration(migration_id, query_args.namespace)))


async def _cancel(migration_id: str, namespace: str, reason: str | None) -> tuple[Success[MigrationView], int]:
    user = current_user()
    m = find_migration(migration_id, namespace)
    if m.is_terminal:
        raise _conflict(f"migration {m.name!r} has already finished ({m.phase}); there is nothing to cancel")
    if m.spec.cancel:
        return Success[MigrationView](data=view(m)), 200
    try:
        patched = (
            await as_user()
            .resources(Migration)
            .patch(
                m.name,
                spec=MigrationSpec.partial(cancel=True),
                namespace=m.metadata.namespace,
                field_manager=field_manager(user.username),
            )
        )
    except NotFound:
        raise APIError(404, NOT_FOUND, f"migration {m.name!r} no longer exists") from None
    await record_event(
        patched,
        reason="CancelRequested",
        note=f"User {user.username!r} cancelled the migration through the REST API" + (f": {reason}" if reason else ""),
        action="Cancel",
    )
    return Success[MigrationView](data=view(patched)), 200


@blueprint.post("/migrations/<migration_id>/cancel")
@require("admin")
@tag(["migrations"])
@validate_querystring(VMQuery)
@optional_body(CancelRequest)
@validate_response(Success[MigrationView])
@document_response(Failure, 400)
@document_response(Failure, 404)
@document_response(Failure, 409)
async def cancel_migration(
    migration_id: str, query_args: VMQuery, data: CancelRequest
) -> tuple[Success[MigrationView], int]:
    """Cancel a migration that has not finished (admin): the VM keeps running where it was.

    Answers once spec.cancel is set (cancel_requested true): the operator
    (before the copy starts) or the source host's agent (during it) carries
    it out and the phase becomes Cancelled. 409 CONFLICT when the migration
    has already finished.
    """
    return await _cancel(migration_id, query_args.namespace, data.reason)


@blueprint.delete("/migrations/<migration_id>")
@require("admin")
@tag(["migrations"])
@validate_querystring(VMQuery)
@validate_response(Success[MigrationView])
@document_response(Failure, 404)
@document_response(Failure, 409)
async def delete_migration(migration_id: str, query_args: VMQuery) -> tuple[Success[MigrationView], int]:
    """Abort a migration (admin), as POST /migrations/{id}/cancel does; the record stays for GET."""
    return await _cancel(migration_id, query_args.namespace, None)
