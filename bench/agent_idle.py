"""The agent at rest, and how long a REST ``PUT .../up`` takes to reach the host.

1. Idle cost: one agent managing a bench network namespace (veth pair + bridge)
   and nothing else running against the control plane. Over ``IDLE_SECONDS``:
   its CPU share and RSS (psutil, sampled every second), and the API writes it
   makes per minute, counted for real from the API server's
   ``apiserver_request_total`` (verbs POST/PUT/PATCH/APPLY/DELETE) before and
   after. The API server writes a little on its own (its identity Lease), so
   the same window is first measured with no agent and subtracted.
2. ``PUT /api/v1/network/interfaces/va/up`` through the gateway until it
   answers (it answers when the agent reports the host matching), against the
   baseline of pyroute2 setting the same link up directly.

The namespace is created with a unique name and removed, even on failure.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil
from pyroute2 import IPRoute

from tests.support.agent import AgentProcess
from tests.support.libvirtd import Libvirtd
from tests.support.pam import linux_accounts, pam_service
from tests.support.wait import wait_until
from vapor.devenv import ControlPlane
from vapor.devenv.processes import Component, free_port
from vapor.model.names import LEASE_NAMESPACE

IDLE_SECONDS = float(os.environ.get("VAPOR_BENCH_IDLE_SECONDS", "60"))
ROUNDS = 10
WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _writes(cp: ControlPlane) -> dict[str, float]:
    """Write requests served so far, per resource, from the API server's own counter."""
    text = cp.kubectl_run("get", "--raw", "/metrics").stdout
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, value = line[len("apiserver_request_total{") :].rsplit("} ", 1)
        labels = dict(part.split("=", 1) for part in labels_text.split('",') if "=" in part)
        labels = {k: v.strip('"') for k, v in labels.items()}
        if labels.get("verb") in WRITE_VERBS:
            key = "/".join(x for x in (labels.get("resource", "?"), labels.get("subresource", "")) if x)
            out[key] = out.get(key, 0.0) + float(value)
    return out


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after if after[k] - before.get(k, 0.0) > 0}


def _window(cp: ControlPlane, seconds: float, proc: psutil.Process | None) -> tuple[dict[str, float], list[int], float]:
    """Writes per resource, RSS samples and CPU seconds of ``proc`` (with children) over ``seconds``."""

    def cpu() -> float:
        if proc is None:
            return 0.0
        procs = [proc, *proc.children(recursive=True)]
        return sum(sum(p.cpu_times()[:2]) for p in procs if p.is_running())

    before, cpu0, rss = _writes(cp), cpu(), []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc is not None:
            rss.append(proc.memory_info().rss)
        time.sleep(1)
    return _delta(before, _writes(cp)), rss, cpu() - cpu0


def _pyroute2_baseline(netns: str) -> list[float]:
    times = []
    with IPRoute(netns=netns) as ipr:
        index = ipr.link_lookup(ifname="va")[0]
        for _ in range(ROUNDS):
            ipr.link("set", index=index, state="down")
            start = time.perf_counter()
            ipr.link("set", index=index, state="up")
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    """Print the idle agent's CPU, RSS and writes/min, and PUT up against pyroute2 alone."""
    suffix = uuid.uuid4().hex[:6]
    netns = f"vbench-{suffix}"
    _ip("netns", "add", netns)
    try:
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "link", "add", "va", "type", "veth", "peer", "name", "vb")
        _ip("-n", netns, "link", "set", "vb", "up")
        _ip("-n", netns, "link", "add", "br0", "type", "bridge")
        baseline = _pyroute2_baseline(netns)
        _run(netns, baseline)
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)


