"""A control plane's kubelet nodes (``count`` of them, started together) and what they share.

``Nodes(cp, count=2)`` starts kube-scheduler and kube-controller-manager
against the control plane (pods get placed; namespaces, owners and
ReplicaSets get reconciled), the nodes' hub (nodenet.py: a bridge in a
network namespace of its own, the machine on it by one veth), one forwarder
to the API server on the machine's end of the hub (forward.py), which every
node reaches at the same address and which the ``kubernetes`` Service names
(kubeproxy.publish_apiserver), then every ``Node`` (node.py) at once, each in
its own network namespace with its containerd, kubelet, kube-proxy and pod
subnet, routed to the others' over the hub. Once every Node is Ready, CoreDNS
(clusterdns.py) serves the cluster's names. The binaries are built at the
control plane's version by ``hack/kube-binaries.sh node`` and cached.

Used as a context manager it lives as long as the ``with`` block; ``up(detach=True)``
leaves it running for ``make cluster-up`` (its state in ``nodes.json`` beside
the control plane's), and ``down()`` from any process removes everything it
made, also after a failed start: every node (node.py), the shared processes,
the hub and the folders the kubelet and the CNI library make outside the
nodes' folders (/var/lib/kubelet/device-plugins, /var/lib/cni) when they
were not there before.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from . import clusterdns, kubeproxy, nodenet
from .containerd import CNI_CACHE
from .controlplane import ControlPlane, ControlPlaneError, binaries
from .node import CONTAINER_LOGS, Node
from .processes import alive, spawn, terminate

log = logging.getLogger("vapor.devenv")

KUBELET_HOME = Path("/var/lib/kubelet")  # the kubelet makes device-plugins there whatever its --root-dir says
CONTROLLERS = ("kube-scheduler", "kube-controller-manager")
APISERVER_PORT = 6443  # where the forwarder listens on the machine's end of the hub


class Nodes:
    """``count`` kubelet nodes with containerd, plus the scheduler, the controller manager and DNS, for ``cp``."""

    def __init__(self, cp: ControlPlane, count: int = 1, *, bin_dir: Path | None = None) -> None:
        if count < 1:
            raise ValueError("a cluster has one node or more")
        self.cp = cp
        self.count = count
        self._bin_dir = bin_dir
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._state: dict[str, Any] = {}
        self.nodes: list[Node] = []
        self._reused = False
        self._saving = threading.Lock()

    @property
    def state_file(self) -> Path:
        """Where nodes started with ``detach`` are recorded (beside the control plane's state)."""
        return self.cp.state_dir / "nodes.json"

    @property
    def state(self) -> dict[str, Any]:
        """What ``up`` recorded: the hub, the shared pids, each node's state, seconds to Ready (kept after ``down``)."""
        state = copy.deepcopy(self._state)
        state["nodes"] = [node.state for node in self.nodes]
        return state

    @property
    def hub(self) -> nodenet.Hub:
        """The nodes' hub network (``hub.host``: the machine's address on it)."""
        return nodenet.Hub(**self._state["hub"])

    @property
    def apiserver(self) -> str:
        """host:port where every node (and every pod, as ``kubernetes.default``) reaches the API server."""
        return f"{self.hub.host}:{APISERVER_PORT}"

    def __getitem__(self, index: int) -> Node:
        return self.nodes[index]

    def __len__(self) -> int:
        return len(self.nodes)

    # -- lifecycle -------------------------------------------------------------
    def up(self, *, detach: bool = False, timeout: float = 120.0) -> Nodes:
        """Start it all and wait until every Node is Ready; recorded nodes whose processes run are reused."""
        if self.state_file.exists():
            self._load()
            if self._all_alive():
                self._reused = True
                log.info("nodes %s already running", ", ".join(n.name for n in self.nodes))
                self.wait_ready(timeout)
                return self
            self.down()  # what a crashed run left
        if not self.cp.service_accounts:
            raise ControlPlaneError("nodes need their control plane made with service_accounts=True (see ControlPlane)")
        started = time.monotonic()
        bins = self._bin_dir or binaries("node")
        tag = uuid.uuid4().hex[:6]
        self._state = {
            "hub": {"netns": f"vapor-hub-{tag}", "link": f"vh{tag}", "subnet": ""},
            "made": [str(p) for p in (CONTAINER_LOGS, KUBELET_HOME, CNI_CACHE.parent) if not p.exists()],
            "pids": {},
        }
        self._save()
        try:
            hub = nodenet.make_hub(self._state["hub"]["netns"], self._state["hub"]["link"])
            self._state["hub"]["subnet"] = hub.subnet
            self.nodes = [Node(self.cp, hub, i, apiserver=self.apiserver) for i in range(self.count)]
            for node in self.nodes:
                node.plan()
            self._save()
            self._start_shared(bins, detach)
            with ThreadPoolExecutor(self.count) as pool:
                for done in [pool.submit(self._start_node, node, bins, detach) for node in self.nodes]:
                    done.result()
            self.wait_ready(timeout)
            ready = time.monotonic()
            clusterdns.install(self.cp, [node.runtime for node in self.nodes], binaries("coredns") / "coredns")
            clusterdns.wait_ready(self.cp, timeout)
        except BaseException:
            self.down()
            raise
        self._state["seconds"] = {"nodes_ready": ready - started, "dns_ready": time.monotonic() - ready}
        self._save()
        log.info("%d node(s) Ready in %.1fs, cluster DNS %.1fs later", self.count, *self._state["seconds"].values())
        return self

    def _start_shared(self, bins: Path, detach: bool) -> None:
        for name in CONTROLLERS:
            self._spawn(name, self._controller_argv(bins, name), detach)
        kubeproxy.publish_apiserver(self.cp, self.hub.host, APISERVER_PORT)
        apiserver = self.cp.url.rpartition(":")[2]
        forward = [sys.executable, "-m", "vapor.devenv.forward", self.apiserver, f"127.0.0.1:{apiserver}"]
        self._spawn("forward", forward, detach)

    def _start_node(self, node: Node, bins: Path, detach: bool) -> None:
        peers = {other.state["pod_subnet"]: other.address for other in self.nodes if other is not node}
        node.start(bins, peers, detach=detach, saved=self._save)

    def down(self, *, timeout: float = 20.0) -> None:
        """Stop and remove everything the nodes made (see the module's docstring); safe to call again."""
        if not self._state and self.state_file.exists():
            self._load()
        if not self._state:
            return
        with ThreadPoolExecutor(max(1, len(self.nodes))) as pool:
            list(pool.map(lambda node: node.down(timeout=timeout), self.nodes))
        pids: dict[str, int] = self._state.get("pids", {})
        for name in ("forward", *CONTROLLERS):
            if name in pids and alive(pids[name]):
                terminate(pids[name], timeout, self._procs.get(name))
        hub = self._state["hub"]
        nodenet.remove(hub["netns"])
        nodenet.remove_link(hub["link"])
        for made in map(Path, self._state.get("made", [])):
            if made == CONTAINER_LOGS:
                if made.is_dir() and not any(made.iterdir()):
                    made.rmdir()
            else:
                shutil.rmtree(made, ignore_errors=True)
        self.state_file.unlink(missing_ok=True)
        self._procs.clear()

    def __enter__(self) -> Nodes:
        return self.up()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._reused:
            self.down()

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until every Node is Ready; a process that exits meanwhile ends the wait with its log."""
        deadline = time.monotonic() + timeout
        waiting = list(self.nodes)
        while waiting:
            waiting = [node for node in waiting if not node.ready()]
            for node in waiting:
                node.check_running()
            for name, pid in self._state.get("pids", {}).items():
                if not alive(pid) or (name in self._procs and self._procs[name].poll() is not None):
                    raise ControlPlaneError(f"{name} exited while the nodes started; its log:\n{self._tail(name)}")
            if waiting and time.monotonic() > deadline:
                names = ", ".join(node.name for node in waiting)
                raise ControlPlaneError(f"{names} not Ready after {timeout:.0f}s:\n{waiting[0].tail('kubelet')}")
            if waiting:
                time.sleep(0.25)

    # -- internals -------------------------------------------------------------
    def _all_alive(self) -> bool:
        pids = [*self._state.get("pids", {}).values(), *(p for n in self.nodes for p in n.state["pids"].values())]
        return bool(pids) and all(alive(pid) for pid in pids)

    def _load(self) -> None:
        self._state = json.loads(self.state_file.read_text())
        hub = nodenet.Hub(**self._state["hub"])
        self.nodes = [
            Node(self.cp, hub, saved["index"], apiserver="", state=saved) for saved in self._state.pop("nodes", [])
        ]

    def _save(self) -> None:
        with self._saving:  # the nodes start in threads
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            self.state_file.write_text(json.dumps(self.state, indent=2))

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
        proc = spawn(argv, self._log(name), detach=detach, cwd=self.cp.state_dir)
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
