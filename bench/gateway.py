"""The gateway's GET /api/v1/vms against a direct LIST from the kube-apiserver, with 1,000 VMs (or more).

Starts a fresh control plane, creates 1,000 VirtualMachines
(``VAPOR_BENCH_GATEWAY_VMS=10000`` for a fleet's worth), each placed on one of
100 hosts and Running as an agent would report, runs ``python -m
vapor.gateway`` (one Hypercorn worker) on a loopback port, then drives both
endpoints with the same small HTTP/1.1 keep-alive client (a few concurrent
connections, a bounded number of requests) and prints latency p50/p99,
requests per second and the gateway's CPU per request side by side: the whole
list, plain and gzip; a page of 100 at the start and in the middle of the
list, and filtered by host and phase; the same under a steady churn of VM
changes. Then the gateway's RSS and what each of its VM caches holds, per VM.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml
from kubernetes import client, config

from vapor.devenv import ControlPlane
from vapor.devenv.processes import free_port
from vapor.gateway._tokens import TokenSigner, load_signing_key
from vapor.kube import Kube
from vapor.model import VirtualMachine, VirtualMachineStatus

from ._gateway_caches import cache_sizes
from ._samples import typical_vm

N_VMS = int(os.environ.get("VAPOR_BENCH_GATEWAY_VMS", "1000"))
N_HOSTS = 100
CONNECTIONS = 8
GATEWAY_REQUESTS = 4000  # of a small body; the whole list gets as many per 1,000 VMs as it holds
WHOLE_REQUESTS = max(200, GATEWAY_REQUESTS * 1000 // N_VMS)
LIST_REQUESTS = max(16, 200 * 1000 // N_VMS)
SECRET_NAMESPACE = "vapor-system"
GZIP = {"Accept-Encoding": "gzip"}
CHURN_PER_SECOND = 20.0


@dataclass(frozen=True)
class Target:
    """Where to send GETs: host, port, path, headers, TLS."""

    host: str
    port: int
    path: str
    headers: dict[str, str]
    tls: ssl.SSLContext | None = None


async def _read_body(reader: asyncio.StreamReader) -> tuple[int, int]:
    """Read one response; return (status, body bytes). Handles Content-Length and chunked bodies."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in fields:
        body = await reader.readexactly(int(fields["content-length"]))
        return status, len(body)
    size = 0
    while True:  # chunked
        chunk = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if chunk == 0:
            await reader.readuntil(b"\r\n")
            return status, size
        size += len(await reader.readexactly(chunk + 2)) - 2


async def _connection(target: Target, count: int, out: list[float], sizes: list[int]) -> None:
    reader, writer = await asyncio.open_connection(target.host, target.port, ssl=target.tls)
    request = (
        f"GET {target.path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in target.headers.items())
        + "\r\n"
    ).encode()
    try:
        for _ in range(count):
            start = time.perf_counter()
            writer.write(request)
            status, size = await _read_body(reader)
            out.append(time.perf_counter() - start)
            if status != 200:
                raise RuntimeError(f"{target.path} answered {status}")
            sizes.append(size)
    finally:
        writer.close()


async def _load(target: Target, total: int, connections: int) -> tuple[list[float], float, int]:
    """Send ``total`` GETs over ``connections`` keep-alive connections; latencies, wall time, body size."""
    latencies: list[float] = []
    sizes: list[int] = []
    await _connection(target, 5, [], [])  # warm up
    start = time.perf_counter()
    per = total // connections
    await asyncio.gather(*(_connection(target, per, latencies, sizes) for _ in range(connections)))
    return latencies, time.perf_counter() - start, sizes[-1] if sizes else 0


def _row(label: str, latencies: list[float], wall: float, size: int) -> str:
    ms = sorted(s * 1000 for s in latencies)
    p50, p99 = statistics.median(ms), ms[max(0, int(len(ms) * 0.99) - 1)]
    rate = len(ms) / wall
    return f"  {label:<34} {rate:8.0f} req/s   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   body {size / 1024:6.0f} KiB"


