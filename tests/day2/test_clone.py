"""A clone of the shared guest, from a snapshot of it (so it keeps running), boots as a machine of its own.

Checked over SSH as a person would: its hostname is the one the clone was
given, its network card has a MAC address of its own and the guest got an
address of its own, and cloud-init saw a new instance (the clone's id).

The guest's /etc/machine-id is emptied in the copy, as for any VM meant to
be cloned: systemd-networkd makes its DHCP client id from it, so a copy
that kept it would ask for the source's address (see the README's "Cloning
a VM"). The shared VM gets its own back at once and is left Running.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from ..support.guest import BOOT_TIMEOUT, ssh, wait_for_cloud_init, wait_for_ssh
from ..support.wait import wait_until
from .conftest import Day2VM

pytestmark = [pytest.mark.day2, pytest.mark.guest, pytest.mark.timeout(1800)]

CLONE_HOSTNAME = "day2-clone"


def mac_of(view: dict[str, Any]) -> str:
    """The MAC address of the VM's first interface, as Vapor reports it."""
    interfaces = view.get("interfaces") or []
    assert interfaces and interfaces[0].get("mac"), view
    return str(interfaces[0]["mac"]).lower()


def take_snapshot(vm: Day2VM, name: str) -> None:
    """A snapshot of the running guest (its memory too: the only kind libvirt takes of a running VM's disks)."""
    machine_id = vm.ssh("cat /etc/machine-id")
    vm.ssh("sudo truncate -s 0 /etc/machine-id && sync")
    try:
        with vm.api() as api:
            r = api.post(f"/vms/{vm.uid}/snapshots?wait=300", json={"name": name, "include_memory": True})
    finally:
        vm.ssh(f"echo {machine_id} | sudo tee /etc/machine-id > /dev/null && sync")
    assert r.status_code == 201, r.text


def test_a_clone_from_a_snapshot_boots_with_its_own_hostname_mac_and_address(day2_vm: Day2VM) -> None:
    vm = day2_vm
    source_address = vm.ensure_running()
    source_mac = mac_of(vm.view())
    snap, name = f"clone-src-{uuid.uuid4().hex[:6]}", f"day2-clone-{uuid.uuid4().hex[:6]}"
    take_snapshot(vm, snap)
    clone_id = ""
    try:
        with vm.api() as api:
            r = api.post(
                f"/vms/{vm.uid}/clone",
                json={"name": name, "snapshot": snap, "hostname": CLONE_HOSTNAME, "run_strategy": "Running"},
            )
            assert r.status_code == 201, r.text
            clone_id = r.json()["data"]["id"]

            def addressed() -> dict[str, Any] | None:
                view = dict(api.get(f"/vms/{clone_id}").json()["data"])
                return view if view.get("phase") == "Running" and view.get("addresses") else None

            clone = wait_until(addressed, BOOT_TIMEOUT, every=2, what=f"{name} Running with an address")
        cloned = next(c for c in clone["conditions"] if c["type"] == "Cloned")
        assert cloned["status"] == "True" and snap in cloned["message"]
        address = str(clone["addresses"][0])
        assert wait_for_ssh(address, vm.key, netns=vm.netns) == CLONE_HOSTNAME
        wait_for_cloud_init(address, vm.key, netns=vm.netns)
        assert address != source_address
        clone_mac = mac_of(clone)
        assert clone_mac != source_mac

        def in_clone(command: str) -> str:
            done = ssh(address, vm.key, command, netns=vm.netns)
            assert done.returncode == 0, done.stderr
            return done.stdout.strip()

        assert clone_mac in in_clone("cat /sys/class/net/*/address").split()
        assert in_clone("cat /var/lib/cloud/data/instance-id") == clone_id  # cloud-init ran anew
        # The source ran all along, as it was.
        assert vm.ssh("hostname", address=source_address) == "day2-guest"
        assert vm.view()["phase"] == "Running"
    finally:
        with vm.api() as api:
            if clone_id:
                api.delete(f"/vms/{clone_id}")
                wait_until(lambda: api.get(f"/vms/{clone_id}").status_code == 404, 120, every=1, what="clone gone")
            api.delete(f"/vms/{vm.uid}/snapshots/{snap}")
    vm.ensure_running()
