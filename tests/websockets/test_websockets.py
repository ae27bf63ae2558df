"""The contract's WebSockets end to end: gateway (auth, limits) -> node-local API -> PTY / psutil / journal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from quart.typing import TestWebsocketConnectionProtocol as Socket

from vapor.gateway import create_app

from ..conftest import Kubectl
from ..gateway.conftest import Users, login
from ..support.journald import write_journal
from ..support.nodeapi import NodeAPIHarness
from ..support.wait import eventually
from .conftest import authenticate, receive, send

METRICS = {"cpu", "memory", "disk", "network"}


async def _output_until(ws: Socket, needle: str) -> str:
    seen = ""
    while needle not in seen:
        message = await asyncio.wait_for(receive(ws), 30)
        assert message["type"] in ("output", "exit"), message
        if message["type"] == "exit":
            break
        seen += message["data"]
    return seen


async def test_terminal_runs_as_the_logged_in_user(gw_client: Client, users: Users) -> None:
    token = (await login(gw_client, users.admin))["token"]
    async with gw_client.websocket("/ws/terminal") as ws:
        await authenticate(ws, token)
        await send(ws, {"type": "subscribe", "payload": {"cols": 100, "rows": 30}})
        await send(ws, {"type": "input", "data": "echo who=$(id -un) groups=$(id -u); stty size\n"})
        seen = await _output_until(ws, "30 100")
        assert f"who={users.admin.name}" in seen
        assert "groups=0" not in seen  # not root
        await send(ws, {"type": "resize", "cols": 90, "rows": 20})
        await send(ws, {"type": "input", "data": "stty size\n"})
        assert "20 90" in await _output_until(ws, "20 90")
        await send(ws, {"type": "input", "data": "exit 3\n"})
        while (message := await asyncio.wait_for(receive(ws), 30))["type"] != "exit":
            pass
        assert message["code"] == 3


def _processes_of(user: str) -> list[str]:
    found = subprocess.run(["pgrep", "-a", "-u", user], capture_output=True, text=True).stdout
    return found.splitlines()


async def test_terminal_closed_by_the_client_ends_the_whole_session(gw_client: Client, users: Users) -> None:
    """A hang-up ends the shell and what it left running: a background job, and one that ignores SIGHUP."""
    token = (await login(gw_client, users.admin))["token"]
    try:
        async with gw_client.websocket("/ws/terminal") as ws:
            await authenticate(ws, token)
            await send(ws, {"type": "subscribe", "payload": {}})
            # st""arted: the terminal echoes the typed line at once; only the shell's output reads "started"
            line = "sleep 1000 & (trap '' HUP; exec sleep 1001) & echo st\"\"arted\n"
            await send(ws, {"type": "input", "data": line})
            await _output_until(ws, "started")
            running = await eventually(
                lambda: len(_processes_of(users.admin.name)) >= 3 and _processes_of(users.admin.name), 10
            )
            assert any("sleep 1000" in p for p in running) and any("sleep 1001" in p for p in running), running
        await eventually(lambda: not _processes_of(users.admin.name), 15, "every process of the session gone")
    finally:
        subprocess.run(["pkill", "-KILL", "-u", users.admin.name], check=False)


async def test_metrics_stream_every_metric(gw_client: Client, users: Users) -> None:
    token = (await login(gw_client, users.viewer))["token"]
    async with gw_client.websocket("/ws/metrics") as ws:
        await authenticate(ws, token)
        await send(ws, {"type": "subscribe"})
        seen: dict[str, dict[str, object]] = {}
        stamps = set()
        while len(stamps) < 2 or set(seen) != METRICS:
            message = await asyncio.wait_for(receive(ws), 30)
            assert message["type"] == "metric"
            seen[message["metric"]] = message["data"]
            stamps.add(message["timestamp"])
    assert 0 <= float(seen["cpu"]["usage_percent"]) <= 100  # type: ignore[arg-type]
    assert int(seen["memory"]["total"]) > 0  # type: ignore[call-overload]
    assert int(seen["disk"]["total"]) > 0  # type: ignore[call-overload]
    assert int(seen["network"]["bytes_recv"]) >= 0  # type: ignore[call-overload]


@pytest.fixture
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A journal written by systemd-journal-remote with entries of two units at several priorities."""
    entries = [
        {
            "__REALTIME_TIMESTAMP": 1_700_000_000_000_000 + i,
            "_SYSTEMD_UNIT": f"{unit}.service",
            "PRIORITY": priority,
            "MESSAGE": f"entry {i} of {unit}",
            "_HOSTNAME": "fixture",
            "_PID": 100 + i,
            "_BOOT_ID": "0123456789abcdef0123456789abcdef",
            "__MONOTONIC_TIMESTAMP": i + 1,
        }
        for i, (unit, priority) in enumerate([("sshd", 6), ("sshd", 3), ("cron", 6), ("sshd", 7)])
    ]
    folder = tmp_path / "journal"
    write_journal(folder / "fixture.journal", entries)
    monkeypatch.setenv("VAPOR_JOURNAL_PATH", str(folder))
    return folder


async def test_logs_filtered_by_unit_and_priority(gw_client: Client, users: Users, journal: Path) -> None:
    token = (await login(gw_client, users.admin))["token"]
    async with gw_client.websocket("/ws/logs") as ws:
        await authenticate(ws, token)
        filters = {"unit": "sshd", "priority": "info", "follow": False}
        await send(ws, {"type": "subscribe", "payload": {"filters": filters}})
        got = []
        while (message := await asyncio.wait_for(receive(ws), 30))["type"] == "log":
            got.append(message["data"])
        assert message["type"] == "end"
    assert [e["message"] for e in got] == ["entry 0 of sshd", "entry 1 of sshd"]
    assert [e["priority"] for e in got] == ["info", "error"]
    assert got[0]["unit"] == "sshd" and got[0]["hostname"] == "fixture" and got[0]["pid"] == 100