def _apiserver_target(kubeconfig: Path, tmp: Path, headers: dict[str, str] | None = None) -> Target:
    """The LIST of the same VMs, over TLS with the admin client certificate."""
    cfg = yaml.safe_load(kubeconfig.read_text())
    cluster = cfg["clusters"][0]["cluster"]
    user = cfg["users"][0]["user"]
    files = {}
    for name, key in (
        ("ca", "certificate-authority-data"),
        ("cert", "client-certificate-data"),
        ("key", "client-key-data"),
    ):
        source = cluster if name == "ca" else user
        files[name] = tmp / f"{name}.pem"
        files[name].write_bytes(base64.b64decode(source[key]))
    context = ssl.create_default_context(cafile=str(files["ca"]))
    context.load_cert_chain(str(files["cert"]), str(files["key"]))
    host, _, port = cluster["server"].removeprefix("https://").partition(":")
    return Target(
        host,
        int(port),
        "/apis/vapor.io/v1alpha1/namespaces/bench/virtualmachines",
        {"Accept": "application/json"},
        context,
    )


def _create_vms(api: client.ApiClient) -> None:
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "bench"}})

    def create(i: int) -> Any:
        vm = typical_vm(f"vm-{i:05d}", "bench")
        return custom.create_namespaced_custom_object("vapor.io", "v1alpha1", "bench", "virtualmachines", vm)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(create, range(N_VMS)))


async def _place_vms(kubeconfig: Path) -> None:
    """Each VM Running on one of N_HOSTS hosts, written as its agent would (the filters' figures need them)."""
    async with await Kube.connect(str(kubeconfig)) as kube:
        vms = kube.resources(VirtualMachine)
        queue = list(range(N_VMS))

        async def writer() -> None:
            while queue:
                i = queue.pop()
                host = f"node-{i % N_HOSTS:03d}"
                status = VirtualMachineStatus(phase="Running", host=host, host_id=f"id-{host}")
                await vms.patch_status(f"vm-{i:05d}", status, namespace="bench", field_manager="bench")

        await asyncio.gather(*(writer() for _ in range(8)))


async def _viewer_token(kubeconfig: Path) -> str:
    """A viewer token signed with the gateway's key from its Secret (login itself is not what is measured)."""
    async with await Kube.connect(str(kubeconfig)) as kube:
        key = await load_signing_key(kube, SECRET_NAMESPACE, "vapor-gateway-signing-key")
    return TokenSigner(key, 3600).issue("bench", "viewer")[0]


async def _churn(kubeconfig: Path, per_second: float, stop: asyncio.Event) -> int:
    """Change one VM's status ``per_second`` times a second, as agents would, until ``stop``."""
    changes = 0
    async with await Kube.connect(str(kubeconfig)) as kube:
        vms = kube.resources(VirtualMachine)
        while not stop.is_set():
            phase = "Running" if changes % 2 else "Starting"
            name = f"vm-{changes % N_VMS:05d}"
            await vms.patch_status(name, VirtualMachineStatus(phase=phase), namespace="bench", field_manager="bench")
            changes += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1 / per_second)
    return changes


async def _wait_ready(target: Target, want: int) -> None:
    url = f"http://{target.host}:{target.port}{target.path}"
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(600):
            try:
                response = await http.get(url, headers=target.headers)
                if response.status_code == 200 and response.json()["data"]["count"] >= want:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the gateway did not come up with every VM in its cache")


