"""Who gets /ws/terminal, and as what: admins (or the terminal groups), the account's own shell, the node's PAM.

Each attack runs against the real stack: a gateway app with real PAM users,
a real node API (the agent's /ws/terminal) with its own settings where the
test needs them, real PTY sessions. A refusal must come before any process
of the user starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from quart.typing import TestWebsocketConnectionProtocol as Socket

from vapor.agent.nodeapi import ws as ws_api
from vapor.gateway import create_app
from vapor.kube import Kube

from ..conftest import Kubectl
from ..gateway.conftest import Users, login
from ..support.nodeapi import running_node_api
from ..support.pam import linux_accounts, pam_service
from ..support.wait import eventually
from .conftest import receive, send

pytestmark = pytest.mark.controlplane


@contextlib.asynccontextmanager
async def running_stack(
    kube: Kube, kubectl: Kubectl, namespace: str, gateway_config: dict[str, Any], gateway: dict[str, Any], **agent: Any
) -> AsyncIterator[Client]:
    """A node API with the agent settings ``agent`` and a gateway (its config plus ``gateway``) in front of it."""
    name = f"term-{uuid.uuid4().hex[:8]}"
    async with contextlib.AsyncExitStack() as stack:
        node = await stack.enter_async_context(
            running_node_api(kube, kubectl, namespace, name, routes=[ws_api.routes], **agent)
        )
        app = await stack.enter_async_context(
            create_app({**gateway_config, **node.gateway_config(), **gateway}).test_app()
        )
        yield app.test_client()


@dataclass
class Terminal:
    """An open /ws/terminal; ``pending`` holds a refusal of the auth message, read first."""

    ws: Socket
    pending: list[dict[str, Any]] = field(default_factory=list)

    async def next(self, timeout: float = 30.0) -> dict[str, Any]:
        if self.pending:
            return self.pending.pop(0)
        return await asyncio.wait_for(receive(self.ws), timeout)

    async def type(self, line: str) -> None:
        await send(self.ws, {"type": "input", "data": line + "\n"})

    async def output_until(self, needle: str) -> str:
        seen = ""
        while needle not in seen:
            message = await self.next()
            assert message["type"] == "output", (message, seen)
            seen += message["data"]
        return seen

    async def end(self) -> dict[str, Any]:
        """The first message that is not output (the shell may still write some first)."""
        while (message := await self.next())["type"] == "output":
            pass
        return message


@contextlib.asynccontextmanager
async def terminal(client: Client, token: str, **payload: Any) -> AsyncIterator[Terminal]:
    """/ws/terminal authenticated and subscribed (``payload``: the subscribe message's)."""
    async with client.websocket("/ws/terminal") as ws:
        await send(ws, {"type": "auth", "payload": {"token": token}})
        answer = await receive(ws)
        if answer["type"] != "auth":
            yield Terminal(ws, [answer])
            return
        await send(ws, {"type": "subscribe", "payload": payload})
        yield Terminal(ws)


async def refusal_of(client: Client, token: str, **payload: Any) -> dict[str, Any]:
    """The error a terminal open gets."""
    async with terminal(client, token, **payload) as term:
        message = await term.end()
    assert message["type"] == "error", message
    return dict(message["error"])


def processes_of(user: str) -> list[str]:
    return subprocess.run(["pgrep", "-a", "-u", user], capture_output=True, text=True).stdout.splitlines()


async def test_a_viewer_gets_no_terminal(gw_client: Client, users: Users) -> None:
    token = (await login(gw_client, users.viewer))["token"]
    error = await refusal_of(gw_client, token)
    assert error["code"] == "PERMISSION_DENIED", error
    assert not processes_of(users.viewer.name)


async def test_members_of_the_terminal_groups_get_one(
    kube: Kube, kubectl: Kubectl, namespace: str, gateway_config: dict[str, Any], users: Users
) -> None:
    with linux_accounts() as accounts:
        group = accounts.group("term")
        operator = accounts.user("op", groups=(group,))
        async with running_stack(kube, kubectl, namespace, gateway_config, {"TERMINAL_GROUPS": group}) as client:
            answer = await login(client, operator)
            assert answer["user"]["role"] == "viewer"
            async with terminal(client, answer["token"]) as term:
                await term.type("echo who=$(id -un)")
                await term.output_until(f"who={operator.name}")
            viewer = (await login(client, users.viewer))["token"]  # not in the group: still refused
            assert (await refusal_of(client, viewer))["code"] == "PERMISSION_DENIED"


async def test_the_shell_is_the_accounts_own_and_a_nologin_account_gets_none(gw_client: Client, users: Users) -> None:
    token = (await login(gw_client, users.admin))["token"]
    async with terminal(gw_client, token, shell="/bin/bash") as term:  # the client's choice is ignored
        await term.type('echo "shell=$0."')
        assert "shell=-sh." in await term.output_until("shell=-")
    subprocess.run(["usermod", "-s", "/usr/sbin/nologin", users.admin.name], check=True)
    for shell in ({}, {"shell": "/bin/bash"}):
        error = await refusal_of(gw_client, token, **shell)
        assert error["code"] == "PERMISSION_DENIED" and "not a login shell" in error["message"], error
    assert not processes_of(users.admin.name)


async def test_the_nodes_pam_account_and_session_stages_run(
    kube: Kube, kubectl: Kubectl, namespace: str, gateway_config: dict[str, Any], users: Users, tmp_path: Path
) -> None:
    """pam_access in the account stage may refuse the user on this node; the session stage opens and closes."""
    sessions, access = tmp_path / "sessions.log", tmp_path / "access.conf"
    access.write_text("")
    hook = tmp_path / "session-hook"
    hook.write_text(f'#!/bin/sh\necho "$PAM_TYPE $PAM_USER $PAM_TTY" >> {sessions}\n')
    hook.chmod(0o755)
    rules = f"account required pam_access.so accessfile={access}\nsession required pam_exec.so {hook}\n"
    with pam_service(extra=rules) as service:
        async with running_stack(kube, kubectl, namespace, gateway_config, {}, pam_service=service) as client:
            token = (await login(client, users.admin))["token"]
            async with terminal(client, token) as term:
                await term.type("echo who=$(id -un)")
                await term.output_until(f"who={users.admin.name}")
                opened = sessions.read_text().splitlines()
                assert len(opened) == 1 and opened[0].startswith(f"open_session {users.admin.name} /dev/pts/"), opened
            await eventually(lambda: len(sessions.read_text().splitlines()) == 2, 15, "the session closed")
            assert sessions.read_text().splitlines()[1].startswith(f"close_session {users.admin.name} ")
            access.write_text(f"-:{users.admin.name}:ALL\n")  # this node refuses the user
            error = await refusal_of(client, token)
            assert error["code"] == "PERMISSION_DENIED", error
            assert len(sessions.read_text().splitlines()) == 2  # no session was opened


async def test_the_terminal_ends_when_the_token_expires(
    kube: Kube, kubectl: Kubectl, namespace: str, gateway_config: dict[str, Any], users: Users
) -> None:
    async with running_stack(kube, kubectl, namespace, gateway_config, {"TOKEN_LIFETIME": 4}) as client:
        token = (await login(client, users.admin))["token"]
        async with terminal(client, token) as term:
            await term.type("echo who=$(id -un)")
            await term.output_until(f"who={users.admin.name}")
            message = await term.end()
        assert message["type"] == "error" and message["error"]["code"] == "UNAUTHORIZED", message
        assert "expired" in message["error"]["message"]
        await eventually(lambda: not processes_of(users.admin.name), 15, "the session's processes gone")


async def test_the_terminal_ends_when_the_account_is_locked(
    kube: Kube, kubectl: Kubectl, namespace: str, gateway_config: dict[str, Any], users: Users
) -> None:
    async with running_stack(kube, kubectl, namespace, gateway_config, {}, terminal_check_interval=1.0) as client:
        token = (await login(client, users.admin))["token"]
        async with terminal(client, token) as term:
            await term.type("echo who=$(id -un)")
            await term.output_until(f"who={users.admin.name}")
            subprocess.run(["usermod", "-L", users.admin.name], check=True)
            message = await term.end()
        assert message["type"] == "error" and message["error"]["code"] == "UNAUTHORIZED", message
        assert "locked" in message["error"]["message"]
        await eventually(lambda: not processes_of(users.admin.name), 15, "the session's processes gone")


@contextlib.contextmanager
def uid_zero_admin(group: str) -> Iterator[tuple[str, str]]:
    """A second name for uid 0 (useradd -o -u 0) in the admin group, with a password: root as a login sees it."""
    name = f"vtroot{uuid.uuid4().hex[:6]}"
    password = secrets.token_urlsafe(12)
    subprocess.run(
        ["useradd", "-o", "-u", "0", "-g", "0", "-M", "-d", "/root", "-s", "/bin/sh", "-G", group, name],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True)
        yield name, password
    finally:
        subprocess.run(["userdel", "-f", name], capture_output=True, check=False)


@pytest.mark.parametrize("allow_root", [False, True], ids=["default", "terminal-allow-root"])
async def test_root_gets_no_terminal_unless_the_agent_allows_it(
    kube: Kube, kubectl: Kubectl, namespace: str, gateway_config: dict[str, Any], users: Users, allow_root: bool
) -> None:
    """A uid-0 account in the admin group: refused, unless the agent's --terminal-allow-root says otherwise."""
    with uid_zero_admin(users.admin_group) as (name, password):
        agent = {"terminal_allow_root": allow_root}
        async with running_stack(kube, kubectl, namespace, gateway_config, {}, **agent) as client:
            response = await client.post("/api/v1/auth/login", json={"username": name, "password": password})
            token = (await response.get_json())["data"]["token"]
            if not allow_root:
                error = await refusal_of(client, token)
                assert error["code"] == "PERMISSION_DENIED" and "uid 0" in error["message"], error
                return
            async with terminal(client, token) as term:
                await term.type("echo uid=$(id -u).")
                await term.output_until("uid=0.")
