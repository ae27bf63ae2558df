"""From POST /vms/{id}/action start to phase Running: Vapor's overhead over libvirt's own start.

Baseline: the same tiny domain (32 MiB, no OS) started with libvirt directly,
as the agent does. Then the whole system (control plane, operator, agent,
gateway) starts it through REST; the difference is what Vapor adds.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import libvirt

from tests.support.agent import AgentProcess
from tests.support.libvirtd import Libvirtd
from tests.support.pam import linux_accounts, pam_service
from tests.support.wait import wait_until
from vapor.devenv import ControlPlane
from vapor.devenv.processes import Component, free_port
from vapor.model.names import LEASE_NAMESPACE

ROUNDS = 10

DOMAIN = """<domain type='{type}'><name>{name}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type><boot dev='hd'/></os><devices><serial type='pty'/></devices></domain>"""


def _libvirt_baseline(conn: libvirt.virConnect, kvm: bool) -> list[float]:
    dom = conn.defineXML(DOMAIN.format(type="kvm" if kvm else "qemu", name=f"bench-{uuid.uuid4().hex[:6]}"))
    times = []
    try:
        for _ in range(ROUNDS):
            start = time.perf_counter()
            dom.create()
            times.append(time.perf_counter() - start)
            dom.destroy()
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    return times


def main() -> None:
    """Print libvirt's start time and Vapor's REST start time side by side."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        Libvirtd() as daemon,
        linux_accounts() as accounts,
        pam_service() as service,
    ):
        conn = libvirt.open(daemon.uri)
        baseline = _libvirt_baseline(conn, daemon.kvm_usable())
        cp = ControlPlane(Path(tmp) / "cp").up()
        state = Path(tempfile.mkdtemp(prefix="vapor-bench-", dir="/var/tmp"))
        state.chmod(0o755)
        admins = accounts.group("admins")
        admin = accounts.user("adm", groups=(admins,))
        port, node = free_port(), f"bench-{uuid.uuid4().hex[:6]}"
        kc = str(cp.kubeconfig)
        procs = [
            AgentProcess(kc, node, state / "agent", lease_namespace=LEASE_NAMESPACE, libvirt_uri=daemon.uri),
            Component(
                "vapor.operator",
                ["--kubeconfig", kc],
                state / "operator.log",
                env={"VAPOR_PLACEMENT_RETRY_INTERVAL": "1"},
            ),
            Component(
                "vapor.gateway",
                ["--bind", f"127.0.0.1:{port}", "--kubeconfig", kc],
                state / "gateway.log",
                env={"VAPOR_PAM_SERVICE": service, "VAPOR_ADMIN_GROUPS": admins, "VAPOR_RATE_LIMIT": "0"},
            ),
        ]
        try:
            for p in procs:
                p.start()
            url = f"http://127.0.0.1:{port}/api/v1"
            wait_until(lambda: _up(url), 60, what="gateway")
            token = httpx.post(f"{url}/auth/login", json={"username": admin.name, "password": admin.password}).json()[
                "data"
            ]["token"]
            client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
            client.post("/vms", json={"name": "bench", "memory": "32Mi"})
            wait_until(lambda: client.get("/vms/bench").json()["data"]["phase"] == "Stopped", 60, what="defined")
            rest = []
            for _ in range(ROUNDS):
                start = time.perf_counter()
                r = client.post("/vms/bench/action", params={"wait": 60}, json={"action": "start"}).json()["data"]
                rest.append(time.perf_counter() - start)
                assert r["completed"] and r["phase"] == "Running", r
                client.post("/vms/bench/action", params={"wait": 60}, json={"action": "stop", "force": True})
            client.delete("/vms/bench")
            wait_until(lambda: client.get("/vms/bench").status_code == 404, 60, what="deleted")
        finally:
            for p in reversed(procs):
                p.stop()
            cp.kubectl_run("delete", "host", node, "--ignore-not-found", "--wait=false", check=False)
            cp.down()
            conn.close()
    b, r = statistics.median(baseline) * 1000, statistics.median(rest) * 1000
    print(f"  start, {ROUNDS} rounds (median):")
    print(f"  libvirt create() alone                  {b:7.1f} ms   (p max {max(baseline) * 1000:.1f} ms)")
    print(f"  POST action start -> phase Running      {r:7.1f} ms   (p max {max(rest) * 1000:.1f} ms)")
    print(f"  Vapor's overhead over libvirt           {r - b:7.1f} ms   (target < 1000 ms)")


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/hosts", timeout=2).status_code == 401
    except httpx.HTTPError:
        return False
