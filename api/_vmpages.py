"""The pages of GET /api/v1/vms without walking every VM: sorted keys per filter, kept as the watch delivers changes.

Each VM is filed under every combination of the list's filters it matches,
``(namespace, host, phase)`` with ``None`` for a filter not asked: a VM placed
on a Host is filed under the Host's name and under its id, since ``?host=``
takes either. A file holds (namespace, name) keys in order (bisect), so a page
is one bisect to the key after the continue token and a slice, and
``remaining`` is a subtraction: a page of 100 costs the same among ten VMs or
ten thousand. A change moves one VM between the few files it leaves and joins.

The files are made from the watch cache on the first page asked, then follow
its changes (a re-list's changes too: filing a VM is idempotent).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from vapor.kube import Informer, WatchEvent
from vapor.model import VirtualMachine

Key = tuple[str, str]  # (namespace, name): the list's order and what a continue token names
Filter = tuple[str | None, str | None, str | None]  # (namespace, host name or id, phase); None: any
_Place = tuple[str, tuple[str, ...], str | None]  # what a VM is filed by: its namespace, Host name and id, phase


def _place(vm: VirtualMachine) -> _Place:
    status = vm.status
    hosts = tuple(dict.fromkeys(h for h in (status.host, status.host_id) if h is not None)) if status else ()
    return vm.metadata.namespace or "", hosts, status.phase if status else None


def _filters(place: _Place) -> Iterator[Filter]:
    namespace, hosts, phase = place
    for ns in (None, namespace):
        for host in (None, *hosts):
            yield ns, host, None
            if phase is not None:
                yield ns, host, phase


class VmPages:
    """VM keys in (namespace, name) order, one sorted list per combination of filters."""

    def __init__(self, informer: Informer[VirtualMachine]) -> None:
        self._informer = informer
        self._files: dict[Filter, list[Key]] = {}
        self._places: dict[Key, _Place] = {}
        self._built = False
        informer.on_change(self._changed)

    def page(self, where: Filter, *, limit: int | None, after: Key | None) -> tuple[list[VirtualMachine], int]:
        """At most ``limit`` VMs ``where`` accepts, from after the key ``after``, and how many more it accepts."""
        if not self._built:
            self._build()
        keys = self._files.get(where, [])
        start = bisect.bisect_right(keys, after) if after is not None else 0
        end = len(keys) if limit is None else min(len(keys), start + limit)
        found = (self._informer.get(name, namespace) for namespace, name in keys[start:end])
        return [vm for vm in found if vm is not None], len(keys) - end

    def sizes(self) -> tuple[int, int]:
        """How many files there are and how many keys they hold in all (to measure the index's memory)."""
        return len(self._files), sum(len(keys) for keys in self._files.values())

    def _build(self) -> None:
        self._files, self._places = {}, {}
        for vm in self._informer.items():
            key, place = (vm.metadata.namespace or "", vm.name), _place(vm)
            self._places[key] = place
            for where in _filters(place):
                self._files.setdefault(where, []).append(key)
        for keys in self._files.values():
            keys.sort()
        self._built = True

    def _changed(self, event: WatchEvent[VirtualMachine]) -> None:
        if not self._built:  # the first page files every VM from the cache as it is then
            return
        vm = event.object
        key = (vm.metadata.namespace or "", vm.name)
        old = self._places.pop(key, None)
        new = None if event.type == "DELETED" else _place(vm)
        if new is not None:
            self._places[key] = new
        if old == new:
            return
        leaving = set(_filters(old)) if old is not None else set()
        joining = set(_filters(new)) if new is not None else set()
        for where in leaving - joining:
            keys = self._files.get(where, [])
            at = bisect.bisect_left(keys, key)
            if at < len(keys) and keys[at] == key:
                del keys[at]
            if not keys:
                self._files.pop(where, None)
        for where in joining - leaving:
            bisect.insort(self._files.setdefault(where, []), key)
