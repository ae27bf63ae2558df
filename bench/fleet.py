"""A fleet, not a host: N played hosts and M VMs against the real control plane, operator and gateway.

The hosts are played by bench/_fleet.py (a LOAD GENERATOR, as kwok is for
kubelets); everything else is real: etcd, kube-apiserver, the operator and the
gateway as processes, a Linux admin logging in through PAM. The VMs are
created through REST at a steady rate, spread over ten namespaces.

Figures, each beside the issue's target:
- placement: VMs placed per second; create-to-Running p50/p95/p99 (from the
  POST to the watch seeing Running; includes the played start delay);
  over-commit checked from the final state (no host given more than its
  allocatable CPU and memory);
- idle fleet: API writes per host per minute (kube-apiserver's own counters
  of mutating requests over a quiet minute), the operator's RSS and CPU;
- the gateway with every VM: GET /vms pages of 100 and the whole list
  (p50/p99, req/s), its RSS.

Sizes: VAPOR_FLEET_HOSTS (100), VAPOR_FLEET_VMS (10000), VAPOR_FLEET_RATE
(creates per second, 100), VAPOR_FLEET_START_DELAY (1.0 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

from tests.support.gatewayproc import gateway_answers
from tests.support.pam import LinuxUser, linux_accounts, pam_service
from tests.support.wait import wait_until
from vapor.devenv import ControlPlane
from vapor.devenv.processes import Component, free_port
from vapor.kube import Kube
from vapor.model import Host
from vapor.rules.placement import Request

from ._fleet import PlayedFleet

NAMESPACES = 10
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "APPLY")


def _env(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def _ms(samples: list[float], digits: int) -> str:
    return f"{_pct(samples, 0.5) * 1000:.{digits}f} / {_pct(samples, 0.99) * 1000:.{digits}f} ms"


def _row(label: str, value: str, target: str = "") -> None:
    print(f"  {label:<44} {value:<30} {target}")


def _writes(cp: ControlPlane) -> Counter[str]:
    """kube-apiserver's count of mutating requests so far (apiserver_request_total), by verb and resource."""
    text = cp.kubectl_run("get", "--raw", "/metrics").stdout
    found: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("verb") in WRITE_VERBS:
            what = "/".join(p for p in (labels.get("resource"), labels.get("subresource")) if p)
            found[f"{labels['verb']} {what}"] += int(float(line.rsplit(" ", 1)[1]))
    return found


class CpuClock:
    """CPU seconds the fleet's processes used between two readings: names where a burst's time went."""

    def __init__(self, cp: ControlPlane, operator: Component, gateway: Component) -> None:
        pids = {**cp.pids(), "operator": _pid(operator), "gateway": _pid(gateway), "load tool": os.getpid()}
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        return {name: sum(p.cpu_times()[:2]) for name, p in self.procs.items()}

    def report(self, vms: int, seconds: float) -> None:
        """Each process's CPU seconds since the start, per 1,000 VMs, and in cores over ``seconds``."""
        now = self._read()
        used = {name: now[name] - self.start[name] for name in now}
        shown = ", ".join(f"{name} {s:.0f}" for name, s in sorted(used.items(), key=lambda kv: -kv[1]))
        _row("CPU seconds during the burst", shown)
        total = sum(used.values())
        _row("  per 1,000 VMs, in all", f"{total / vms * 1000:.0f} CPU s ({total / seconds:.2f} cores busy)")


async def make_namespaces(kube: Kube) -> None:
    """The namespaces the VMs are spread over."""
    for i in range(NAMESPACES):
        await kube.core.create_namespace({"metadata": {"name": f"fleet-{i}"}})


async def _post(api: httpx.AsyncClient, body: dict[str, object]) -> httpx.Response:
    """POST a VM; a connection the server closed as the request went out (keep-alive race) is tried again."""
    for attempt in range(3):
        try:
            r = await api.post("/vms", json=body)
        except httpx.TransportError:
            if attempt == 2:
                raise
            continue
        if attempt and r.status_code == 409:  # the first try got through after all
            return httpx.Response(201, request=r.request)
        return r
    raise AssertionError("unreachable")


async def create_all(url: str, token: str, fleet: PlayedFleet, count: int, rate: float) -> list[float]:
    """POST count VMs at ``rate`` per second; each request's latency."""
    latencies: list[float] = []
    failures: list[str] = []
    limit = asyncio.Semaphore(64)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=f"{url}/api/v1", headers=headers, timeout=60) as api:

        async def create(i: int, at: float) -> None:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            namespace, name = f"fleet-{i % NAMESPACES}", f"vm-{i:05d}"
            body = {
                "name": name,
                "namespace": namespace,
                "cpu": 1,
                "memory": "512Mi",
                "run_strategy": "Running",
                "host_selector": {"fleet": fleet.run},
            }
            async with limit:
                fleet.created(f"{namespace}/{name}")
                start = time.monotonic()
                r = await _post(api, body)
                latencies.append(time.monotonic() - start)
            if r.status_code != 201:
                failures.append(f"{name}: {r.status_code} {r.text[:200]}")

        t0 = time.monotonic()
        await asyncio.gather(*(create(i, t0 + i / rate) for i in range(count)))
    if failures:
        print(f"  {len(failures)} creates failed, first: {failures[0]}")
    return latencies


