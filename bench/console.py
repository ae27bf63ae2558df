"""Serial console round trip, a key to its echo: through the gateway and the agent, against ``virsh console``.

One Debian test guest boots on a Testbed host under the whole of Vapor
(control plane, operator, agent, gateway; as bench.guest_vm). At its getty's
login prompt every key is echoed by the guest: each round sends one key and
times until the first byte comes back, alternating a letter and DEL (whose
echo erases it), so the prompt stays as it was. The same guest and the same
keys are timed in the same run through ``virsh console --force`` on a PTY on
the host, which talks to the same libvirtd: the difference is what the
WebSocket hops (client -> gateway -> agent -> libvirt stream) add.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import select
import statistics
import subprocess
import time
from typing import Any

import aiohttp

from tests.conftest import Kubectl
from tests.support.guest import BOOT_TIMEOUT, GuestImage, ImageServer, guest_image, kvm_runs_linux
from tests.support.stack import Stack, running_stack
from tests.support.wait import wait_until
from vapor.devenv import ControlPlane

from .guest_boot import BenchHost, bench_host

ROUNDS = 200
KEYS = (b"v", b"\x7f")  # a letter, then DEL: getty echoes both, and the line is empty again


def _vm_body(image: str, network: str, run: str) -> dict[str, Any]:
    return {
        "name": "bench-console",
        "namespace": "default",
        "cpu": 1,
        "memory": "512Mi",
        "disks": [{"name": "root", "image": image}],
        "networks": [{"name": "nic0", "type": "network", "source": network}],
        "cloud_init": {"hostname": "bench-console"},
        "run_strategy": "Running",
        "host_selector": {"e2e-run": run},
    }


async def _through_vapor(stack: Stack, uid: str) -> list[float]:
    token = stack.login(stack.admin)["token"]
    url = stack.url.replace("http://", "ws://") + f"/ws/vms/{uid}/console"
    times: list[float] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_json({"type": "auth", "payload": {"token": token}})
        assert (await ws.receive_json(timeout=30)).get("status") == "ok"
        await ws.send_json({"type": "subscribe", "payload": {"force": True}})
        seen = b""
        async with asyncio.timeout(BOOT_TIMEOUT):  # the guest may still be booting: until its getty asks
            while b"login:" not in seen:
                await ws.send_bytes(b"\r")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        while b"login:" not in seen:
                            seen += (await ws.receive()).data
        await asyncio.sleep(1)
        with contextlib.suppress(TimeoutError):  # what was still on its way
            while True:
                await ws.receive(timeout=0.5)
        for i in range(ROUNDS):
            start = time.perf_counter()
            await ws.send_bytes(KEYS[i % 2])
            message = await ws.receive(timeout=10)
            times.append(time.perf_counter() - start)
            assert message.type == aiohttp.WSMsgType.BINARY, message
            await asyncio.sleep(0.02)
            with contextlib.suppress(TimeoutError):  # the rest of a split echo
                while True:
                    await ws.receive(timeout=0.05)
    return times


def _read_some(fd: int, timeout: float) -> bytes:
    ready, _, _ = select.select([fd], [], [], timeout)
    return os.read(fd, 65536) if ready else b""


def _drain(fd: int, quiet: float) -> bytes:
    out = b""
    while chunk := _read_some(fd, quiet):
        out += chunk
    return out


def _through_virsh(uri: str, domain: str) -> list[float]:
    master, slave = pty.openpty()
    virsh = subprocess.Popen(
        ["virsh", "-c", uri, "console", domain, "--force"], stdin=slave, stdout=slave, stderr=slave, close_fds=True
    )
    os.close(slave)
    times: list[float] = []
    try:
        wait_until(lambda: b"Escape character" in _read_some(master, 1), 30, what="virsh console")
        os.write(master, b"\r")
        seen, deadline = b"", time.monotonic() + 60
        while b"login:" not in seen and time.monotonic() < deadline:
            seen += _read_some(master, 1)
        assert b"login:" in seen, seen[-300:]
        _drain(master, 0.5)
        for i in range(ROUNDS):
            start = time.perf_counter()
            os.write(master, KEYS[i % 2])
            assert _read_some(master, 10), "no echo"
            times.append(time.perf_counter() - start)
            _drain(master, 0.05)
    finally:
        virsh.terminate()
        try:
            virsh.wait(5)
        except subprocess.TimeoutExpired:  # its raw terminal may hold on to SIGTERM
            virsh.kill()
            virsh.wait(5)
        os.close(master)
    return times


def _rounds(stack: Stack, bench: BenchHost, image: GuestImage) -> tuple[list[float], list[float]]:
    """Boot the guest through REST and time its console both ways; (through Vapor, through virsh)."""
    with ImageServer(image.path, "debian-12.qcow2") as served, stack.client(stack.admin) as api:
        body = {"name": "bench-console", "source": {"http": {"url": served.url}}, "checksum": image.sha256}
        assert api.post("/images", json=body).status_code == 201
        r = api.post("/vms", json=_vm_body("bench-console", bench.network.name, stack.run))
        assert r.status_code == 201, r.text
        uid = r.json()["data"]["id"]
        running = lambda: api.get(f"/vms/{uid}").json()["data"]["phase"] == "Running"  # noqa: E731
        wait_until(running, BOOT_TIMEOUT, what="Running")
        vapor = asyncio.run(_through_vapor(stack, uid))
        virsh = _through_virsh(bench.host.uri, "default_bench-console")
        api.post(f"/vms/{uid}/action", params={"wait": 60}, json={"action": "stop", "force": True})
        api.delete(f"/vms/{uid}")
        wait_until(lambda: api.get(f"/vms/{uid}").status_code == 404, 60, what="deleted")
        api.delete("/images/bench-console")
    return vapor, virsh


def main() -> None:
    """Print the key-to-echo times through Vapor and through virsh console, side by side."""
    image = guest_image()
    with bench_host(image, "vapor-bench-console-") as bench:
        agent_args = ("--domain-type", "kvm" if kvm_runs_linux() else "qemu")
        with (
            ControlPlane(bench.folder / "cp") as cp,
            running_stack(cp, Kubectl(cp), bench.host.uri, agent_args=agent_args) as stack,
        ):
            vapor, virsh = _rounds(stack, bench, image)
    v, b = statistics.median(vapor) * 1000, statistics.median(virsh) * 1000
    p95 = lambda xs: sorted(xs)[int(len(xs) * 0.95)] * 1000  # noqa: E731
    print(f"  serial console, a key to its echo at the login prompt, {ROUNDS} keys (median, p95):")
    print(f"  virsh console on the host                        {b:7.2f} ms  {p95(virsh):7.2f} ms")
    print(f"  WebSocket: client -> gateway -> agent -> libvirt {v:7.2f} ms  {p95(vapor):7.2f} ms")
    print(f"  Vapor's overhead over virsh console              {v - b:7.2f} ms")
