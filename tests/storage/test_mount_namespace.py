"""An agent in a container mounts in the node's mount namespace (``--mount-namespace-pid``), not its own.

In the chart the agent runs with hostPID and ``--mount-namespace-pid=1``: the
node's init. Here a ``sleep`` started by ``unshare --mount`` plays the node's
init: it holds a mount namespace of its own, and the test's process plays the
agent's container. A Mount written with kubectl must show up in that
namespace's mount table and not in the test's, and its deletion must
unmount it there.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from ..conftest import Kubectl
from ..support.agent import AgentProcess
from ..support.node import mounted_in
from ..support.wait import eventually
from .loops import LoopDevices, blkid, is_mounted
from .test_mounts import MOUNT_WAIT, mount_yaml


def _start_agent(agent_factory: Callable[..., AgentProcess], node: str, node_init: int) -> None:
    """The agent as the chart runs it: Mounts in the mount namespace of the node's init."""
    extra = ("--api-bind", "", "--mount-namespace-pid", str(node_init))
    agent_factory(node, inventory_interval=1.0, extra_args=extra).start()


def _phase(kubectl: Kubectl, name: str) -> str | None:
    out = kubectl("get", "mounts.vapor.io", name, "-o", "json").stdout
    return json.loads(out).get("status", {}).get("phase")


async def test_mounts_are_made_and_removed_in_the_nodes_namespace(
    loops: LoopDevices,
    tmp_path: Path,
    agent_factory: Callable[..., AgentProcess],
    mounts_of_node: str,
    kubectl: Kubectl,
    node_init: int,
) -> None:
    node = mounts_of_node
    device, target = loops.make(), tmp_path / "in-node"
    _start_agent(agent_factory, node, node_init)
    name = f"{node}-ns"
    kubectl.apply(mount_yaml(name, node, device, target, "ext4", label="NSDATA"))
    await eventually(lambda: mounted_in(node_init, target), MOUNT_WAIT, "mounted in the node's namespace")
    assert not is_mounted(target)  # the agent's own namespace does not have it
    assert blkid(device)["LABEL"] == "NSDATA"  # formatted on the way, behind the guards that read the node's table
    await eventually(lambda: _phase(kubectl, name) == "Mounted", MOUNT_WAIT, "status Mounted")

    kubectl("delete", "mounts.vapor.io", name, "--wait=true", "--timeout=60s")
    assert not mounted_in(node_init, target)


async def test_a_device_mounted_in_the_node_is_not_mounted_twice(
    loops: LoopDevices,
    tmp_path: Path,
    agent_factory: Callable[..., AgentProcess],
    mounts_of_node: str,
    kubectl: Kubectl,
    node_init: int,
) -> None:
    """The guard reads the node's mount table: a device the node has mounted is refused, not mounted again."""
    node = mounts_of_node
    device, elsewhere, target = loops.make(), tmp_path / "by-hand", tmp_path / "wanted"
    subprocess.run(["mkfs.ext4", "-q", device], check=True)
    elsewhere.mkdir()
    subprocess.run(["nsenter", "-t", str(node_init), "-m", "mount", device, str(elsewhere)], check=True)
    try:
        _start_agent(agent_factory, node, node_init)
        name = f"{node}-twice"
        kubectl.apply(mount_yaml(name, node, device, target, "ext4"))

        await eventually(lambda: _phase(kubectl, name) == "Failed", MOUNT_WAIT, "the Mount refused")
        status = json.loads(kubectl("get", "mounts.vapor.io", name, "-o", "json").stdout)["status"]
        assert f"already mounted at {elsewhere}" in status["message"]
        assert not mounted_in(node_init, target)
    finally:
        subprocess.run(["nsenter", "-t", str(node_init), "-m", "umount", str(elsewhere)], check=False)
