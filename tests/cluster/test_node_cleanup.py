"""Stopping a node removes what it made on the machine, also when it fails to start (marker cluster)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from vapor.devenv import ControlPlane, ControlPlaneError, Node, binaries
from vapor.devenv.leftovers import cgroup_hierarchies, mounts_under
from vapor.devenv.processes import alive

from ..conftest import Kubectl
from ..support.workloads import deployment
from .conftest import Cluster

pytestmark = pytest.mark.cluster


def leftovers(state: dict[str, Any]) -> list[str]:
    """What of a node's recorded state is still on the machine."""
    root = Path(state["root"])
    found = [f"process {name}" for name, pid in state["pids"].items() if alive(pid)]
    found += [f"mount {point}" for point in mounts_under(root)]
    found += [f"folder {root}"] if root.exists() else []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    found += [f"netns {state['netns']}"] if state["netns"] in netns else []
    link = subprocess.run(["ip", "link", "show", state["link"]], capture_output=True)
    found += [f"veth {state['link']}"] if link.returncode == 0 else []
    found += [f"cgroup {h.name}" for h in cgroup_hierarchies() if (h / str(state["cgroup_root"])).exists()]
    logs = Path("/var/log/containers")
    if logs.is_dir():
        found += [f"link {link}" for link in logs.iterdir() if str(os.readlink(link)).startswith(f"{root}/")]
    return found


def test_stopping_a_node_with_running_pods_leaves_nothing_behind(tmp_path: Path) -> None:
    with ControlPlane(tmp_path / "cp", service_accounts=True) as cp:
        node = Node(cp)
        with node:
            cluster = Cluster(cp, node, Kubectl(cp))
            cluster.kubectl("create", "namespace", "work")
            cluster.kubectl.apply(deployment("busy", cluster.image(["/bin/sleep", "3600"]), replicas=2), "-n", "work")
            cluster.wait_running("work", "app=busy", 2)
            state = node.state
            assert len(leftovers(state)) > 4, "the node's parts are there while it runs (the check sees them)"
        assert leftovers(state) == []
        assert not node.state_file.exists()
        assert cp.kubectl_run("get", "node", state["name"], check=False).returncode != 0, "the Node object is deleted"


def test_a_node_whose_kubelet_fails_to_start_is_removed_with_the_error(tmp_path: Path) -> None:
    real = binaries("node")
    bins = tmp_path / "bin"
    bins.mkdir()
    for name in ("kube-scheduler", "kube-controller-manager", "kube-proxy"):
        (bins / name).symlink_to(real / name)
    kubelet = bins / "kubelet"
    kubelet.write_text("#!/bin/sh\necho 'kubelet: this one cannot start' >&2\nexit 3\n")
    kubelet.chmod(0o755)
    with ControlPlane(tmp_path / "cp", service_accounts=True) as cp:
        node = Node(cp, bin_dir=bins)
        with pytest.raises(ControlPlaneError, match=r"(?s)kubelet exited.*this one cannot start"):
            node.up(timeout=30)
        started = {"kube-scheduler", "kube-controller-manager", "forward", "containerd", "kubelet", "kube-proxy"}
        assert set(node.state["pids"]) == started
        assert leftovers(node.state) == []
        assert not node.state_file.exists()
