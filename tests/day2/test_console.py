"""The consoles of the real test guest through the stack's gateway (a real WebSocket client over loopback).

The serial console shows the guest's getty (the guest's kernel has
console=ttyS0), takes the login of ``debian`` with the console password
cloud-init set, and shows a typed command's output; the display answers
VNC's RFB handshake. Each session ends logged out, and the VM stays Running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from .conftest import HOSTNAME, Day2VM

pytestmark = [pytest.mark.day2, pytest.mark.guest, pytest.mark.timeout(1200)]


@contextlib.asynccontextmanager
async def console(vm: Day2VM, kind: str) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """An open session of ``kind`` (console or vnc) on the shared VM, as the stack's admin."""
    url = vm.stack.url.replace("http://", "ws://") + f"/ws/vms/{vm.uid}/{kind}"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_json({"type": "auth", "payload": {"token": vm.token()}})
        answer: dict[str, Any] = await ws.receive_json(timeout=30)
        assert answer.get("status") == "ok", answer
        # force: a session another test left behind (or a person) does not stop this one
        await ws.send_json({"type": "subscribe", "payload": {"force": True, "cols": 80, "rows": 24}})
        yield ws


async def until(ws: aiohttp.ClientWebSocketResponse, *needles: bytes, timeout: float = 120) -> bytes:
    """The console's bytes until one of ``needles`` shows."""
    seen = b""
    try:
        async with asyncio.timeout(timeout):
            while not any(n in seen for n in needles):
                message = await ws.receive()
                assert message.type == aiohttp.WSMsgType.BINARY, (message, seen[-300:])
                seen += message.data
    except TimeoutError:
        raise AssertionError(f"no {needles} on the console within {timeout:.0f} s; it showed {seen[-600:]!r}") from None
    return seen


async def test_the_serial_console_logs_in_and_runs_a_command(day2_vm: Day2VM) -> None:
    day2_vm.ensure_running()
    status = day2_vm.ssh("sudo passwd -S debian")  # cloud-init has set the console password
    assert status.split()[1] == "P", status  # a usable password
    async with console(day2_vm, "console") as ws:
        await ws.send_bytes(b"\r")  # getty prints its prompt again
        assert f"{HOSTNAME} login:".encode() in await until(ws, b"login:")
        await ws.send_bytes(b"debian\r")
        await until(ws, b"Password:")
        await ws.send_bytes(day2_vm.password.encode() + b"\r")
        shell = await until(ws, b"$ ", b"incorrect", timeout=300)  # a login under TCG starts the user's systemd
        assert b"incorrect" not in shell, shell[-300:]
        # the line as typed echoes "$((6*7))"; only the shell's output reads 42
        await ws.send_bytes(b"echo console-$((6*7))-$(id -un)\r")
        assert b"console-42-debian" in await until(ws, b"console-42-debian")
        await ws.send_bytes(b"exit\r")
        await until(ws, b"login:")


async def test_the_display_answers_the_rfb_handshake(day2_vm: Day2VM) -> None:
    day2_vm.ensure_running()
    async with console(day2_vm, "vnc") as ws:
        assert await until(ws, b"\n", timeout=30) == b"RFB 003.008\n"
        await ws.send_bytes(b"RFB 003.008\n")
        offered = await until(ws, b"\x01", timeout=30)  # the count of security types, then None (1)
        assert offered[0] >= 1 and 1 in offered[1 : 1 + offered[0]], offered
