"""Changing the running Debian guest (PATCH /api/v1/vms/{id}): the guest itself sees the bigger disk and the memory.

On the shared day-2 guest (cpu 1 of maxCpu 2, 512Mi of maxMemory 1Gi, a 4Gi
root overlay): one PATCH grows the root disk and raises the memory; without
a restart (the same boot id), ``lsblk`` in the guest shows the new disk size
and /proc/meminfo's MemTotal grows as the balloon gives the memory back. The
VM is left Running at 512Mi (the disk stays bigger: disks never shrink).
"""

from __future__ import annotations

from typing import Any

import pytest

from ..support.wait import wait_until
from .conftest import Day2VM

pytestmark = [pytest.mark.day2, pytest.mark.guest, pytest.mark.timeout(1200)]

GiB = 2**30
MiB = 2**20


def _mem_total(vm: Day2VM) -> int:
    """MemTotal of the guest's /proc/meminfo, in bytes."""
    line = vm.ssh("grep MemTotal /proc/meminfo")  # MemTotal:  503404 kB
    return int(line.split()[1]) * 1024


def _patch(vm: Day2VM, body: dict[str, Any]) -> dict[str, Any]:
    with vm.api() as api:
        r = api.patch(f"/vms/{vm.uid}", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def test_a_live_disk_grow_and_memory_change_are_seen_inside_the_guest(day2_vm: Day2VM) -> None:
    vm = day2_vm
    vm.ensure_running()
    boot = vm.ssh("cat /proc/sys/kernel/random/boot_id")
    disk = int(vm.ssh("lsblk -bdno SIZE /dev/vda"))
    memory = _mem_total(vm)
    root = next(d for d in vm.view()["disks"] if d["name"] == "root")
    grown = disk + GiB
    try:
        view = _patch(vm, {"memory": "768Mi", "disks": [{**root, "size": str(grown)}]})
        assert view["memory"] == "768Mi" and view["max_memory"] == "1Gi"

        sizes = wait_until(
            lambda: int(vm.ssh("lsblk -bdno SIZE /dev/vda")) == grown, 120, every=2, what="the guest to see the disk"
        )
        assert sizes
        more = wait_until(
            lambda: _mem_total(vm) >= memory + 200 * MiB, 180, every=3, what="the guest's MemTotal to grow"
        )
        assert more
        assert vm.ssh("cat /proc/sys/kernel/random/boot_id") == boot  # changed live: no reboot

        def settled() -> dict[str, Any] | None:
            now = vm.view()
            restart = next((c for c in now["conditions"] if c["type"] == "RestartRequired"), None)
            return now if restart is not None and restart["status"] == "False" else None

        now = wait_until(settled, 60, every=1, what="RestartRequired False")
        assert now["pending_changes"] == [] and now["phase"] == "Running"
    finally:
        _patch(vm, {"memory": "512Mi"})  # as the other day-2 tests expect it; the disk stays grown
    vm.ensure_running()
