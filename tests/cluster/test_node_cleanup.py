"""Stopping the nodes removes what they made on the machine, also when one fails to start (marker cluster)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from vapor.devenv import ControlPlane, ControlPlaneError, Nodes, binaries
from vapor.devenv.leftovers import cgroup_hierarchies, mounts_under
from vapor.devenv.processes import alive

from ..conftest import Kubectl
from ..support.workloads import deployment
from .conftest import Cluster

pytestmark = pytest.mark.cluster


def node_leftovers(state: dict[str, Any], netns: list[str]) -> list[str]:
    """What of one node's recorded state is still on the machine."""
    root = Path(state["root"])
    found = [f"process {name}" for name, pid in state["pids"].items() if alive(pid)]
    found += [f"mount {point}" for point in mounts_under(root)]
    found += [f"folder {root}"] if root.exists() else []
    found += [f"netns {state['netns']}"] if state["netns"] in netns else []
    found += [f"cgroup {h.name}" for h in cgroup_hierarchies() if (h / str(state["cgroup_root"])).exists()]
    logs = Path("/var/log/containers")
    if logs.is_dir():
        found += [f"link {link}" for link in logs.iterdir() if str(os.readlink(link)).startswith(f"{root}/")]
    return found


def leftovers(state: dict[str, Any]) -> list[str]:
    """What of the nodes' recorded state (``Nodes.state``) is still on the machine."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    found = [f"process {name}" for name, pid in state["pids"].items() if alive(pid)]
    found += [f"netns {state['hub']['netns']}"] if state["hub"]["netns"] in netns else []
    link = subprocess.run(["ip", "link", "show", state["hub"]["link"]], capture_output=True)
    found += [f"veth {state['hub']['link']}"] if link.returncode == 0 else []
    for node in state["nodes"]:
        found += node_leftovers(node, netns)
    return found


def test_stopping_a_node_with_running_pods_leaves_nothing_behind(tmp_path: Path) -> None:
    with ControlPlane(tmp_path / "cp", service_accounts=True) as cp:
        nodes = Nodes(cp)
        with nodes:
            cluster = Cluster(cp, nodes, Kubectl(cp))
            cluster.kubectl("create", "namespace", "work")
            cluster.kubectl.apply(deployment("busy", cluster.image(["/bin/sleep", "3600"]), replicas=2), "-n", "work")
            cluster.wait_running("work", "app=busy", 2)
            state = nodes.state
            assert len(leftovers(state)) > 6, "the node's parts are there while it runs (the check sees them)"
        assert leftovers(state) == []
        assert not nodes.state_file.exists()
        [node] = state["nodes"]
        assert cp.kubectl_run("get", "node", node["name"], check=False).returncode != 0, "the Node object is deleted"


def test_nodes_whose_kubelets_fail_to_start_are_removed_with_the_error(tmp_path: Path) -> None:
    real = binaries("node")
    bins = tmp_path / "bin"
    bins.mkdir()
    for name in ("kube-scheduler", "kube-controller-manager", "kube-proxy"):
        (bins / name).symlink_to(real / name)
    kubelet = bins / "kubelet"
    kubelet.write_text("#!/bin/sh\necho 'kubelet: this one cannot start' >&2\nexit 3\n")
    kubelet.chmod(0o755)
    with ControlPlane(tmp_path / "cp", service_accounts=True) as cp:
        nodes = Nodes(cp, 2, bin_dir=bins)
        with pytest.raises(ControlPlaneError, match=r"(?s)kubelet of .* exited.*this one cannot start"):
            nodes.up(timeout=30)
        state = nodes.state
        assert set(state["pids"]) == {"kube-scheduler", "kube-controller-manager", "forward"}
        assert [set(node["pids"]) for node in state["nodes"]] == [{"containerd", "kubelet", "kube-proxy"}] * 2
        assert leftovers(state) == []
        assert not nodes.state_file.exists()
