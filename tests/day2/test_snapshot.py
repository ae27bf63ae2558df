"""Snapshot and restore of the real Debian guest, through REST: a file written after the snapshot is gone.

The shared guest runs, so the snapshot keeps its memory (the only way this
machine's libvirt snapshots a running domain's internal qcow2 disks); after
the restore the VM's next start resumes the guest at the moment of the
snapshot, before the file was written. The snapshot is deleted at the end
(merged away: a VM with snapshots cannot migrate) and the VM left Running.
"""

from __future__ import annotations

import uuid

import pytest

from ..support.guest import ssh
from ..support.wait import wait_until
from .conftest import Day2VM

pytestmark = [pytest.mark.day2, pytest.mark.guest, pytest.mark.timeout(1500)]

MARKER = "/home/debian/written-after-the-snapshot"


def in_guest(vm: Day2VM, command: str) -> str:
    """``command``'s output in the guest, trying again while SSH is refused (cloud-init restarts sshd on a
    first boot; a guest resumed from a snapshot of that boot may be at that point again)."""

    def run() -> str | None:
        done = ssh(vm.address(), vm.key, command, netns=vm.netns, timeout=60)
        if done.returncode == 255:  # ssh's own failure: no connection
            return None
        assert done.returncode == 0, done.stderr
        return done.stdout.strip() or "(empty)"

    return wait_until(run, 180, every=2, what=f"ssh {command!r}")


def exists_in_guest(vm: Day2VM, path: str) -> bool:
    return in_guest(vm, f"test -e {path} && echo yes || echo no") == "yes"


def test_a_restored_snapshot_forgets_a_file_written_after_it(day2_vm: Day2VM) -> None:
    vm = day2_vm
    vm.ensure_running()
    name = f"day2-{uuid.uuid4().hex[:6]}"
    base = f"/vms/{vm.uid}/snapshots"
    with vm.api() as api:
        r = api.post(base, params={"wait": 300}, json={"name": name, "include_memory": True}, timeout=330)
        assert r.status_code == 201, r.text
        assert r.json()["data"]["memory"] is True and r.json()["data"]["disks"] == ["root"]
        try:
            in_guest(vm, f"echo after > {MARKER} && sync")
            assert exists_in_guest(vm, MARKER)

            vm.power("stop")
            vm.wait_phase("Stopped", 300)
            r = api.post(f"{base}/{name}/restore", params={"wait": 300}, timeout=330)
            assert r.status_code == 200, r.text
            assert r.json()["data"]["phase"] == "Succeeded"

            vm.ensure_running()  # resumes the kept memory: the guest is where it was at the snapshot
            assert not exists_in_guest(vm, MARKER)
        finally:
            vm.ensure_running()
            api.delete(f"{base}/{name}")
            wait_until(
                lambda: name not in str(api.get(base).json()["data"]["items"]), 120, every=1, what="snapshot merged"
            )