def main() -> None:
    """Print the figures."""
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        cp = ControlPlane(tmp / "cp")
        cp.up()
        gateway: subprocess.Popen[bytes] | None = None
        try:
            api = config.new_client_from_config(str(cp.kubeconfig))
            start = time.perf_counter()
            _create_vms(api)
            print(f"  created {N_VMS} VirtualMachines in {time.perf_counter() - start:.1f} s")
            start = time.perf_counter()
            asyncio.run(_place_vms(cp.kubeconfig))
            print(f"  placed them on {N_HOSTS} hosts, Running, in {time.perf_counter() - start:.1f} s")
            port = free_port()
            log = (tmp / "gateway.log").open("wb")
            gateway = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "vapor.gateway",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--kubeconfig",
                    str(cp.kubeconfig),
                ],
                env={**os.environ, "VAPOR_SECRET_NAMESPACE": SECRET_NAMESPACE, "VAPOR_RATE_LIMIT": "0"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            asyncio.run(_run(cp.kubeconfig, port, tmp, gateway.pid))
        finally:
            if gateway is not None:
                gateway.terminate()
                gateway.wait(timeout=15)
            cp.down()


async def _measure(label: str, target: Target, total: int, process: psutil.Process) -> float:
    """Print one row (with the gateway's CPU per request for its targets); the requests per second."""
    cpu = sum(process.cpu_times()[:2])
    latencies, wall, size = await _load(target, total, CONNECTIONS)
    used = sum(process.cpu_times()[:2]) - cpu
    extra = f"   gateway CPU {used / len(latencies) * 1e6:5.0f} us/req" if "gateway" in label else ""
    print(_row(label, latencies, wall, size) + extra)
    return len(latencies) / wall


async def _middle_token(gateway: Target) -> str:
    """The continue token of the page that starts in the middle of the list."""
    url = f"http://{gateway.host}:{gateway.port}{gateway.path}?limit={N_VMS // 2}"
    async with httpx.AsyncClient(timeout=60) as http:
        return str((await http.get(url, headers=gateway.headers)).json()["data"]["continue"])


async def _run(kubeconfig: Path, port: int, tmp: Path, pid: int) -> None:
    await asyncio.sleep(0.5)
    token = await _viewer_token(kubeconfig)
    auth = {"Authorization": f"Bearer {token}"}
    gateway = Target("127.0.0.1", port, "/api/v1/vms", auth)
    await _wait_ready(gateway, N_VMS)
    process = psutil.Process(pid)
    print(f"  load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} (1, 5, 15 min)")
    print(f"  GET of {N_VMS} VMs, {CONNECTIONS} keep-alive connections, one Hypercorn worker:")
    middle = await _middle_token(gateway)

    def at(path: str, headers: dict[str, str] | None = None) -> Target:
        return Target("127.0.0.1", port, path, {**auth, **(headers or {})})

    page = at("/api/v1/vms?limit=100")
    rates = {}
    for label, target, total in (
        ("gateway GET /api/v1/vms", gateway, WHOLE_REQUESTS),
        ("gateway GET /api/v1/vms (gzip)", at("/api/v1/vms", GZIP), WHOLE_REQUESTS),
        ("gateway GET ?limit=100", page, GATEWAY_REQUESTS),
        ("gateway GET ?limit=100 (gzip)", at("/api/v1/vms?limit=100", GZIP), GATEWAY_REQUESTS),
        ("gateway GET ?limit=100, middle", at(f"/api/v1/vms?limit=100&continue={middle}"), GATEWAY_REQUESTS),
        ("gateway GET ?host=&phase=&limit=100", at("/api/v1/vms?host=node-007&phase=Running&limit=100"), 4000),
        ("gateway GET /api/v1/hosts (empty)", at("/api/v1/hosts"), GATEWAY_REQUESTS),
        ("kube-apiserver LIST (direct)", _apiserver_target(kubeconfig, tmp), LIST_REQUESTS),
        ("kube-apiserver LIST (gzip)", _apiserver_target(kubeconfig, tmp, GZIP), LIST_REQUESTS),
    ):
        rates[label] = await _measure(label, target, total, process)
    for label, target, total in (("whole list", gateway, WHOLE_REQUESTS), ("?limit=100", page, GATEWAY_REQUESTS)):
        stop = asyncio.Event()
        churn = asyncio.create_task(_churn(kubeconfig, CHURN_PER_SECOND, stop))
        await _measure(f"{label} with {CHURN_PER_SECOND:g} VM changes/s", target, total, process)
        stop.set()
        print(f"    ({await churn} changes, a re-encode after each)")
    for mode in ("", " (gzip)"):
        ratio = rates[f"gateway GET /api/v1/vms{mode}"] / rates[f"kube-apiserver LIST{mode or ' (direct)'}"]
        print(f"  gateway / LIST{mode}: {ratio:.1f}x the requests per second")
    print(f"  gateway RSS {process.memory_info().rss / 2**20:.0f} MiB; its VM caches (tracemalloc, same classes):")
    for what, size in await cache_sizes(kubeconfig):
        print(f"    {what:<40} {size / 2**20:8.1f} MiB   {size / N_VMS:8.0f} bytes/VM")
