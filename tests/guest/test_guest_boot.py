"""The Debian test guest boots under libvirt alone: cloud-init applies its seed, SSH and the guest agent answer.

No Vapor component takes part: the guest is started by direct libvirt calls
on a Testbed host (a qcow2 overlay on the cached image, a seed ISO from
vapor.agent.host.seediso, a NIC on the host's NAT network), which is what the
agent's own code and the e2e tests build on.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest

from ..support.guest import BOOT_TIMEOUT, GuestImage, SshKey, agent_addresses, boot_guest, ssh, wait_for_ssh
from ..support.guesthost import GuestHost
from ..support.wait import wait_until

pytestmark = pytest.mark.guest


def test_the_image_is_a_qcow2_matching_its_checksum(guest_image: GuestImage) -> None:
    info = subprocess.run(["qemu-img", "info", str(guest_image.path)], capture_output=True, text=True, check=True)
    assert "file format: qcow2" in info.stdout
    assert guest_image.virtual_size >= 1 << 30
    done = subprocess.run(["sha256sum", str(guest_image.path)], capture_output=True, text=True, check=True)
    assert done.stdout.split()[0] == guest_image.sha256


@pytest.mark.timeout(900)
def test_the_guest_boots_takes_its_hostname_and_key_and_its_agent_reports_the_address(
    guest_host: GuestHost, guest_key: SshKey
) -> None:
    hostname = f"g-{uuid.uuid4().hex[:8]}"
    folder = guest_host.folder / hostname
    guest = boot_guest(guest_host.conn, guest_host.base, folder, guest_host.network, guest_key, hostname)
    netns = guest_host.host.netns
    try:
        address = guest.wait_for_address(BOOT_TIMEOUT)
        assert guest_host.network.contains(address)
        try:
            seen = wait_for_ssh(address, guest_key, netns=netns, timeout=BOOT_TIMEOUT)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- console\n{guest.console_log[-3000:]}") from exc
        booted = time.monotonic() - guest.started
        assert seen == hostname

        # Logged in as debian with the test's key (BatchMode: no other way in), which cloud-init installed.
        who = ssh(address, guest_key, "id -un; cat ~/.ssh/authorized_keys", netns=netns)
        assert who.returncode == 0, who.stderr
        user, *keys = who.stdout.splitlines()
        assert user == "debian"
        assert guest_key.public in keys

        # The guest agent answers over its channel and reports the leased address on a named interface.
        reported = wait_until(
            lambda: {n: a for n, a in agent_addresses(guest.domain).items() if address in a},
            30,
            what="the guest agent reporting the DHCP address",
        )
        assert all(name != "lo" for name in reported)
        print(f"boot to SSH: {booted:.1f} s")
    finally:
        guest.destroy()


def test_the_image_carries_no_identity_of_its_own(guest_image: GuestImage, tmp_path: Path) -> None:
    """No machine id and no SSH host keys in the image: each guest makes its own on first boot.

    (A shared machine id would give every guest the same DHCP client id, hence the same address.)
    """
    raw = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(guest_image.path), str(raw)], check=True)
    fs = f"{raw}?offset={1 << 20}"  # the root filesystem is the partition at 1 MiB

    def debugfs(request: str) -> str:
        done = subprocess.run(["debugfs", "-R", request, fs], capture_output=True, text=True, check=True)
        return done.stdout

    assert debugfs("cat /etc/machine-id") == ""
    assert "ssh_host_" not in debugfs("ls /etc/ssh")
    assert "sshd_config" in debugfs("ls /etc/ssh")
    assert "datasource_list: [NoCloud, None]" in debugfs("cat /etc/cloud/cloud.cfg.d/90-vapor.cfg")


def test_the_overlay_leaves_the_staged_image_untouched(guest_host: GuestHost, guest_image: GuestImage) -> None:
    """Guests write to their overlays only: the staged copy still has the image's checksum."""
    done = subprocess.run(["sha256sum", str(guest_host.base)], capture_output=True, text=True, check=True)
    assert done.stdout.split()[0] == guest_image.sha256
    assert Path(guest_host.base).stat().st_size == guest_image.size