async def _first_log_message(client: Client, token: str, filters: dict[str, object]) -> dict[str, Any]:
    async with client.websocket("/ws/logs") as ws:
        await authenticate(ws, token)
        await send(ws, {"type": "subscribe", "payload": {"filters": {**filters, "follow": False}}})
        return await asyncio.wait_for(receive(ws), 30)


async def test_viewers_follow_only_the_units_the_gateway_allows(
    gateway_config: dict[str, Any], node: NodeAPIHarness, users: Users, journal: Path
) -> None:
    async with create_app({**gateway_config, **node.gateway_config()}).test_app() as app:  # no units for viewers
        client = app.test_client()
        viewer = (await login(client, users.viewer))["token"]
        for filters in ({}, {"unit": "sshd"}):
            answer = await _first_log_message(client, viewer, filters)
            assert answer["type"] == "error" and answer["error"]["code"] == "PERMISSION_DENIED", answer
    async with create_app({**gateway_config, **node.gateway_config(), "VIEWER_LOG_UNITS": "cron"}).test_app() as app:
        client = app.test_client()
        viewer = (await login(client, users.viewer))["token"]
        first = await _first_log_message(client, viewer, {"unit": "cron"})
        assert first["type"] == "log" and first["data"]["message"] == "entry 2 of cron", first
        for filters in ({}, {"unit": "sshd"}):
            answer = await _first_log_message(client, viewer, filters)
            assert answer["type"] == "error" and answer["error"]["code"] == "PERMISSION_DENIED", answer


async def test_bad_auth_message_is_refused(gw_client: Client) -> None:
    for first in ({"type": "subscribe"}, {"type": "auth", "payload": {"token": "not-a-jwt"}}, {"type": "auth"}):
        async with gw_client.websocket("/ws/metrics") as ws:
            await send(ws, first)
            answer = await receive(ws)
            assert answer["type"] == "error" and answer["error"]["code"] == "UNAUTHORIZED", answer


async def test_bad_subscribe_is_refused(gw_client: Client, users: Users) -> None:
    token = (await login(gw_client, users.admin))["token"]
    async with gw_client.websocket("/ws/logs") as ws:
        await authenticate(ws, token)
        await send(ws, {"type": "subscribe", "payload": {"filters": {"priority": "loud"}}})
        answer = await receive(ws)
        assert answer["type"] == "error" and answer["error"]["code"] == "INVALID_INPUT", answer
    for query, code in (("host=no-such-host", "NOT_FOUND"), ("host=%20", "INVALID_INPUT")):  # as ?host= elsewhere
        async with gw_client.websocket(f"/ws/metrics?{query}") as ws:
            await authenticate(ws, token)
            await send(ws, {"type": "subscribe"})
            answer = await receive(ws)
            assert answer["type"] == "error" and answer["error"]["code"] == code, answer


async def test_eleventh_socket_is_refused(gw_client: Client, users: Users) -> None:
    token = (await login(gw_client, users.viewer))["token"]
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(10):
            ws = await stack.enter_async_context(gw_client.websocket("/ws/metrics"))
            await authenticate(ws, token)
            await send(ws, {"type": "subscribe"})
            assert (await asyncio.wait_for(receive(ws), 30))["type"] == "metric"
        async with gw_client.websocket("/ws/metrics") as eleventh:
            answer = await receive(eleventh)
            assert answer["type"] == "error" and answer["error"]["code"] == "RATE_LIMITED", answer
    async with gw_client.websocket("/ws/metrics") as again:  # the others closed: room again
        await authenticate(again, token)


async def test_a_socket_is_relayed_only_to_the_host_the_gateway_asked(
    gw_client: Client, users: Users, node: NodeAPIHarness, kubectl: Kubectl, cluster_objects: list[str]
) -> None:
    # A Host whose status names another node's agent (its address and certificate): the gateway must not
    # relay a socket meant for that Host to this agent (the HTTP relay refuses the same, test_gateway_system).
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    kubectl.apply({"apiVersion": "vapor.io/v1alpha1", "kind": "Host", "metadata": {"name": ghost}, "spec": {}})
    cluster_objects.append(f"hosts.vapor.io/{ghost}")
    endpoint = {"url": node.url, "certSha256": node.api.fingerprint}
    kubectl("patch", "host", ghost, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"agentEndpoint": endpoint}}))  # fmt: skip
    token = (await login(gw_client, users.viewer))["token"]
    async with gw_client.websocket(f"/ws/metrics?host={ghost}") as ws:
        await authenticate(ws, token)
        await send(ws, {"type": "subscribe"})
        answer = await asyncio.wait_for(receive(ws), 30)
    assert answer["type"] == "error" and answer["error"]["code"] == "AGENT_UNREACHABLE", answer
    assert f"answered as node {node.node_name!r}, not as host {ghost!r}" in answer["error"]["message"]
    async with gw_client.websocket(f"/ws/metrics?host={node.node_name}") as ws:  # its own host: relayed
        await authenticate(ws, token)
        await send(ws, {"type": "subscribe"})
        assert (await asyncio.wait_for(receive(ws), 30))["type"] == "metric"
