"""One real agent managing ``VAPOR_AGENT_VMS`` (200) VMs through libvirt's test driver.

The agent is the real process; its libvirt is the machine's libvirtd reached
as ``test+unix:///default``: libvirt's test driver (domains that are only
records, no QEMU), kept inside libvirtd, so its domains outlive an agent
restart as real ones do. The operator places the VMs (pinned to the agent's
host); the agent defines and starts each domain and reports it Running.
Printed:

- all Running: the time from the first create to the last VM Running;
- idle: the agent's RSS (median, max) and CPU share over
  ``VAPOR_BENCH_IDLE_SECONDS`` (60), and its API writes per minute from the
  API server's own counters;
- adopt-all after a restart (SIGTERM, then a new process): from its start
  until /readyz answers and its libvirt calls have settled for 2 s (its first
  pass over every VM done), checking that no domain was restarted (same
  domain ids) and every VM still Running; the restarted agent's RSS then.

The agent runs in a bench network namespace (its network inventory reads
that, never the machine's); the namespace, the VMs and the test driver's
domains are removed at the end, even on failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import libvirt  # type: ignore[import-untyped]
import psutil

from tests.support.agent import AgentProcess
from tests.support.wait import wait_until
from vapor.devenv import ControlPlane
from vapor.devenv.processes import Component, free_port
from vapor.model.names import LEASE_NAMESPACE

from .agent_idle import IDLE_SECONDS, _delta, _ip, _writes
from .fleet import _row

TEST_URI = "test+unix:///default"
VMS = int(os.environ.get("VAPOR_AGENT_VMS", "200"))


def _vm(name: str, namespace: str, host: str) -> dict[str, object]:
    return {
        "apiVersion": "vapor.io/v1alpha1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"cpu": 1, "memory": "16Mi", "runStrategy": "Running", "host": host},
    }


def _phases(cp: ControlPlane, namespace: str) -> dict[str, str]:
    shape = "jsonpath={range .items[*]}{.metadata.name}={.status.phase}{'\\n'}{end}"
    out = cp.kubectl_run("get", "vvm", "-n", namespace, "-o", shape)
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def _domain_ids(conn: libvirt.virConnect, namespace: str) -> dict[str, int]:
    return {d.name(): d.ID() for d in conn.listAllDomains() if namespace in d.name() and d.isActive()}


def _libvirt_calls(metrics: str) -> float:
    text = httpx.get(f"http://{metrics}/metrics", timeout=5).text
    return sum(
        float(v) for v in re.findall(r"^vapor_agent_libvirt_call_duration_seconds_count\{[^}]*\} (\S+)$", text, re.M)
    )


def _ready(metrics: str) -> bool:
    try:
        return httpx.get(f"http://{metrics}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _settled(metrics: str) -> None:
    """Wait until the agent is ready and its libvirt calls stop growing for 2 s."""
    wait_until(lambda: _ready(metrics), 120, what="agent ready")
    last, since = _libvirt_calls(metrics), time.monotonic()
    while time.monotonic() - since < 2:
        time.sleep(0.25)
        now = _libvirt_calls(metrics)
        if now != last:
            last, since = now, time.monotonic()


def main() -> None:
    """Print the agent's figures with ``VMS`` test-driver VMs."""
    suffix = uuid.uuid4().hex[:6]
    netns, namespace = f"vbench-{suffix}", f"agentbench-{suffix}"
    # libvirtd keeps test:///default's domains only while some connection holds it: this one, for the
    # whole run, so that they outlive the agent's restart as a real host's domains do.
    conn = libvirt.open(TEST_URI)
    _ip("netns", "add", netns)
    try:
        _ip("-n", netns, "link", "set", "lo", "up")
        _run(netns, namespace, conn)
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)
        for dom in conn.listAllDomains():
            if namespace in dom.name():
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        conn.close()


