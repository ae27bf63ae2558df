"""What a rollout did, seen while it happened: every change of the release's pods and of the VMs, and the domains.

``Timeline`` runs ``kubectl get --watch --output-watch-events`` on the
release's pods and on a namespace's VirtualMachines (every version the API
server sends, not samples), and polls libvirt for the id and state of the
VMs' domains a few times a second. It also watches the agents' heartbeat
Leases (in the release namespace) and the Hosts. After the block,
``agent_outages`` says when each node had no Ready agent, so a test can see
the agents replaced one node at a time, ``lease_gaps`` how long each Lease
went unrenewed at most (the operator judges a Host lost, and marks its VMs
Unknown, once that exceeds the Lease's duration), ``host_readiness`` the
Hosts' Ready condition in every version, and ``vm_phases``/``domains``
whether the VMs ever stopped running.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType

import libvirt

from .conftest import Cluster
from .release import NAMESPACE, RELEASE

POD_FIELDS = (
    "{.type}|{.object.metadata.name}|{.object.spec.nodeName}|{.object.metadata.labels.app\\.kubernetes\\.io/component}"
    '|{.object.metadata.deletionTimestamp}|{.object.spec.containers[0].image}|{.object.status.conditions[?(@.type=="Ready")].status}'
)
VM_FIELDS = "{.type}|{.object.metadata.name}|{.object.status.phase}"
LEASE_FIELDS = (
    "{.object.metadata.name}|{.object.spec.holderIdentity}|{.object.spec.renewTime}|{.object.spec.leaseDurationSeconds}"
)
HOST_FIELDS = '{.object.metadata.name}|{.object.status.conditions[?(@.type=="Ready")].status}'


@dataclass(frozen=True)
class PodChange:
    at: float  # time.monotonic() when the watch delivered it
    event: str  # ADDED, MODIFIED, DELETED
    name: str
    node: str  # "" before the scheduler placed it
    component: str
    terminating: bool
    image: str
    ready: bool


class Watch:
    """One ``kubectl get --watch`` printing a line per change, read by a thread with the time each came."""

    def __init__(self, cluster: Cluster, *args: str, fields: str) -> None:
        argv = [str(cluster.cp.kubectl), "get", *args, "--watch", "--output-watch-events", "-o", f"jsonpath={fields}\n"]
        env = {**os.environ, "KUBECONFIG": str(cluster.cp.kubeconfig)}
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[tuple[float, list[str]]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self.lines.append((time.monotonic(), line.rstrip("\n").split("|")))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)


@dataclass
class DomainSample:
    at: float
    id: int  # -1 when the domain is not running (or gone)
    state: int | None  # None when the domain is gone


@dataclass
class Timeline:
    """Watches from ``__enter__`` to ``__exit__``; read what they saw after the block."""

    cluster: Cluster
    vm_namespace: str
    virt: libvirt.virConnect
    domains: dict[str, list[DomainSample]] = field(default_factory=dict)  # libvirt name -> samples
    started: float = 0.0
    ended: float = 0.0
    ended_wall: float = 0.0  # time.time() at the end, to compare with the Leases' renewTime

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._pods: Watch | None = None
        self._vms: Watch | None = None
        self._leases: Watch | None = None
        self._hosts: Watch | None = None
        self._poller = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Timeline:
        for dom in self.virt.listAllDomains(0):
            if dom.name().startswith(f"{self.vm_namespace}_"):
                self.domains[dom.name()] = []
        self._pods = Watch(
            self.cluster, "pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}", fields=POD_FIELDS
        )
        self._vms = Watch(self.cluster, "virtualmachines", "-n", self.vm_namespace, fields=VM_FIELDS)
        self._leases = Watch(self.cluster, "leases", "-n", NAMESPACE, fields=LEASE_FIELDS)
        self._hosts = Watch(self.cluster, "hosts", fields=HOST_FIELDS)
        self._poller.start()
        self.started = time.monotonic()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.ended, self.ended_wall = time.monotonic(), time.time()
        self._stop.set()
        self._poller.join(timeout=10)
        for watch in (self._pods, self._vms, self._leases, self._hosts):
            if watch is not None:
                watch.stop()

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            for name, samples in self.domains.items():
                try:
                    dom = self.virt.lookupByName(name)
                    samples.append(DomainSample(time.monotonic(), dom.ID(), dom.state()[0]))
                except libvirt.libvirtError:
                    samples.append(DomainSample(time.monotonic(), -1, None))

    def pod_changes(self) -> list[PodChange]:
        assert self._pods is not None
        return [
            PodChange(at, event, name, node, component, bool(deleting), image, ready == "True")
            for at, (event, name, node, component, deleting, image, ready) in self._pods.lines
        ]

    def vm_phases(self) -> dict[str, list[str]]:
        """Each VM's phase in every version the watch delivered (a DELETED one adds "DELETED")."""
        assert self._vms is not None
        phases: dict[str, list[str]] = {}
        for _, (event, name, phase) in self._vms.lines:
            phases.setdefault(name, []).append("DELETED" if event == "DELETED" else phase)
        return phases

    def agent_outages(self) -> dict[str, list[tuple[float, float]]]:
        """Per node, the spans (seconds from the start) in which it had no Ready agent that was not terminating."""
        latest: dict[str, PodChange] = {}
        down_since: dict[str, float] = {}
        outages: dict[str, list[tuple[float, float]]] = {}
        for change in self.pod_changes():
            if change.component != "agent":
                continue
            if change.event == "DELETED":
                latest.pop(change.name, None)
            else:
                latest[change.name] = change
            nodes = {c.node for c in latest.values() if c.node} | set(down_since) | set(outages)
            for node in nodes:
                up = any(c.node == node and c.ready and not c.terminating for c in latest.values())
                if not up and node not in down_since:
                    down_since[node] = change.at - self.started
                elif up and node in down_since:
                    outages.setdefault(node, []).append((down_since.pop(node), change.at - self.started))
        for node, since in down_since.items():  # still down when the watch ended
            outages.setdefault(node, []).append((since, self.ended - self.started))
        return outages

    def lease_gaps(self) -> dict[str, tuple[float, int]]:
        """Per agent Lease (named after its node and held by it): the longest time it went unrenewed, and its duration.

        The gaps between the renewTimes the watch saw, and from the last one to the end of the watch.
        """
        assert self._leases is not None
        renewals: dict[str, list[float]] = {}
        durations: dict[str, int] = {}
        for _, (name, holder, renewed, duration) in self._leases.lines:
            if name == holder and renewed:
                renewals.setdefault(name, []).append(datetime.fromisoformat(renewed).timestamp())
                durations[name] = int(duration)
        gaps = {}
        for name, times in renewals.items():
            times = [*sorted(set(times)), self.ended_wall]
            gaps[name] = (max(b - a for a, b in itertools.pairwise(times)), durations[name])
        return gaps

    def host_readiness(self) -> dict[str, list[str]]:
        """Each Host's Ready condition status in every version the watch delivered."""
        assert self._hosts is not None
        readiness: dict[str, list[str]] = {}
        for _, (name, ready) in self._hosts.lines:
            readiness.setdefault(name, []).append(ready)
        return readiness