async def wait_running(fleet: PlayedFleet, count: int, timeout: float) -> None:
    """Wait until ``count`` VMs were seen Running, saying how far it is every 10 s."""
    deadline = time.monotonic() + timeout
    last = 0.0
    while time.monotonic() < deadline:
        running = sum(1 for t in fleet.times.values() if t.running is not None)
        if running >= count:
            return
        if time.monotonic() - last > 10:
            placed = sum(1 for t in fleet.times.values() if t.placed is not None)
            print(f"  ... {placed} placed, {running} Running of {count}", flush=True)
            last = time.monotonic()
        await asyncio.sleep(0.5)
    print(f"  !! not all Running after {timeout:.0f}s")


async def _overcommitted(kube: Kube, fleet: PlayedFleet) -> list[str]:
    """Hosts given more CPU or memory than they may give, from the final state."""
    hosts, _ = await kube.resources(Host).list(label_selector=f"fleet={fleet.run}")
    given: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for vm in fleet.vms():
        if vm.status and vm.status.host:
            request = Request.of(vm)  # at its live ceilings, as the operator counts it
            given[vm.status.host][0] += request.cpu
            given[vm.status.host][1] += request.memory
    over = []
    for host in hosts:
        room = host.status.allocatable if host.status else None
        cpu, memory = given.get(host.name, [0, 0])
        if room is None or cpu > room.cpu or memory > room.memory:
            over.append(f"{host.name}: {cpu} CPU, {memory} bytes given; may give {room}")
    return over


async def _timed_gets(url: str, token: str, path: str, rounds: int) -> tuple[list[float], float]:
    headers = {"Authorization": f"Bearer {token}"}
    times = []
    async with httpx.AsyncClient(base_url=f"{url}/api/v1", headers=headers, timeout=60) as api:
        start = time.monotonic()
        for _ in range(rounds):
            t = time.monotonic()
            r = await api.get(path)
            assert r.status_code == 200, r.text[:200]
            times.append(time.monotonic() - t)
        return times, rounds / (time.monotonic() - start)


async def _run(cp: ControlPlane, url: str, admin: LinuxUser, operator: Component, gateway: Component) -> None:
    hosts, count = int(_env("VAPOR_FLEET_HOSTS", 100)), int(_env("VAPOR_FLEET_VMS", 10000))
    rate, delay = _env("VAPOR_FLEET_RATE", 100), _env("VAPOR_FLEET_START_DELAY", 1.0)
    print(f"  {hosts} played hosts, {count} VMs created at {rate:.0f}/s, played start {delay:.1f}s")
    kube = await Kube.connect(str(cp.kubeconfig))
    await make_namespaces(kube)
    fleet = PlayedFleet(kube, hosts, start_delay=delay)
    await fleet.start()
    try:
        token = await login(url, admin)
        await asyncio.sleep(5)  # the operator sees the Leases and marks the Hosts Ready
        start = time.monotonic()
        clock = CpuClock(cp, operator, gateway)
        latencies = await create_all(url, token, fleet, count, rate)
        created_in = time.monotonic() - start
        await wait_running(fleet, count, timeout=max(300.0, count / rate * 3))
        burst = time.monotonic() - start
        done = [t for t in fleet.times.values() if t.created and t.running and t.placed]
        to_running = [t.running - t.created for t in done if t.running and t.created]
        to_placed = [t.placed - t.created for t in done if t.placed and t.created]
        placed_at = [t.placed for t in done if t.placed]
        print("placement")
        post_ms = statistics.median(latencies) * 1000
        _row("creates through REST", f"{count / created_in:.0f}/s, POST p50 {post_ms:.0f} ms", f"asked {rate:.0f}/s")
        if placed_at:
            span = max(max(placed_at) - min(placed_at), 1e-3)
            _row("VMs placed per second (first to last)", f"{len(placed_at) / span:.0f}/s")
        _row("create to placed p50/p95", f"{_pct(to_placed, 0.5):.2f} / {_pct(to_placed, 0.95):.2f} s")
        _row(
            "create to Running p50/p95/p99",
            f"{_pct(to_running, 0.5):.2f} / {_pct(to_running, 0.95):.2f} / {_pct(to_running, 0.99):.2f} s",
            "target p95 <= 3 s",
        )
        clock.report(count, burst)
        over = await _overcommitted(kube, fleet)
        _row("hosts over-committed (final state)", str(len(over)), "target 0")
        for line in over[:5]:
            print(f"    {line}")

        print("idle fleet (one quiet minute)")
        await asyncio.sleep(15)
        proc = psutil.Process(_pid(operator))
        proc.cpu_percent()
        before = _writes(cp)
        await asyncio.sleep(60)
        by_kind = _writes(cp) - before
        writes = sum(by_kind.values())
        own = by_kind["POST endpoints"] + by_kind["PUT leases"]  # the API server's own (its endpoints, identity Lease)
        shown = f"{(writes - own) / hosts:.1f} ({writes} in all, {own} the API server's)"
        _row("API writes per host per minute", shown, "target <= 6")
        for what, n in by_kind.most_common(4):
            print(f"    {n:6d} {what}")
        _who_wrote(cp)
        _row("operator RSS", f"{proc.memory_info().rss / 2**20:.0f} MiB", "target <= 300 MB")
        _row("operator CPU, idle", f"{proc.cpu_percent():.1f}% of a core", "target <= 10%")

        print(f"the gateway with {count} VMs")
        page, page_rate = await _timed_gets(url, token, "/vms?limit=100", 200)
        whole, whole_rate = await _timed_gets(url, token, "/vms", 20)
        _row("GET /vms?limit=100 p50/p99", _ms(page, 1), f"{page_rate:.0f} req/s")
        _row("GET /vms (whole) p50/p99", _ms(whole, 0), f"{whole_rate:.1f} req/s")
        _row("gateway RSS", f"{psutil.Process(_pid(gateway)).memory_info().rss / 2**20:.0f} MiB")
    finally:
        await fleet.stop()
        await kube.close()