def _run(netns: str, namespace: str, conn: libvirt.virConnect) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cp = ControlPlane(Path(tmp) / "cp").up()
        state = Path(tempfile.mkdtemp(prefix="vapor-bench-", dir="/var/tmp"))
        state.chmod(0o755)
        node = f"bench-{namespace}"
        kc = str(cp.kubeconfig)
        metrics = f"127.0.0.1:{free_port()}"
        agent = AgentProcess(
            kc, node, state / "agent", lease_namespace=LEASE_NAMESPACE, libvirt_uri=TEST_URI,
            extra_args=("--netns", netns, "--api-bind", "", "--metrics-bind", metrics),
        )  # fmt: skip
        operator = Component("vapor.operator", ["--kubeconfig", kc], state / "operator.log")
        try:
            operator.start()
            agent.start()
            wait_until(lambda: _ready(metrics), 120, what="agent ready")
            cp.kubectl_run("create", "namespace", namespace)
            # One vCPU each: the machine's 2 threads give 200 vCPUs only at the highest allocation ratio.
            cp.kubectl_run("patch", "host", node, "--type=merge", "-p", '{"spec":{"cpuAllocationRatio":100}}')
            start = time.monotonic()
            manifests = "\n---\n".join(json.dumps(_vm(f"vm-{i:03d}", namespace, node)) for i in range(VMS))
            cp.kubectl_run("apply", "-f", "-", input=manifests)
            wait_until(
                lambda: list(_phases(cp, namespace).values()).count("Running") == VMS, 600, what=f"{VMS} Running"
            )
            running = time.monotonic() - start
            _settled(metrics)
            assert agent.proc is not None
            proc = psutil.Process(agent.proc.pid)
            before, cpu0, rss = _writes(cp), sum(proc.cpu_times()[:2]), []
            end = time.monotonic() + IDLE_SECONDS
            while time.monotonic() < end:
                rss.append(proc.memory_info().rss)
                time.sleep(1)
            cpu = sum(proc.cpu_times()[:2]) - cpu0
            writes = _delta(before, _writes(cp))

            ids = _domain_ids(conn, namespace)
            agent.stop()
            agent.start()
            restarted = time.monotonic()
            _settled(metrics)
            adopted = time.monotonic() - restarted - 2  # less the 2 s of quiet that showed the pass was over
            assert agent.proc is not None
            rss_after = psutil.Process(agent.proc.pid).memory_info().rss
            ids_after = _domain_ids(conn, namespace)
            same = ids_after == ids and len(ids) == VMS
            phases = _phases(cp, namespace)
        finally:
            agent.stop()
            operator.stop()
            cp.down()
        shutil.rmtree(state, ignore_errors=True)
    per_min = 60.0 / IDLE_SECONDS
    print(f"  one agent, {VMS} VMs on libvirt's test driver ({TEST_URI})")
    _row(f"create to all {VMS} Running", f"{running:.1f} s")
    _row(
        "agent RSS idle, median / max",
        f"{statistics.median(rss) / 2**20:.0f} / {max(rss) / 2**20:.0f} MiB",
        "target <= 80 MB",
    )
    _row("agent CPU idle", f"{100 * cpu / IDLE_SECONDS:.1f}% of a core")
    _row("API writes per minute, idle (all)", f"{sum(writes.values()) * per_min:.1f}")
    for key, value in sorted(writes.items(), key=lambda kv: -kv[1])[:4]:
        print(f"    {key:<38}{value * per_min:7.1f}")
    _row("adopt-all after a restart", f"{adopted:.1f} s", "no domain restarted" if same else "!! domains changed")
    _row("VMs Running after it", str(list(phases.values()).count("Running")))
    if not same:
        changed = [name for name, i in ids.items() if ids_after.get(name) != i]
        print(f"    {len(changed)} of {len(ids)} domains changed id (restarted), e.g. {changed[:3]}")
    _row("agent RSS after adopting", f"{rss_after / 2**20:.0f} MiB")
