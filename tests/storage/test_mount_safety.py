"""A user who owns a folder on the way to a mount point swaps in a symlink while the agent mounts.

The attacker is a real non-root account: it owns the folder that holds the
mount point, watches it with inotify, and the moment the mount point
directory is opened (the agent looking whether it is empty, just before it
mounts) it swaps the directory with a symlink to a root-owned folder
outside, atomically (renameat2 RENAME_EXCHANGE); a moment later it swaps
them back, ready for the next try. The test makes the agent try again and
again (each annotation change is a reconcile). The root-owned folder stands
in for /etc/systemd/system: whatever happens, nothing may be mounted there.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from quart.typing import TestClientProtocol as Client

from vapor.agent.host import format as _format
from vapor.agent.host.mountops import mount_table

from ..conftest import Kubectl
from ..gateway.conftest import Users
from ..support.agent import AgentProcess
from ..support.pam import LinuxUser, linux_accounts
from ..support.wait import eventually
from .loops import LoopDevices
from .test_mounts import admin_headers, mount_yaml, partition_of, start_agent

ATTACK_SECONDS = 20.0
# Runs as the attacker, in the folder it owns: when "mnt" (a directory) is opened, exchange it with "spare"
# (a symlink outside); swap back a moment later. Prints a line per swap; ends when the directory is busy
# (something is mounted on it: the attack lost).
SWAPPER = """
import ctypes, errno, os, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
IN_OPEN, RENAME_EXCHANGE = 0x20, 2
folder = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
watch = libc.inotify_init1(0)
libc.inotify_add_watch(watch, sys.argv[1].encode(), IN_OPEN)

def swap():
    if libc.renameat2(folder, b"mnt", folder, b"spare", RENAME_EXCHANGE) != 0:
        error = ctypes.get_errno()
        sys.exit(0 if error == errno.EBUSY else f"renameat2: {os.strerror(error)}")

while True:
    data = os.read(watch, 65536)
    names = []
    while data:
        _wd, _mask, _cookie, size = struct.unpack_from("iIII", data)
        names.append(data[16 : 16 + size].rstrip(b"\\0"))
        data = data[16 + size :]
    if b"mnt" in names:
        swap()
        print("swapped", flush=True)
        time.sleep(0.3)
        swap()
        os.read(watch, 65536)  # what the swaps themselves caused
