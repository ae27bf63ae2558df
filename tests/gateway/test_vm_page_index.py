"""The index behind GET /api/v1/vms's pages (api/_vmpages.py) against the plain reading of the filters.

The gateway's real VM watch cache (an Informer, not started) is fed a few
hundred changes as its watch would deliver them: VMs made, placed, moved
between Hosts and phases, deleted. After each change, pages of every kind of
filter must be exactly what sorting the cache and keeping the VMs the filters
accept gives: the same VMs in the same order, the same ``remaining``, from any
continue point, a key that no VM has included.
"""

from __future__ import annotations

import random
from typing import Any

from vapor.gateway._vmpages import Filter, Key, VmPages
from vapor.kube import Informer, Kube, WatchEvent
from vapor.model import ObjectMeta, VirtualMachine, VirtualMachineSpec, VirtualMachineStatus

NAMESPACES = ("a", "b", "c")
HOSTS = (None, "node-1", "node-2", "node-3")
PHASES = (None, "Starting", "Running", "Stopped")


def _vm(rng: random.Random, namespace: str, name: str, version: int) -> VirtualMachine:
    host, phase = rng.choice(HOSTS), rng.choice(PHASES)
    status = None
    if host is not None or phase is not None:
        status = VirtualMachineStatus(phase=phase, host=host, host_id=f"id-{host}" if host else None)
    return VirtualMachine(
        metadata=ObjectMeta(name=name, namespace=namespace, uid=f"{namespace}-{name}", resource_version=str(version)),
        spec=VirtualMachineSpec(memory="32Mi"),
        status=status,
    )


def _expected(cache: Informer[VirtualMachine], where: Filter, limit: int | None, after: Key | None) -> tuple[Any, int]:
    """The page as the filters read, walking every VM: (namespace, name) of each VM, and how many more."""
    namespace, host, phase = where
    kept = sorted(
        (vm.metadata.namespace or "", vm.name)
        for vm in cache.items()
        if (namespace is None or vm.metadata.namespace == namespace)
        and (phase is None or (vm.status is not None and vm.status.phase == phase))
        and (host is None or (vm.status is not None and host in (vm.status.host, vm.status.host_id)))
    )
    kept = [k for k in kept if after is None or k > after]
    chosen = kept if limit is None else kept[:limit]
    return chosen, len(kept) - len(chosen)


def _filters(rng: random.Random) -> list[Filter]:
    hosts = [None, "node-1", "id-node-2", "nowhere"]
    return [(rng.choice((None, *NAMESPACES)), rng.choice(hosts), rng.choice(PHASES)) for _ in range(6)]


async def test_pages_of_the_index_are_the_filters_read_over_every_vm(kube: Kube) -> None:
    rng = random.Random(18)
    cache: Informer[VirtualMachine] = Informer(kube, VirtualMachine)  # fed by hand below, never started
    pages = VmPages(cache)
    names = [(ns, f"vm-{i:02d}") for ns in NAMESPACES for i in range(20)]
    version = 0

    async def change() -> None:
        nonlocal version
        version += 1
        namespace, name = rng.choice(names)
        present = cache.get(name, namespace)
        if present is not None and rng.random() < 0.25:
            await cache._apply(WatchEvent("DELETED", present))
        else:
            await cache._apply(WatchEvent("MODIFIED" if present else "ADDED", _vm(rng, namespace, name, version)))

    for _ in range(40):  # changes before the first page: the index is made from the cache as it is then
        await change()
    for step in range(300):
        await change()
        for where in _filters(rng):
            limit = rng.choice((None, 1, 3, 7))
            after = rng.choice((None, rng.choice(names), ("b", "vm-05x")))
            vms, remaining = pages.page(where, limit=limit, after=after)
            got = [(vm.metadata.namespace, vm.name) for vm in vms]
            assert (got, remaining) == _expected(cache, where, limit, after), (step, where, limit, after)

    # A whole walk, page by page, from a cache that changed 340 times.
    walked: list[Key] = []
    after: Key | None = None
    while True:
        vms, remaining = pages.page((None, None, None), limit=4, after=after)
        walked += [(vm.metadata.namespace or "", vm.name) for vm in vms]
        if not remaining:
            break
        after = walked[-1]
    assert walked == _expected(cache, (None, None, None), None, None)[0]
