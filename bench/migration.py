"""Live migration: Vapor (Migration resource -> operator -> agents -> libvirt) against a bare migrateToURI3.

Two libvirt hosts on this machine (tests/support/hosts.py). Baseline: the same
diskless guest (64 MiB and 512 MiB) migrated peer-to-peer with libvirt alone,
with the flags the agent uses by default (live, persist dest, undefine source).
Then the whole system: a Migration is applied and timed until libvirt's job
starts on the source (control-plane overhead), until it ends (the source
domain is no longer active), until phase Succeeded (total, seen by a watch),
and the downtime the agent reports; the hand-over is the time from the end
of libvirt's job to phase Succeeded. Last, a drain of 10 VMs with the default
limits (5 in the cluster, 2 outbound per host).
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import libvirt
from kubernetes import client, config, watch

from tests.support.agent import AgentProcess
from tests.support.hosts import Testbed
from tests.support.wait import wait_until
from vapor.devenv import ControlPlane
from vapor.devenv.processes import Component
from vapor.model.names import LEASE_NAMESPACE
from vapor.model.names import MIGRATING_ANNOTATION as MIGRATING

ROUNDS = 3
SIZES = (64, 512)
DRAIN_VMS = 10

DOMAIN = """<domain type='{type}'><name>{name}</name><memory unit='MiB'>{mib}</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type><boot dev='hd'/></os><devices><serial type='pty'/></devices></domain>"""

FLAGS = (
    libvirt.VIR_MIGRATE_LIVE
    | libvirt.VIR_MIGRATE_PEER2PEER
    | libvirt.VIR_MIGRATE_PERSIST_DEST
    | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    | libvirt.VIR_MIGRATE_TLS  # the testbed's hosts migrate over qemu+tls, as Vapor's agents do by default
)


def _bare(conns: list[libvirt.virConnect], uris: list[str], mib: int) -> tuple[list[float], list[float]]:
    """Seconds and downtime (ms) of bare migrateToURI3 rounds, ping-ponging one guest."""
    name = f"bench-bare-{uuid.uuid4().hex[:6]}"
    kvm = "kvm" if "<domain type='kvm'" in conns[0].getCapabilities() else "qemu"
    dom = conns[0].defineXML(DOMAIN.format(type=kvm, name=name, mib=mib))
    dom.create()
    times, downs = [], []
    here = 0
    try:
        for _ in range(ROUNDS):
            there = 1 - here
            dom = conns[here].lookupByName(name)
            start = time.perf_counter()
            dom.migrateToURI3(uris[there], {}, FLAGS)
            times.append(time.perf_counter() - start)
            stats = conns[there].lookupByName(name).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
            downs.append(float(stats.get("downtime", 0)))
            here = there
    finally:
        for conn in conns:
            try:
                d = conn.lookupByName(name)
                if d.isActive():
                    d.destroy()
                d.undefine()
            except libvirt.libvirtError:
                pass
    return times, downs


class _PhaseWatch:
    """When each Migration of a namespace was first seen in a terminal phase (a watch, not polling)."""

    def __init__(self, kubeconfig: str, namespace: str) -> None:
        self.api = client.CustomObjectsApi(config.new_client_from_config(kubeconfig))
        self.namespace = namespace
        self.seen: dict[str, tuple[float, str]] = {}  # name: (perf_counter, phase)
        self.watch = watch.Watch()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                for event in self.watch.stream(
                    self.api.list_namespaced_custom_object, "vapor.io", "v1alpha1", self.namespace, "migrations",
                    timeout_seconds=600,
                ):  # fmt: skip
                    obj = event["object"]
                    phase = (obj.get("status") or {}).get("phase")
                    name = obj["metadata"]["name"]
                    if phase in ("Succeeded", "Failed", "Cancelled") and name not in self.seen:
                        self.seen[name] = (time.perf_counter(), phase)
            except Exception:
                time.sleep(0.05)

    def stop(self) -> None:
        self.watch.stop()


class _Vapor:
    def __init__(self, cp: ControlPlane, testbed: Testbed, conns: list[libvirt.virConnect], state: Path) -> None:
        self.cp, self.conns, self.ns = cp, conns, f"bench-mig-{uuid.uuid4().hex[:6]}"
        self.phases: _PhaseWatch | None = None
        run = uuid.uuid4().hex[:6]
        self.nodes = [f"bmig-{run}-{i}" for i in range(len(testbed.hosts))]
        kc = str(cp.kubeconfig)
        self.procs: list[Any] = [
            AgentProcess(
                kc,
                node,
                state / node,
                lease_namespace=LEASE_NAMESPACE,
                libvirt_uri=host.uri,
                lease_renew_interval=1.0,
                extra_args=("--lease-duration", "5", *host.agent_args()),
                env={"VAPOR_API_BIND": ""},
            )
            for host, node in zip(testbed.hosts, self.nodes, strict=True)
        ]
        self.procs.append(
            Component(
                "vapor.operator",
                ["--kubeconfig", kc],
                state / "operator.log",
                env={"VAPOR_HEALTH_INTERVAL": "1", "VAPOR_PLACEMENT_RETRY_INTERVAL": "1"},
            )
        )

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return str(self.cp.kubectl_run(*args, input=input, check=check).stdout)

    def get(self, kind: str, name: str, ns: bool = True) -> dict[str, Any]:
        extra = ("-n", self.ns) if ns else ()
        return dict(json.loads(self.kubectl("get", kind, name, *extra, "-o", "json")))

    def apply(self, manifest: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def start(self) -> None:
        for p in self.procs:
            p.start()
        self.kubectl("create", "namespace", self.ns)
        for node in self.nodes:
            wait_until(lambda n=node: self._ready(n), 90, what=f"Host {node} Ready")

    def _ready(self, node: str) -> bool:
        try:
            status = self.get("hosts.vapor.io", node, ns=False).get("status") or {}
        except Exception:
            return False
        ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
        return bool(ready and ready[0]["status"] == "True" and (status.get("hypervisor") or {}).get("migrationAddress"))

    def place(self, name: str, host: int, mib: int) -> str:
        node = self.nodes[host]
        self.apply(  # pinned: the operator places it there (and counts it), as tests/migration does
            {
                "apiVersion": "vapor.io/v1alpha1",
                "kind": "VirtualMachine",
                "metadata": {"name": name, "namespace": self.ns},
                "spec": {"runStrategy": "Running", "memory": f"{mib}Mi", "cpu": 1, "host": node},
            }
        )
        dom = f"{self.ns}_{name}"
        wait_until(lambda: self._active(host, dom), 90, what=f"{dom} running")
        wait_until(lambda: (self.get("vvm", name).get("status") or {}).get("phase") == "Running", 90, what="Running")
        return dom

    def _active(self, host: int, dom: str) -> bool:
        try:
            return bool(self.conns[host].lookupByName(dom).isActive())
        except libvirt.libvirtError:
            return False

    def migrate(self, vm: str, dom: str, source: int, mig: str) -> tuple[float, float, float, float]:
        """(overhead to libvirt's job, its end, total to Succeeded, downtime ms) of one Migration."""
        domain = self.conns[source].lookupByName(dom)
        if self.phases is None:
            self.phases = _PhaseWatch(str(self.cp.kubeconfig), self.ns)
        start = time.perf_counter()
        self.apply(
            {
                "apiVersion": "vapor.io/v1alpha1",
                "kind": "Migration",
                "metadata": {"name": mig, "namespace": self.ns},
                "spec": {"vmName": vm, "destinationHost": self.nodes[1 - source]},
            }
        )
        job = ended = None
        while ended is None and mig not in self.phases.seen and time.perf_counter() - start < 180:
            try:
                busy = domain.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE
                active = bool(domain.isActive())
            except libvirt.libvirtError:  # the domain already left the source
                busy, active = False, False
            now = time.perf_counter() - start
            if job is None and (busy or not active):
                job = now
            if job is not None and not active:
                ended = now
            time.sleep(0.002)
        seen = wait_until(lambda: self.phases.seen.get(mig), 180, every=0.01, what=f"{mig} ended")
        total, phase = seen[0] - start, seen[1]
        status = self.get("migrations.vapor.io", mig)["status"]
        assert phase == "Succeeded", status
        wait_until(
            lambda: MIGRATING not in (self.get("vvm", vm)["metadata"].get("annotations") or {}), 60, what="settled"
        )
        wait_until(lambda: (self.get("vvm", vm).get("status") or {}).get("phase") == "Running", 60, what="Running")
        return job or float("nan"), ended or float("nan"), total, float(status.get("downtimeMs") or 0)

    def drain(self) -> float:
        for i in range(DRAIN_VMS):
            self.place(f"drain{i}", 0, 64)
        start = time.perf_counter()
        self.kubectl("patch", "hosts.vapor.io", self.nodes[0], "--type=merge", "-p", '{"spec":{"maintenance":true}}')

        def drained() -> bool:
            drain = (self.get("hosts.vapor.io", self.nodes[0], ns=False).get("status") or {}).get("drain") or {}
            return drain.get("phase") in ("Drained", "Failed")

        wait_until(drained, 600, what="drained")
        took = time.perf_counter() - start
        drain = (self.get("hosts.vapor.io", self.nodes[0], ns=False).get("status") or {}).get("drain") or {}
        if drain.get("phase") != "Drained":
            raise AssertionError(f"drain {drain.get('phase')} after {took:.1f} s: {drain.get('message', '')[:300]}")
        self.kubectl("patch", "hosts.vapor.io", self.nodes[0], "--type=merge", "-p", '{"spec":{"maintenance":false}}')
        return took

    def stop(self) -> None:
        if self.phases is not None:
            self.phases.stop()
        self.kubectl("delete", "migrations.vapor.io", "--all", "-n", self.ns, "--timeout=30s", check=False)
        self.kubectl("delete", "vvm", "--all", "-n", self.ns, "--timeout=60s", check=False)
        for p in reversed(self.procs):
            p.stop()
        self.kubectl("delete", "hosts.vapor.io", *self.nodes, "--ignore-not-found", "--wait=false", check=False)


def main() -> None:
    """Print bare libvirt migration figures next to Vapor's."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    state = Path(tempfile.mkdtemp(prefix="vapor-bench-mig-", dir="/var/tmp"))
    state.chmod(0o755)
    with tempfile.TemporaryDirectory() as tmp, Testbed(2) as testbed:
        conns = [h.connect() for h in testbed.hosts]
        uris = [h.migration_uri for h in testbed.hosts]
        try:
            bare = {mib: _bare(conns, uris, mib) for mib in SIZES}
            print("  bare migrateToURI3 (live, p2p, persist, undefine source), median of", ROUNDS)
            for mib, (t, d) in bare.items():
                print(
                    f"    {mib:4d} MiB guest   total {statistics.median(t) * 1000:7.0f} ms"
                    f"   downtime {statistics.median(d):5.0f} ms"
                )
            cp = ControlPlane(Path(tmp) / "cp").up()
            vapor = _Vapor(cp, testbed, conns, state)
            try:
                vapor.start()
                print(
                    "  Vapor: Migration applied -> libvirt job starts -> job ends -> phase Succeeded, median of", ROUNDS
                )
                for mib in SIZES:
                    vm = f"g{mib}"
                    dom = vapor.place(vm, 0, mib)
                    rows = []
                    for r in range(ROUNDS):
                        source = r % 2
                        rows.append(vapor.migrate(vm, dom, source, f"m{mib}-{r}"))
                        job, ended, total, _down = rows[-1]
                        print(
                            f"      round {r + 1}: overhead {job * 1000:.0f} ms, job {(ended - job) * 1000:.0f} ms,"
                            f" hand-over {(total - ended) * 1000:.0f} ms, total {total * 1000:.0f} ms"
                        )
                    over = statistics.median(x[0] for x in rows) * 1000
                    hand_over = statistics.median(x[2] - x[1] for x in rows) * 1000
                    total = statistics.median(x[2] for x in rows) * 1000
                    down = statistics.median(x[3] for x in rows)
                    base = statistics.median(bare[mib][0]) * 1000
                    print(
                        f"    {mib:4d} MiB guest   control-plane overhead {over:6.0f} ms   hand-over after the job "
                        f"{hand_over:5.0f} ms   total {total:7.0f} ms (bare {base:.0f} ms, +{total - base:.0f} ms)"
                        f"   downtime {down:5.0f} ms"
                    )
                    vapor.kubectl("delete", "vvm", vm, "-n", vapor.ns, "--timeout=60s", check=False)
                try:
                    took = vapor.drain()
                    print(f"    drain of {DRAIN_VMS} VMs (64 MiB) with the default limits: {took:.1f} s")
                except AssertionError as exc:
                    print(f"    drain of {DRAIN_VMS} VMs did not finish: {exc}")
            finally:
                vapor.stop()
                cp.down()
        finally:
            for conn in conns:
                conn.close()
            shutil.rmtree(state, ignore_errors=True)