"""


@pytest.fixture
def attacker() -> Iterator[LinuxUser]:
    with linux_accounts() as accounts:
        yield accounts.user("owner")


@pytest.fixture
def playground() -> Iterator[Path]:
    """A root-owned folder for the test; whatever is mounted in it is unmounted before it goes."""
    base = Path(tempfile.mkdtemp(prefix="vtest-race-", dir="/var/tmp"))
    base.chmod(0o755)
    yield base
    for entry in reversed(mount_table()):
        if entry.mount_point.startswith(f"{base}/"):
            subprocess.run(["umount", "-l", entry.mount_point], check=False, capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


def mounts_of(devno: str) -> list[str]:
    """Where the device with this major:minor is mounted now."""
    return [e.mount_point for e in mount_table() if e.devno == devno]


async def test_a_symlink_swapped_in_by_the_folders_owner_never_moves_the_mount_outside(
    loops: LoopDevices,
    playground: Path,
    attacker: LinuxUser,
    agent_factory: Callable[..., AgentProcess],
    mounts_of_node: str,
    kubectl: Kubectl,
) -> None:
    node = mounts_of_node
    device = loops.make()
    _format.format_device(device, "ext4", None, _format.gather_facts())
    rdev = os.stat(device).st_rdev
    devno = f"{os.major(rdev)}:{os.minor(rdev)}"
    outside = playground / "system"  # root's, like /etc/systemd/system
    outside.mkdir()
    (outside / "sshd.service").write_text("[Service]\n")
    owned = playground / "home"  # the attacker's own folder, like /home/mallory
    owned.mkdir()
    (owned / "mnt").mkdir()
    (owned / "spare").symlink_to(outside)
    account = pwd.getpwnam(attacker.name)
    uid, gid = account.pw_uid, account.pw_gid
    for path in (owned, owned / "mnt"):
        os.chown(path, uid, gid)
    os.lchown(owned / "spare", uid, gid)

    start_agent(agent_factory, node)
    name = f"{node}-race"
    swapper = subprocess.Popen(
        [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={gid}",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            SWAPPER,
            str(owned),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    landed: list[str] = []
    try:
        await asyncio.sleep(0.5)  # the attacker's watch is in place
        kubectl.apply(mount_yaml(name, node, device, owned / "mnt", "ext4"))
        deadline = time.monotonic() + ATTACK_SECONDS
        tries = 0
        while time.monotonic() < deadline and not landed and swapper.poll() is None:
            tries += 1
            kubectl("annotate", "--overwrite", f"mounts.vapor.io/{name}", f"vtest/try={tries}")
            await asyncio.sleep(0.2)
            landed = [p for p in mounts_of(devno) if not p.startswith(f"{owned}/")]
    finally:
        swapper.kill()
        out, err = swapper.communicate()
    assert swapper.returncode in (0, -9), err  # ended by the test, or lost (its directory got the mount)
    assert "swapped" in out, "the attacker never got to swap: the test proved nothing"
    landed += [p for p in mounts_of(devno) if not p.startswith(f"{owned}/")]
    assert not landed, f"the mount landed outside the attacker's folder, on {landed}"
    assert (outside / "sshd.service").read_text() == "[Service]\n"  # nothing covers the folder outside
    assert str(outside) not in [e.mount_point for e in mount_table()]


def mount_options(target: Path) -> set[str]:
    """The per-mount options (the kernel's, as mountinfo lists them) of what is mounted on ``target``."""
    lines = [line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return set(next(parts[5] for parts in reversed(lines) if parts[4] == str(target)).split(","))


async def test_mounts_are_nosuid_and_nodev_unless_the_options_say_otherwise(
    loops: LoopDevices,
    tmp_path: Path,
    agent_factory: Callable[..., AgentProcess],
    mounts_of_node: str,
    client: Client,
    users: Users,
) -> None:
    node = mounts_of_node
    plain, trusted = loops.make(), loops.make()
    for device in (plain, trusted):
        _format.format_device(device, "ext4", None, _format.gather_facts())
    start_agent(agent_factory, node)
    headers = await admin_headers(client, users)
    await eventually(lambda: partition_of(client, headers, node, plain), 60, "the host's disks listed")
    url = f"/api/v1/storage/mount?host={node}"

    body = {"device": plain, "mount_point": str(tmp_path / "plain"), "filesystem": "ext4", "options": "rw,noatime"}
    response = await client.post(url, json=body, headers=headers)
    assert response.status_code == 200, await response.get_json()
    assert {"nosuid", "nodev", "noatime"} <= mount_options(tmp_path / "plain")

    body = {"device": trusted, "mount_point": str(tmp_path / "trusted"), "filesystem": "ext4", "options": "suid,dev"}
    response = await client.post(url, json=body, headers=headers)
    assert response.status_code == 200, await response.get_json()
    assert not {"nosuid", "nodev"} & mount_options(tmp_path / "trusted")


@pytest.mark.parametrize("mount_point", ["/root/data", "/home", "/var/spool/cron/crontabs", "/var/lib/vapor/images"])
async def test_root_home_cron_and_vapor_state_are_refused_by_rest_and_by_the_api_server(
    mount_point: str, mounts_of_node: str, client: Client, users: Users, kubectl: Kubectl
) -> None:
    node = mounts_of_node
    headers = await admin_headers(client, users)
    body = {"device": "/dev/loop0", "mount_point": mount_point, "filesystem": "ext4"}
    response = await client.post(f"/api/v1/storage/mount?host={node}", json=body, headers=headers)
    answer = await response.get_json()
    assert (response.status_code, answer["error"]["code"]) == (400, "INVALID_INPUT"), answer
    assert "system directory" in answer["error"]["message"]
    refused = kubectl.apply(mount_yaml(f"{node}-refused", node, "/dev/loop0", Path(mount_point), "ext4"), check=False)
    assert refused.returncode != 0 and "mountPoint must not be a system directory" in refused.stderr