@contextlib.contextmanager
def fleet_stack() -> Iterator[tuple[ControlPlane, str, LinuxUser, Component, Component]]:
    """The control plane, the operator and the gateway as processes, and an admin to log in as."""
    with tempfile.TemporaryDirectory() as tmp, linux_accounts() as accounts, pam_service() as service:
        # VAPOR_FLEET_LOGS=<folder> keeps the components' logs there (VAPOR_FLEET_VERBOSE=1: the operator's at debug).
        folder = Path(os.environ.get("VAPOR_FLEET_LOGS") or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        verbose = ["--verbose"] if os.environ.get("VAPOR_FLEET_VERBOSE") else []
        admins = accounts.group("admins")
        admin = accounts.user("adm", groups=(admins,))
        with ControlPlane(folder / "cp") as cp:
            kubeconfig = str(cp.kubeconfig)
            port = free_port()
            # The operator at its own defaults (not the tests' fast loops): what a cluster runs.
            operator_args = ["--kubeconfig", kubeconfig, *verbose]
            operator = Component("vapor.operator", operator_args, folder / "operator.log").start()
            env = {"VAPOR_PAM_SERVICE": service, "VAPOR_ADMIN_GROUPS": admins, "VAPOR_RATE_LIMIT": "0"}
            args = ["--bind", f"127.0.0.1:{port}", "--kubeconfig", kubeconfig]
            gateway = Component("vapor.gateway", args, folder / "gateway.log", env).start()
            try:
                wait_until(lambda: gateway_answers(f"http://127.0.0.1:{port}"), 60, what="gateway up")
                yield cp, f"http://127.0.0.1:{port}", admin, operator, gateway
            finally:
                gateway.stop()
                operator.stop()


async def login(url: str, admin: LinuxUser) -> str:
    """An admin's bearer token."""
    async with httpx.AsyncClient(base_url=url) as http:
        r = await http.post("/api/v1/auth/login", json={"username": admin.name, "password": admin.password})
        return str(r.json()["data"]["token"])


def main() -> None:
    """Start the control plane, operator and gateway; play the fleet; print the figures."""
    with fleet_stack() as (cp, url, admin, operator, gateway):
        asyncio.run(_run(cp, url, admin, operator, gateway))


def _who_wrote(cp: ControlPlane) -> None:
    """Who wrote the first VM, and when (its managedFields): names the writer of an idle fleet's writes."""
    shown = cp.kubectl_run("get", "vvm", "vm-00000", "-n", "fleet-0", "-o", "json", "--show-managed-fields")
    for entry in json.loads(shown.stdout)["metadata"].get("managedFields") or []:
        fields = ",".join(sorted(entry.get("fieldsV1", {}).keys()))
        where = f"{entry['operation']} {entry.get('subresource', '')}"
        print(f"    vm-00000: {entry['manager']} {where} {entry['time']} {fields}")


def _pid(component: Component) -> int:
    assert component.proc is not None
    return component.proc.pid
