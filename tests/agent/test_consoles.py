"""A VM's serial console and display through the gateway and the agent, on a real libvirtd and QEMU.

The agent runs as a real process (its node API allows the test's gateway
ServiceAccount); the gateway is a real app in the test's loop. The VM has
no disk and no OS: SeaBIOS writes to the serial port (``<bios
useserial='yes'/>`` of the agent's domain XML), so a reset shows "SeaBIOS"
on the console, and QEMU's VNC server answers the RFB handshake although it
listens on no address.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import libvirt
import orjson
import pytest
from quart.testing.connections import WebsocketDisconnectError
from quart.typing import TestClientProtocol as Client
from quart.typing import TestWebsocketConnectionProtocol as Socket

from vapor.gateway import create_app
from vapor.kube import Kube
from vapor.model import VirtualMachine

from ..conftest import Kubectl
from ..gateway.conftest import (  # noqa: F401
    Users,
    gateway_config,
    login,
    pam_service_name,
    secret_namespace,
    users,
)
from ..support.agent import AgentProcess
from ..support.wait import eventually
from .conftest import place_vm

GATEWAY_SA = "gateway"


@dataclass
class Consoles:
    """A running agent, a gateway app in front of it, and a running diskless VM on the agent's node."""

    client: Client
    users: Users
    vm: VirtualMachine
    domain: libvirt.virDomain
    namespace: str
    kube: Kube
    agent: AgentProcess

    @property
    def uid(self) -> str:
        return self.vm.metadata.uid or ""


async def _phase(kube: Kube, namespace: str, name: str, phase: str, agent: AgentProcess) -> VirtualMachine:
    async def probe() -> VirtualMachine | None:
        vm = await kube.resources(VirtualMachine).get(name, namespace)
        return vm if vm.phase == phase else None

    try:
        return await eventually(probe, 90, f"{name} to reach {phase}")  # type: ignore[no-any-return]
    except AssertionError:
        print(agent.log()[-20000:])
        raise


@contextlib.asynccontextmanager
async def _gateway(config: dict[str, Any]) -> AsyncIterator[Client]:
    async with create_app(config).test_app() as app:
        yield app.test_client()


@pytest.fixture
async def consoles(
    agent_factory: Callable[..., AgentProcess],
    node_name: str,
    kube: Kube,
    kubectl: Kubectl,
    namespace: str,
    virt: libvirt.virConnect,
    gateway_config: dict[str, Any],  # noqa: F811
    users: Users,  # noqa: F811
) -> AsyncIterator[Consoles]:
    kubectl("create", "serviceaccount", GATEWAY_SA, "-n", namespace)
    allowed = f"system:serviceaccount:{namespace}:{GATEWAY_SA}"
    # TCG: SeaBIOS after a reset is plain emulation (this machine's KVM is kvm_pvm, see kvm_runs_linux)
    agent = agent_factory(node_name, extra_args=("--api-allowed-user", allowed, "--domain-type", "qemu")).start()
    name = f"vtest-{uuid.uuid4().hex[:6]}"
    await place_vm(kube, namespace, name, node_name)
    vm = await _phase(kube, namespace, name, "Running", agent)
    assert vm.status is not None and vm.status.domain_uuid
    config = {**gateway_config, "AGENT_SERVICE_ACCOUNT": f"{namespace}/{GATEWAY_SA}"}
    async with _gateway(config) as client:
        yield Consoles(client, users, vm, virt.lookupByUUIDString(vm.status.domain_uuid), namespace, kube, agent)


async def _send(ws: Socket, message: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(message).decode())


async def _json(ws: Socket, timeout: float = 30) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.receive(), timeout)
    assert isinstance(raw, str), raw
    body = orjson.loads(raw)
    assert isinstance(body, dict)
    return body


async def _open(ws: Socket, token: str, **subscribe: Any) -> None:
    await _send(ws, {"type": "auth", "payload": {"token": token}})
    answer = await _json(ws)
    assert answer["type"] == "auth" and answer["status"] == "ok", answer
    await _send(ws, {"type": "subscribe", "payload": {"cols": 80, "rows": 24, **subscribe}})


async def _refusal(ws: Socket) -> tuple[str, str, int]:
    """The error message and close code a refused socket ends with: (code, message, close code).

    Console bytes still on their way before it are skipped.
    """
    raw: str | bytes = b""
    async with asyncio.timeout(30):
        while isinstance(raw, bytes):
            raw = await ws.receive()
    answer = orjson.loads(raw)
    assert answer["type"] == "error", answer
    with pytest.raises(WebsocketDisconnectError) as closed:
        await asyncio.wait_for(ws.receive(), 30)
    return answer["error"]["code"], answer["error"]["message"], closed.value.args[0]