def _run(netns: str, baseline: list[float]) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        Libvirtd() as daemon,
        linux_accounts() as accounts,
        pam_service() as service,
    ):
        cp = ControlPlane(Path(tmp) / "cp").up()
        state = Path(tempfile.mkdtemp(prefix="vapor-bench-", dir="/var/tmp"))
        state.chmod(0o755)
        node = f"bench-{uuid.uuid4().hex[:6]}"
        kc = str(cp.kubeconfig)
        agent = AgentProcess(
            kc,
            node,
            state / "agent",
            lease_namespace=LEASE_NAMESPACE,
            libvirt_uri=daemon.uri,
            extra_args=("--netns", netns, "--api-bind", ""),
        )
        procs: list[Component] = [agent]
        try:
            time.sleep(5)  # let the fresh API server settle before the no-agent window
            _say(f"API server alone for {IDLE_SECONDS:.0f} s")
            quiet, _, _ = _window(cp, IDLE_SECONDS, None)
            _say("starting the agent")
            agent.start()
            wait_until(lambda: _reported(cp, node), 300, what="agent reports interfaces")
            time.sleep(5)  # past start-up writes
            assert agent.proc is not None
            proc = psutil.Process(agent.proc.pid)
            _say(f"agent idle for {IDLE_SECONDS:.0f} s")
            busy, rss, cpu_s = _window(cp, IDLE_SECONDS, proc)
            _say("PUT down/up rounds through the gateway")

            admins = accounts.group("admins")
            admin = accounts.user("adm", groups=(admins,))
            port = free_port()
            gateway = Component(
                "vapor.gateway",
                ["--bind", f"127.0.0.1:{port}", "--kubeconfig", kc],
                state / "gateway.log",
                env={"VAPOR_PAM_SERVICE": service, "VAPOR_ADMIN_GROUPS": admins, "VAPOR_RATE_LIMIT": "0"},
            )
            procs.append(gateway)
            gateway.start()
            url = f"http://127.0.0.1:{port}/api/v1"
            wait_until(lambda: _up(url), 60, what="gateway")
            login = {"username": admin.name, "password": admin.password}
            token = httpx.post(f"{url}/auth/login", json=login).json()["data"]["token"]
            client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=90)
            rest = []
            for _ in range(ROUNDS):
                r = client.put("/network/interfaces/va/down", params={"host": node})
                assert r.status_code == 200, r.text
                start = time.perf_counter()
                r = client.put("/network/interfaces/va/up", params={"host": node})
                rest.append(time.perf_counter() - start)
                assert r.status_code == 200, r.text
                assert _link_up(netns, "va"), "PUT up answered but va is not up in the namespace"
        finally:
            for p in reversed(procs):
                p.stop()
            cp.kubectl_run("delete", "host", node, "--ignore-not-found", "--wait=false", check=False)
            cp.down()
        shutil.rmtree(state, ignore_errors=True)  # only after a good run: logs stay for a failed one
    _print(quiet, busy, rss, cpu_s, baseline, rest)


def _print(
    quiet: dict[str, float],
    busy: dict[str, float],
    rss: list[int],
    cpu_s: float,
    baseline: list[float],
    rest: list[float],
) -> None:
    per_min = 60.0 / IDLE_SECONDS
    agent_writes = {k: busy.get(k, 0.0) - quiet.get(k, 0.0) for k in set(busy) | set(quiet)}
    agent_writes = {k: v for k, v in agent_writes.items() if v}
    total = sum(agent_writes.values()) * per_min
    print(f"  agent idle for {IDLE_SECONDS:.0f} s (one namespace of 3 links; psutil, apiserver_request_total):")
    print(f"  CPU share                               {100 * cpu_s / IDLE_SECONDS:7.2f} %   of one core")
    print(
        f"  RSS median / max                        {statistics.median(rss) / 2**20:7.1f} MiB / {max(rss) / 2**20:.1f}"
    )
    alone = sum(quiet.values()) * per_min
    print(f"  API writes per minute (agent)           {total:7.1f}       (apiserver alone: {alone:.1f})")
    for key, value in sorted(agent_writes.items()):
        print(f"    {key:<38}{value * per_min:7.1f}")
    b, r = statistics.median(baseline) * 1000, statistics.median(rest) * 1000
    print(f"  link up, {ROUNDS} rounds (median):")
    print(f"  pyroute2 link set up alone              {b:7.1f} ms   (max {max(baseline) * 1000:.1f} ms)")
    print(f"  PUT .../va/up -> host matches           {r:7.1f} ms   (max {max(rest) * 1000:.1f} ms)")
    print(f"  Vapor's overhead over pyroute2          {r - b:7.1f} ms")


def _link_up(netns: str, name: str) -> bool:
    with IPRoute(netns=netns) as ipr:
        return bool(ipr.get_links(ifname=name)[0]["flags"] & 1)  # IFF_UP


def _say(what: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {what}", flush=True)


def _reported(cp: ControlPlane, node: str) -> bool:
    got = cp.kubectl_run("get", "host", node, "-o", "jsonpath={.status.interfaces[*].name}", check=False)
    return got.returncode == 0 and "va" in got.stdout.split()


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/hosts", timeout=2).status_code == 401
    except httpx.HTTPError:
        return False
