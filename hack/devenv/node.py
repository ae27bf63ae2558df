"""A real Kubernetes node on this machine, added to a ``ControlPlane``: kubelet, containerd, scheduler, controllers.

``Node(cp)`` starts kube-scheduler and kube-controller-manager against the
control plane (pods get placed; namespaces, owners and ReplicaSets get
reconciled), and in a network namespace of its own (nodenet.py: a veth
uplink to the machine) containerd (containerd.py) and a kubelet that
registers as the Node ``name`` at its uplink address and runs pods through
that containerd; its probes reach the pods on the namespace's CNI bridge. The
kubelet reaches the API server through a forwarder (forward.py) on the
machine's end of the uplink. kube-proxy runs in the same namespace
(kubeproxy.py: Services, the ``kubernetes`` one included), and once the Node
is Ready, CoreDNS (clusterdns.py) serves the cluster's names. The binaries are built at the control plane's
version by ``hack/kube-binaries.sh node`` and cached.

What this machine needs (cgroup v1 with a cgroup2 hybrid mount, PID 1 not
systemd): ``failCgroupV1: false`` and ``cgroupDriver: cgroupfs``, and the
pods' cgroups under a ``cgroupRoot`` of their own (``/<name>``, made here in
every hierarchy), so that two nodes or runs never share ``/kubepods``.

Used as a context manager it lives as long as the ``with`` block; ``up(detach=True)``
leaves it running for ``make cluster-up`` (its state in ``node.json`` beside
the control plane's), and ``down()`` from any process removes everything it
made, also after a failed start: the processes, the pods,
the mounts under its folder, its cgroups, its network namespace, the kubelet's
links in /var/log/containers and the folders the kubelet and the CNI library
make outside the node's folder (/var/lib/kubelet/device-plugins, /var/lib/cni)
when they were not there before.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from . import clusterdns, kubeproxy, leftovers, nodenet
from .containerd import CNI_CACHE, Runtime
from .controlplane import SERVICE_CIDR, ControlPlane, ControlPlaneError, binaries
from .processes import alive, free_port, spawn, terminate

log = logging.getLogger("vapor.devenv")

# Folders the kubelet uses whatever its --root-dir says.
CONTAINER_LOGS = Path("/var/log/containers")
KUBELET_HOME = Path("/var/lib/kubelet")
CONTROLLERS = ("kube-scheduler", "kube-controller-manager")
APISERVER_PORT = 6443  # where the forwarder listens on the machine's end of the uplink


class Node:
    """One kubelet node with containerd, plus the scheduler and controller manager, for ``cp``."""

    def __init__(self, cp: ControlPlane, *, name: str | None = None, bin_dir: Path | None = None) -> None:
        self.cp = cp
        self.name = name or f"vapor-node-{uuid.uuid4().hex[:6]}"
        self._bin_dir = bin_dir
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._state: dict[str, Any] = {}
        self._reused = False

    @property
    def state_file(self) -> Path:
        """Where a node started with ``detach`` is recorded (beside the control plane's state)."""
        return self.cp.state_dir / "node.json"

    @property
    def state(self) -> dict[str, Any]:
        """What ``up`` recorded: name, root folder, netns, cgroup root, pids, seconds to Ready (kept after ``down``)."""
        return copy.deepcopy(self._state)

    @property
    def root(self) -> Path:
        """The node's folder (containerd, the kubelet's root, CNI), made by ``up``."""
        return Path(self._state["root"])

    @property
    def runtime(self) -> Runtime:
        """The node's containerd (``import_image``, ``ctr``)."""
        return Runtime(self.root / "containerd", self.cp.state_dir / "logs" / "containerd.log")

    @property
    def mount_namespace(self) -> Path:
        """The node's mount namespace (a bind mount of it), shared by containerd and the kubelet."""
        return self.root / "mntns"

    def _enter(self) -> list[str]:
        """The command prefix that runs a program in the node's mount and network namespaces."""
        return ["nsenter", f"--mount={self.mount_namespace}", f"--net=/run/netns/{self._state['netns']}"]

    @property
    def static_pods(self) -> Path:
        """Where the kubelet reads static pod manifests."""
        return self.root / "manifests"

    # -- lifecycle -------------------------------------------------------------
    def up(self, *, detach: bool = False, timeout: float = 120.0) -> Node:
        """Start it all and wait until the Node is Ready; a recorded node whose processes run is reused."""
        if self.state_file.exists():
            self._state = json.loads(self.state_file.read_text())
            pids = self._state.get("pids", {})
            if pids and all(alive(pid) for pid in pids.values()):
                self.name, self._reused = self._state["name"], True
                log.info("node %s already running", self.name)
                self.wait_ready(timeout)
                return self
            self.down()  # what a crashed run left
        if not self.cp.service_accounts:
            raise ControlPlaneError("a Node needs its control plane made with service_accounts=True (see ControlPlane)")
        started = time.monotonic()
        bins = self._bin_dir or binaries("node")
        self._state = {
            "name": self.name,
            "root": tempfile.mkdtemp(prefix="vnode-", dir="/tmp"),
            "netns": self.name,
            "link": f"vn{self.name[-6:]}",
            "cgroup_root": self.name,
            "made": [str(p) for p in (CONTAINER_LOGS, KUBELET_HOME, CNI_CACHE.parent) if not p.exists()],
            "pids": {},
        }
        self._save()
        try:
            self._start(bins, detach)
            self.wait_ready(timeout)
            ready = time.monotonic()
            clusterdns.install(self.cp, self.runtime, binaries("coredns") / "coredns")
            clusterdns.wait_ready(self.cp, timeout)
        except BaseException:
            self.down()
            raise
        self._state["seconds"] = {"node_ready": ready - started, "dns_ready": time.monotonic() - ready}
        self._save()
        log.info("node %s Ready in %.1fs, cluster DNS %.1fs later", self.name, *self._state["seconds"].values())
        return self

    def _start(self, bins: Path, detach: bool) -> None:
        for name in CONTROLLERS:
            self._spawn(name, self._controller_argv(bins, name), detach)
        uplink = nodenet.make(self._state["netns"], self._state["link"])
        self._state.update(host_address=uplink.host, address=uplink.node)
        nodenet.route_services(self._state["netns"], SERVICE_CIDR)
        kubeproxy.publish_apiserver(self.cp, uplink.host, APISERVER_PORT)
        apiserver = self.cp.url.rpartition(":")[2]
        listen = f"{uplink.host}:{APISERVER_PORT}"
        self._spawn("forward", [sys.executable, "-m", "vapor.devenv.forward", listen, f"127.0.0.1:{apiserver}"], detach)
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
        self._spawn("containerd", [*self._enter(), *runtime.argv()], detach)
        runtime.wait_ready(lambda: alive(self._state["pids"]["containerd"]))
        runtime.import_pause()
        self._make_cgroup_root()
        self._spawn("kubelet", self._kubelet_argv(bins), detach)
        proxy = kubeproxy.argv(bins / "kube-proxy", self.root, name=self.name, address=self._state["address"])
        self._spawn("kube-proxy", [*self._enter(), *proxy], detach)

    def down(self, *, timeout: float = 20.0) -> None:
        """Stop and remove everything the node made (see the module's docstring); safe to call again."""
        if not self._state and self.state_file.exists():
            self._state = json.loads(self.state_file.read_text())
        if not self._state:
            return
        pids: dict[str, int] = self._state.get("pids", {})
        # The kubelet first: it would restart what goes next.
        for name in ("kubelet", "kube-proxy", "forward", *CONTROLLERS):
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
            log.warning("cgroups still busy after the node stopped: %s", ", ".join(map(str, busy)))
        if "link" in self._state:
            nodenet.remove(self._state["netns"], self._state["link"])
        self._remove_outside_files(root)
        shutil.rmtree(root, ignore_errors=True)
        if self.cp.running():  # the Node object would stay NotReady and keep its pods bound to it
            self.cp.kubectl_run("delete", "node", self._state["name"], "--ignore-not-found", check=False)
        self.state_file.unlink(missing_ok=True)
        self._procs.clear()

    def __enter__(self) -> Node:
        return self.up()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._reused:
            self.down()

    def ready(self) -> bool:
        """Whether the Node reports Ready=True."""
        found = self.cp.kubectl_run("get", "node", self.name, "-o", "json", check=False)
        if found.returncode != 0:
            return False
        conditions = json.loads(found.stdout).get("status", {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until the Node is Ready; a process that exits meanwhile ends the wait with its log."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            for name, pid in self._state.get("pids", {}).items():
                if not alive(pid) or (name in self._procs and self._procs[name].poll() is not None):
                    raise ControlPlaneError(f"{name} exited while the node started; its log:\n{self._tail(name)}")
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"node {self.name} not Ready after {timeout:.0f}s:\n{self._tail('kubelet')}")
            time.sleep(0.5)

    # -- internals -------------------------------------------------------------
    def _save(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(self._state, indent=2))

    def _log(self, name: str) -> Path:
        path = self.cp.state_dir / "logs" / f"{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _tail(self, name: str, lines: int = 25) -> str:
        try:
            return "\n".join(self._log(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _spawn(self, name: str, argv: list[str], detach: bool) -> None:
        proc = spawn(argv, self._log(name), detach=detach, cwd=self.root)
        self._procs[name] = proc
        self._state["pids"][name] = proc.pid
        self._save()
        log.info("started %s (pid %d, log %s)", name, proc.pid, self._log(name))

    def _controller_argv(self, bins: Path, name: str) -> list[str]:
        pki = self.cp.state_dir / "pki"
        argv = [str(bins / name), f"--kubeconfig={self.cp.kubeconfig}", "--leader-elect=false", "--secure-port=0"]
        if name == "kube-controller-manager":
            argv += [
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=false",
            ]
        return [*argv, "--v=1"]

    def _make_cgroup_root(self) -> None:
        """``/<cgroup_root>`` in each hierarchy (the kubelet requires it to exist); cpuset gets its parent's sets."""
        for hierarchy in leftovers.cgroup_hierarchies():
            folder = hierarchy / self._state["cgroup_root"]
            folder.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (hierarchy / name).exists():
                    (folder / name).write_text((hierarchy / name).read_text())

    def _kubelet_argv(self, bins: Path) -> list[str]:
        root, address = self.root, self._state["address"]
        for folder in ("kubelet", "manifests", "pod-logs"):
            (root / folder).mkdir(exist_ok=True)
        # The admin kubeconfig, through the forwarder on the uplink; the certificate names localhost.
        kubeconfig = yaml.safe_load(self.cp.kubeconfig.read_text())
        for cluster in kubeconfig["clusters"]:
            cluster["cluster"].update(
                server=f"https://{self._state['host_address']}:{APISERVER_PORT}", **{"tls-server-name": "localhost"}
            )
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
            *self._enter(),
            str(bins / "kubelet"),
            f"--config={root / 'kubelet.yaml'}",
            f"--kubeconfig={root / 'kubeconfig'}",
            f"--root-dir={root / 'kubelet'}",
            f"--cert-dir={root / 'kubelet-pki'}",
            f"--hostname-override={self.name}",
            f"--node-ip={address}",
            "--v=1",
        ]

    def _remove_outside_files(self, root: Path) -> None:
        """The kubelet's links in /var/log/containers into ``root``, and the folders it made outside it."""
        if CONTAINER_LOGS.is_dir():
            for link in CONTAINER_LOGS.iterdir():
                if link.is_symlink() and str(link.readlink()).startswith(f"{root}/"):
                    link.unlink(missing_ok=True)
        for made in map(Path, self._state.get("made", [])):
            if made == CONTAINER_LOGS:
                if made.is_dir() and not any(made.iterdir()):
                    made.rmdir()
            else:
                shutil.rmtree(made, ignore_errors=True)