async def _bytes_until(ws: Socket, needle: bytes, timeout: float = 30) -> bytes:
    """Binary frames of the socket until they hold ``needle``."""
    seen = b""
    async with asyncio.timeout(timeout):
        while needle not in seen:
            data = await ws.receive()
            assert isinstance(data, bytes), data
            seen += data
    return seen


async def _bytes_at_least(ws: Socket, count: int, timeout: float = 30) -> bytes:
    """Binary frames of the socket until they hold ``count`` bytes."""
    seen = b""
    async with asyncio.timeout(timeout):
        while len(seen) < count:
            data = await ws.receive()
            assert isinstance(data, bytes), data
            seen += data
    return seen


async def _seabios(c: Consoles, ws: Socket) -> bytes:
    """Reset the VM until SeaBIOS's banner shows on the console (a session is open on ``ws``).

    The reset must come after the agent opened the console, and on a loaded machine the banner may take
    seconds: what came is kept across resets.
    """
    seen = b""
    for _ in range(12):
        await asyncio.to_thread(c.domain.reset, 0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                while b"SeaBIOS" not in seen:
                    data = await ws.receive()
                    assert isinstance(data, bytes), data
                    seen += data
                return seen
    raise AssertionError(f"no SeaBIOS banner on the console; it showed {seen[-400:]!r}")


async def _events(c: Consoles, reason: str) -> list[str]:
    listed = await c.kube.core.list_namespaced_event(c.namespace)
    return [e.message or "" for e in listed.items if e.involved_object.name == c.vm.name and e.reason == reason]


async def test_the_serial_console_shows_what_the_vm_writes(consoles: Consoles) -> None:
    c = consoles
    # The domain's display listens on no address: QEMU's VNC is reached only through libvirt.
    xml = ET.fromstring(c.domain.XMLDesc(0))
    graphics = xml.find("devices/graphics")
    assert graphics is not None and graphics.get("type") == "vnc"
    assert [(el.get("type"), el.get("address")) for el in graphics.iter("listen")] == [("none", None)]
    assert graphics.get("port") in (None, "-1") and graphics.get("listen") is None
    token = (await login(c.client, c.users.admin))["token"]
    async with c.client.websocket(f"/ws/vms/{c.uid}/console") as ws:
        await _open(ws, token)
        await _send(ws, {"type": "resize", "cols": 120, "rows": 40})  # accepted, nothing to do on a serial port
        await ws.send(b"\r")  # keys go to the serial port
        assert b"SeaBIOS" in await _seabios(c, ws)
    reasons = await eventually(lambda: _events(c, "ConsoleOpened"), 10, "the ConsoleOpened Event")
    assert any(c.users.admin.name in note for note in reasons), reasons
    # By name and namespace, as the REST routes take them.
    async with c.client.websocket(f"/ws/vms/{c.vm.name}/console?namespace={c.namespace}") as ws:
        await _open(ws, token)
        assert b"SeaBIOS" in await _seabios(c, ws)


async def test_the_display_answers_the_rfb_handshake(consoles: Consoles) -> None:
    c = consoles
    token = (await login(c.client, c.users.admin))["token"]
    async with c.client.websocket(f"/ws/vms/{c.uid}/vnc") as ws:
        await _open(ws, token)
        assert await _bytes_until(ws, b"\n") == b"RFB 003.008\n"
        await ws.send(b"RFB 003.008\n")  # the client's version: the server offers its security types
        types = await _bytes_at_least(ws, 2)
        assert types[0] >= 1 and 1 in types[1 : 1 + types[0]], types  # None (1): the agent is the only way in
    reasons = await eventually(lambda: _events(c, "DisplayOpened"), 10, "the DisplayOpened Event")
    assert any(c.users.admin.name in note for note in reasons), reasons


async def test_one_session_at_a_time_unless_taken_over(consoles: Consoles, kubectl: Kubectl) -> None:
    c = consoles
    first_token = (await login(c.client, c.users.admin))["token"]
    second_token = (await login(c.client, c.users.admin))["token"]
    for kind in ("console", "vnc"):
        async with c.client.websocket(f"/ws/vms/{c.uid}/{kind}") as first:
            await _open(first, first_token)
            if kind == "console":
                await _seabios(c, first)
            else:
                await _bytes_until(first, b"RFB")
            async with c.client.websocket(f"/ws/vms/{c.uid}/{kind}") as second:
                await _open(second, second_token)
                code, message, close = await _refusal(second)
            assert (code, close) == ("CONFLICT", 4409), message
            assert f"open by {c.users.admin.name} since" in message and "force" in message, message
            async with c.client.websocket(f"/ws/vms/{c.uid}/{kind}") as third:
                await _open(third, second_token, force=True)
                code, message, close = await _refusal(first)  # the first is told, then closed
                assert (code, close) == ("CONFLICT", 4409), message
                assert message == f"taken over by {c.users.admin.name}"
                if kind == "console":
                    assert b"SeaBIOS" in await _seabios(c, third)
                else:
                    assert await _bytes_until(third, b"\n") == b"RFB 003.008\n"
    reasons = await _events(c, "ConsoleOpened")
    assert any("taking it over from" in note for note in reasons), reasons


async def test_who_and_what_is_refused(consoles: Consoles, kube: Kube, node_name: str) -> None:
    c = consoles
    viewer = (await login(c.client, c.users.viewer))["token"]
    admin = (await login(c.client, c.users.admin))["token"]
    async with c.client.websocket(f"/ws/vms/{c.uid}/console") as ws:
        await _send(ws, {"type": "auth", "payload": {"token": viewer}})
        code, message, close = await _refusal(ws)
    assert (code, close) == ("PERMISSION_DENIED", 4403), message
    for kind in ("console", "vnc"):
        async with c.client.websocket(f"/ws/vms/no-such-vm/{kind}?namespace={c.namespace}") as ws:
            await _open(ws, admin)
            code, message, _ = await _refusal(ws)
        assert code == "NOT_FOUND" and "no-such-vm" in message, message
    halted = f"vtest-{uuid.uuid4().hex[:6]}"
    await place_vm(kube, c.namespace, halted, node_name, run_strategy="Halted")
    stopped = await _phase(kube, c.namespace, halted, "Stopped", c.agent)

    async def cached() -> bool:
        response = await c.client.get(
            f"/api/v1/vms/{stopped.metadata.uid}", headers={"Authorization": f"Bearer {admin}"}
        )
        return response.status_code == 200 and (await response.get_json())["data"]["phase"] == "Stopped"

    await eventually(cached, 10, "the gateway's cache to show the stopped VM")
    for kind in ("console", "vnc"):
        async with c.client.websocket(f"/ws/vms/{halted}/{kind}?namespace={c.namespace}") as ws:
            await _open(ws, admin)
            code, message, close = await _refusal(ws)
        assert (code, close) == ("CONFLICT", 4409), message
        assert "is not running" in message, message


async def test_an_eleventh_socket_is_refused(consoles: Consoles) -> None:
    c = consoles
    token = (await login(c.client, c.users.admin))["token"]
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(10):
            ws = await stack.enter_async_context(c.client.websocket(f"/ws/vms/{c.uid}/console"))
            await _send(ws, {"type": "auth", "payload": {"token": token}})
            assert (await _json(ws))["status"] == "ok"
        async with c.client.websocket(f"/ws/vms/{c.uid}/console") as eleventh:
            code, message, close = await _refusal(eleventh)
        assert (code, close) == ("RATE_LIMITED", 4429), message


async def test_a_console_closes_when_its_token_expires(consoles: Consoles, gateway_config: dict[str, Any]) -> None:  # noqa: F811
    c = consoles
    lifetime = 5
    config = {**gateway_config, "AGENT_SERVICE_ACCOUNT": f"{c.namespace}/{GATEWAY_SA}", "TOKEN_LIFETIME": lifetime}
    async with _gateway(config) as client:
        token = (await login(client, c.users.admin))["token"]
        async with client.websocket(f"/ws/vms/{c.uid}/console") as ws:
            await _open(ws, token)
            await ws.send(b"\r")
            message: Any = b""
            async with asyncio.timeout(lifetime + 20):
                while isinstance(message, bytes):  # console bytes (if any) until the gateway's refusal
                    message = await ws.receive()
            answer = orjson.loads(message)
            assert answer["error"]["code"] == "UNAUTHORIZED" and "expired" in answer["error"]["message"], answer
            with pytest.raises(WebsocketDisconnectError) as closed:
                await asyncio.wait_for(ws.receive(), 15)
            assert closed.value.args[0] == 4401
        # The agent ended its session with the socket: a new one opens without force.
        token = (await login(client, c.users.admin))["token"]
        async with client.websocket(f"/ws/vms/{c.uid}/console") as ws:
            await _open(ws, token)
            assert b"SeaBIOS" in await _seabios(c, ws)
