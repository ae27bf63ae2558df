"""One kubelet node of a ``Nodes`` set: its network namespace, containerd, kubelet and kube-proxy.

In a network namespace of its own on the nodes' hub bridge (nodenet.py)
the node runs containerd (containerd.py) and a kubelet that registers as the
Node ``name`` at its uplink address and runs pods through that containerd,
on a pod subnet of its own (its CNI bridge and host-local range); its probes
reach the pods on that bridge. The kubelet reaches the API server through the
forwarder every node shares (``apiserver``: on the machine's end of the hub).
kube-proxy runs in the same namespace (kubeproxy.py: Services, the
``kubernetes`` one included), and the other nodes' pod subnets are routed to
those nodes over the hub. What the nodes share (the hub, the forwarder, the
scheduler, the controller manager, cluster DNS) is ``Nodes``'s (nodes.py).

What this machine needs (cgroup v1 with a cgroup2 hybrid mount, PID 1 not
systemd): ``failCgroupV1: false`` and ``cgroupDriver: cgroupfs``, and the
pods' cgroups under a ``cgroupRoot`` of their own (``/<name>``, made here in
every hierarchy), so that two nodes or runs never share ``/kubepods``.

The nodes share the machine's files; ``private(path)`` gives a node its own
copy of a folder (bound over ``path`` in the node's mount namespace, where
containerd, the kubelet and so the pods live), as a real host has its own
/run/libvirt or agent state folder.

``down()`` removes everything the node made, also after a failed start: the
processes, the pods, the mounts under its folder, its cgroups, its network
namespace and the kubelet's links in /var/log/containers.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import yaml

from . import clusterdns, kubeproxy, leftovers, nodenet
from .containerd import Runtime
from .controlplane import SERVICE_CIDR, ControlPlane, ControlPlaneError
from .processes import alive, free_port, spawn, terminate

log = logging.getLogger("vapor.devenv")

CONTAINER_LOGS = Path("/var/log/containers")  # where the kubelet links each container's log, whatever its root
PROCESSES = ("containerd", "kubelet", "kube-proxy")


class Node:
    """One kubelet node with containerd and kube-proxy on the hub ``hub``, the ``index``-th of its set."""

    def __init__(
        self,
        cp: ControlPlane,
        hub: nodenet.Hub,
        index: int,
        *,
        apiserver: str,
        name: str | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.cp = cp
        self.hub = hub
        self.index = index
        self.apiserver = apiserver  # host:port of the forwarder to the API server
        self._state: dict[str, Any] = state or {}
        self.name = self._state.get("name") or name or f"vapor-node-{uuid.uuid4().hex[:6]}"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def state(self) -> dict[str, Any]:
        """What ``start`` recorded: name, address, pod subnet, root folder, netns, cgroup root, pids."""
        return copy.deepcopy(self._state)

    @property
    def address(self) -> str:
        """The node's address (its uplink on the hub; the Node's InternalIP)."""
        return str(self._state["address"])

    @property
    def root(self) -> Path:
        """The node's folder (containerd, the kubelet's root, CNI), made by ``start``."""
        return Path(self._state["root"])

    @property
    def runtime(self) -> Runtime:
        """The node's containerd (``import_image``, ``ctr``)."""
        return Runtime(self.root / "containerd", self._log("containerd"), self._state["pod_subnet"])

    @property
    def netns(self) -> str:
        """The node's network namespace (``ip netns exec <netns> ...``)."""
        return str(self._state["netns"])

    @property
    def mount_namespace(self) -> Path:
        """The node's mount namespace (a bind mount of it), shared by containerd, the kubelet and its pods."""
        return self.root / "mntns"

    def enter(self) -> list[str]:
        """The command prefix that runs a program in the node's mount and network namespaces."""
        return ["nsenter", f"--mount={self.mount_namespace}", f"--net=/run/netns/{self.netns}"]

    def private(self, path: Path) -> Path:
        """Give the node its own (empty) ``path`` folder; the folder on the machine that holds it."""
        own = self.root / "private" / str(path).strip("/").replace("/", "_")
        own.mkdir(parents=True, exist_ok=True)
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([*self.enter(), "mount", "--bind", str(own), str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            raise ControlPlaneError(f"mount --bind {own} {path} in node {self.name}: {done.stderr.strip()}")
        return own

    # -- lifecycle -------------------------------------------------------------
    def plan(self) -> dict[str, Any]:
        """Choose the node's names, folder and addresses (recorded before anything is made)."""
        tag = self.name[-6:]
        self._state = {
            "name": self.name,
            "index": self.index,
            "root": tempfile.mkdtemp(prefix="vnode-", dir="/tmp"),
            "netns": self.name,
            "port": f"n{tag}",
            "address": self.hub.address(self.index),
            "pod_subnet": nodenet.pod_subnet(self.index),
            "cgroup_root": self.name,
            "pids": {},
        }
        return self._state

    def start(self, bins: Path, peers: dict[str, str], *, detach: bool, saved: Any) -> None:
        """Make the namespace and start containerd, the kubelet and kube-proxy; ``saved()`` records the state."""
        self._saved = saved
        nodenet.join(self.hub, self.netns, self._state["port"], self.index)
        nodenet.route_services(self.netns, SERVICE_CIDR)
        nodenet.route_pods(self.netns, peers)
        runtime = self.runtime
        # A mount namespace of the node's own, its / a shared mount (this machine's / is private), for containerd
        # and the kubelet: a pod may then mount a host path with propagation, as the chart's agent mounts the
        # host's / (containerd otherwise refuses: path "/" is mounted on "/" but it is not a shared or slave
        # mount), and what they mount for pods stays in that namespace and goes with it.
        self.mount_namespace.touch()
        subprocess.run(
            ["unshare", f"--mount={self.mount_namespace}", "--propagation", "shared", "true"],
            check=True,
            capture_output=True,
        )
        self._spawn("containerd", [*self.enter(), *runtime.argv()], detach)
        runtime.wait_ready(lambda: alive(self._state["pids"]["containerd"]))
        runtime.import_pause()
        self._make_cgroup_root()
        self._spawn("kubelet", self._kubelet_argv(bins), detach)
        proxy = kubeproxy.argv(bins / "kube-proxy", self.root, name=self.name, address=self.address)
        self._spawn("kube-proxy", [*self.enter(), *proxy], detach)

    def down(self, *, timeout: float = 20.0) -> None:
        """Stop and remove everything the node made (see the module's docstring); safe to call again."""
        if not self._state:
            return
        pids: dict[str, int] = self._state.get("pids", {})
        # The kubelet first: it would restart what goes next.
        for name in ("kubelet", "kube-proxy"):
            if name in pids and alive(pids[name]):
                terminate(pids[name], timeout, self._procs.get(name))
        root = self.root
        runtime = self.runtime
        if "containerd" in pids and alive(pids["containerd"]):
            runtime.remove_pods()
            terminate(pids["containerd"], timeout, self._procs.get("containerd"))
        leftovers.kill_shims(runtime.socket)
        leftovers.unmount_all_under(root)
        busy = leftovers.remove_cgroup(self._state["cgroup_root"])
        if busy:
            log.warning("cgroups still busy after node %s stopped: %s", self.name, ", ".join(map(str, busy)))
        nodenet.remove(self.netns)
        self._remove_container_logs(root)
        shutil.rmtree(root, ignore_errors=True)
        if self.cp.running():  # the Node object would stay NotReady and keep its pods bound to it
            self.cp.kubectl_run("delete", "node", self.name, "--ignore-not-found", check=False)
        self._procs.clear()

    def ready(self) -> bool:
        """Whether the Node reports Ready=True."""
        found = self.cp.kubectl_run("get", "node", self.name, "-o", "json", check=False)
        if found.returncode != 0:
            return False
        conditions = json.loads(found.stdout).get("status", {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def check_running(self) -> None:
        """Raise with its log if one of the node's processes exited."""
        for name, pid in self._state.get("pids", {}).items():
            if not alive(pid) or (name in self._procs and self._procs[name].poll() is not None):
                raise ControlPlaneError(f"{name} of {self.name} exited while it started; its log:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 25) -> str:
        """The end of the log of the node's ``name`` process."""
        try:
            return "\n".join(self._log(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- internals -------------------------------------------------------------
    def _log(self, name: str) -> Path:
        path = self.cp.state_dir / "logs" / f"{self.name}-{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _spawn(self, name: str, argv: list[str], detach: bool) -> None:
        proc = spawn(argv, self._log(name), detach=detach, cwd=self.root)
        self._procs[name] = proc
        self._state["pids"][name] = proc.pid
        self._saved()
        log.info("started %s of %s (pid %d, log %s)", name, self.name, proc.pid, self._log(name))

    def _make_cgroup_root(self) -> None:
        """``/<cgroup_root>`` in each hierarchy (the kubelet requires it to exist); cpuset gets its parent's sets."""
        for hierarchy in leftovers.cgroup_hierarchies():
            folder = hierarchy / self._state["cgroup_root"]
            folder.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (hierarchy / name).exists():
                    (folder / name).write_text((hierarchy / name).read_text())

    def _kubelet_argv(self, bins: Path) -> list[str]:
        root, address = self.root, self.address
        for folder in ("kubelet", "manifests", "pod-logs"):
            (root / folder).mkdir(exist_ok=True)
        # The admin kubeconfig, through the forwarder on the hub; the certificate names localhost.
        kubeconfig = yaml.safe_load(self.cp.kubeconfig.read_text())
        for cluster in kubeconfig["clusters"]:
            cluster["cluster"].update(server=f"https://{self.apiserver}", **{"tls-server-name": "localhost"})
        (root / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        (root / "kubeconfig").chmod(0o600)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This machine: cgroup v1 (hybrid), no systemd as PID 1, swap allowed.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self._state['cgroup_root']}",
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.runtime.socket}",
            "staticPodPath": str(root / "manifests"),
            "podLogsDir": str(root / "pod-logs"),
            "address": address,
            "port": free_port(),
            "healthzPort": free_port(),
            "readOnlyPort": 0,
            # The API server's admin certificate (system:masters) is the only client it takes, for logs and exec.
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.cp.state_dir / "pki" / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "makeIPTablesUtilChains": False,  # kube-proxy's chains are enough (in the node's own tables)
            "clusterDNS": [clusterdns.SERVICE_ADDRESS],
            "clusterDomain": clusterdns.DOMAIN,
            # A development node evicts nothing for a full disk of someone else's files.
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        }
        (root / "kubelet.yaml").write_text(yaml.safe_dump(config))
        return [
            *self.enter(),
            str(bins / "kubelet"),
            f"--config={root / 'kubelet.yaml'}",
            f"--kubeconfig={root / 'kubeconfig'}",
            f"--root-dir={root / 'kubelet'}",
            f"--cert-dir={root / 'kubelet-pki'}",
            f"--hostname-override={self.name}",
            f"--node-ip={address}",
            "--v=1",
        ]

    def _remove_container_logs(self, root: Path) -> None:
        """The kubelet's links in /var/log/containers into ``root``."""
        if CONTAINER_LOGS.is_dir():
            for link in CONTAINER_LOGS.iterdir():
                if link.is_symlink() and str(link.readlink()).startswith(f"{root}/"):
                    link.unlink(missing_ok=True)
