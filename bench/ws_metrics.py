"""/ws/metrics fan-out: CPU of the gateway and of the agent with 1 and with 10 subscribed clients.

Starts a fresh control plane, the agent's node-local API (only its WebSocket
routes, in its own process, TLS on) publishing itself in a Host, and
``python -m vapor.gateway`` (one Hypercorn worker) configured to reach it as a
ServiceAccount. Then N clients authenticate, subscribe to /ws/metrics and read
for MEASURE_SECONDS; psutil reads both processes' CPU times. Baseline: the
same processes with no client, and with 1 client; the cost per client is the
CPU above idle divided by N.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
import psutil
from kubernetes import client, config

from vapor.devenv import ControlPlane
from vapor.devenv.processes import free_port

from .gateway import _viewer_token

NAMESPACE = "bench"
SERVICE_ACCOUNT = "gateway"
NODE = "bench-node"
WARMUP_SECONDS = 3.0
MEASURE_SECONDS = 20.0


async def _agent(kubeconfig: str, state: str) -> None:
    """The agent side: a NodeAPI serving vapor.agent.nodeapi.ws, published in Host ``NODE``."""
    from vapor.agent._config import AgentConfig
    from vapor.agent.nodeapi import ws as ws_api
    from vapor.agent.nodeapi.server import NodeAPI
    from vapor.kube import Kube
    from vapor.model import Host, HostSpec, ObjectMeta

    async with await Kube.connect(kubeconfig) as kube:
        await kube.resources(Host).create(
            Host(metadata=ObjectMeta(name=NODE), spec=HostSpec()), field_manager="vapor-bench"
        )
        settings = AgentConfig(
            node_name=NODE,
            state_dir=Path(state),
            api_bind="127.0.0.1:0",
            api_allowed_user=f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}",
            docker_host="",
            cri_sockets=(),
        )
        api = NodeAPI(settings, kube, routes=[ws_api.routes])
        await api.start()
        await api.publish()
        print("ready", flush=True)
        await asyncio.Event().wait()


async def _client(port: int, token: str, counts: list[int], index: int) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(f"ws://127.0.0.1:{port}/ws/metrics") as ws:
        await ws.send_str(orjson.dumps({"type": "auth", "payload": {"token": token}}).decode())
        answer = orjson.loads((await ws.receive()).data)
        if answer.get("status") != "ok":
            raise RuntimeError(f"auth refused: {answer}")
        await ws.send_str('{"type":"subscribe"}')
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            counts[index] += 1


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def _measure(port: int, token: str, n: int, processes: dict[str, psutil.Process]) -> dict[str, float]:
    counts = [0] * n
    tasks = [asyncio.create_task(_client(port, token, counts, i)) for i in range(n)]
    await asyncio.sleep(WARMUP_SECONDS)
    for task in tasks:
        if task.done():
            task.result()
    before = {name: _cpu(p) for name, p in processes.items()}
    received = sum(counts)
    start = time.perf_counter()
    await asyncio.sleep(MEASURE_SECONDS)
    wall = time.perf_counter() - start
    out = {name: (_cpu(p) - before[name]) / wall * 100 for name, p in processes.items()}
    out["messages/s"] = (sum(counts) - received) / wall
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return out


async def _run(kubeconfig: Path, port: int, processes: dict[str, psutil.Process]) -> None:
    token = ""
    for _ in range(300):  # the gateway makes its signing key at start
        with contextlib.suppress(Exception):
            token = await _viewer_token(kubeconfig)
            break
        await asyncio.sleep(0.2)
    async with aiohttp.ClientSession() as session:
        for _ in range(300):  # until the gateway listens and is ready
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        break
            await asyncio.sleep(0.2)
    print(f"  {MEASURE_SECONDS:g} s per row after {WARMUP_SECONDS:g} s warm-up; CPU in % of one core")
    rows = {n: await _measure(port, token, n, processes) for n in (1, 10)}
    idle = await _measure(port, token, 0, processes)  # last: both processes are past their start-up work
    print(f"  {'clients':>7} {'gateway %':>10} {'agent %':>8} {'msgs/s':>8}  per client above idle (gw+agent)")
    print(f"  {0:>7} {idle['gateway']:10.2f} {idle['agent']:8.2f} {idle['messages/s']:8.1f}  (idle, measured last)")
    for n, row in rows.items():
        per = (row["gateway"] - idle["gateway"] + row["agent"] - idle["agent"]) / n
        print(f"  {n:>7} {row['gateway']:10.2f} {row['agent']:8.2f} {row['messages/s']:8.1f}  {per:.2f} %")
    one = (rows[1]["gateway"] - idle["gateway"] + rows[1]["agent"] - idle["agent"]) or 1e-9
    ten = (rows[10]["gateway"] - idle["gateway"] + rows[10]["agent"] - idle["agent"]) / 10
    print(f"  cost per client with 10 clients / with 1 client (baseline): {ten / one:.2f}")


def main() -> None:
    """Print the figures."""
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        cp = ControlPlane(tmp / "cp")
        cp.up()
        children: list[subprocess.Popen[bytes]] = []
        try:
            api = config.new_client_from_config(str(cp.kubeconfig))
            core = client.CoreV1Api(api)
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
            core.create_namespaced_service_account(
                NAMESPACE, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=SERVICE_ACCOUNT))
            )
            agent = subprocess.Popen(
                [sys.executable, "-m", "bench.ws_metrics", "--agent", str(cp.kubeconfig), str(tmp / "agent")],
                stdout=subprocess.PIPE,
                stderr=(tmp / "agent.log").open("wb"),
            )
            children.append(agent)
            assert agent.stdout is not None
            if agent.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"the agent did not start: {(tmp / 'agent.log').read_text()[-2000:]}")
            port = free_port()
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
                env={
                    **os.environ,
                    "VAPOR_SECRET_NAMESPACE": "vapor-system",
                    "VAPOR_RATE_LIMIT": "0",
                    "VAPOR_DEFAULT_HOST": NODE,
                    "VAPOR_AGENT_SERVICE_ACCOUNT": f"{NAMESPACE}/{SERVICE_ACCOUNT}",
                },
                stdout=(tmp / "gateway.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
            children.append(gateway)
            processes = {"gateway": psutil.Process(gateway.pid), "agent": psutil.Process(agent.pid)}
            asyncio.run(_run(cp.kubeconfig, port, processes))
        finally:
            for child in reversed(children):
                child.terminate()
                child.wait(timeout=15)
            cp.down()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--agent"]:
        Path(sys.argv[3]).mkdir(parents=True, exist_ok=True)
        asyncio.run(_agent(sys.argv[2], sys.argv[3]))
    else:
        main()
