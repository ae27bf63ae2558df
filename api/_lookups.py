"""What a request names, found in the watch caches: a Host by id or name, a VM or Migration by uid or name, an Image.

A Host is named by its stable id (``status.id``) or its resource name. A VM
or a Migration is named by its uid, or by its name in the namespace the
query string gives (default ``default``). Each lookup answers NOT_FOUND in
the contract's envelope when there is no such object.
"""

from __future__ import annotations

import re
from typing import TypeVar

from vapor.agentapi.errors import INVALID_INPUT, NOT_FOUND
from vapor.kube import Informer, NotFound
from vapor.model import Host, Image, Migration, VirtualMachine
from vapor.model import find_host as find_host_in

from ._errors import APIError
from ._schema import FieldError
from ._state import gateway

UID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

R = TypeVar("R", VirtualMachine, Migration)


def _cached(cache: Informer[R], ident: str, namespace: str) -> R | None:
    """An object by uid, else by name in ``namespace``."""
    found = cache.by_uid(ident) if UID_RE.match(ident) else None
    return found or cache.get(ident, namespace)


def find_host(host_id: str) -> Host:
    """A Host by its stable id (status.id) or by its resource name; NOT_FOUND otherwise."""
    host = find_host_in(gateway().hosts.items(), host_id)
    if host is None:
        raise APIError(404, NOT_FOUND, f"no host with id or name {host_id!r}")
    return host


def hosts_by_name() -> dict[str, Host]:
    """Every cached Host by resource name."""
    return {h.name: h for h in gateway().hosts.items()}


def vm_not_found(vm_id: str, namespace: str) -> APIError:
    """NOT_FOUND for a VM."""
    return APIError(404, NOT_FOUND, f"no virtual machine with id {vm_id!r}, nor named so in namespace {namespace!r}")


def find_vm(vm_id: str, namespace: str) -> VirtualMachine:
    """A VM from the cache, by uid or by name in ``namespace``; NOT_FOUND otherwise."""
    vm = _cached(gateway().vms, vm_id, namespace)
    if vm is None:
        raise vm_not_found(vm_id, namespace)
    return vm


async def vm_for_write(vm_id: str, namespace: str) -> VirtualMachine:
    """The VM to change: from the cache, or (just created, not cached yet) from the API server."""
    vm = _cached(gateway().vms, vm_id, namespace)
    if vm is not None:
        return vm
    try:
        return await gateway().kube.resources(VirtualMachine).get(vm_id, namespace)
    except NotFound:
        raise vm_not_found(vm_id, namespace) from None


def find_migration(migration_id: str, namespace: str) -> Migration:
    """A Migration by uid, or by name in ``namespace``; NOT_FOUND otherwise."""
    m = _cached(gateway().migrations, migration_id, namespace)
    if m is None:
        raise APIError(
            404, NOT_FOUND, f"no migration with id {migration_id!r}, nor named so in namespace {namespace!r}"
        )
    return m


def image_not_found(name: str) -> APIError:
    """NOT_FOUND for an Image."""
    return APIError(404, NOT_FOUND, f"no image named {name!r}")


async def find_image(name: str) -> Image:
    """An Image by name: from the cache, or (just created, not cached yet) from the API server; NOT_FOUND otherwise."""
    image = gateway().images.get(name)
    if image is not None:
        return image
    try:
        return await gateway().kube.resources(Image).get(name)
    except NotFound:
        raise image_not_found(name) from None


async def check_disk_images(images: list[str | None]) -> None:
    """Refuse (422 INVALID_INPUT, the disk named) a new VM whose disks name an Image that does not exist."""
    for index, name in enumerate(images):
        if name is None or gateway().images.get(name) is not None:
            continue
        try:
            await gateway().kube.resources(Image).get(name)  # made a moment ago, not cached yet
        except NotFound:
            field = f"disks[{index}].image"
            message = f"image {name!r} does not exist; create it first (POST /api/v1/images)"
            raise APIError(
                422, INVALID_INPUT, f"{field}: {message}", fields=[FieldError(field=field, message=message)]
            ) from None
