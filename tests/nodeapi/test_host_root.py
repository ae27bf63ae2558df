"""An agent in a container works on the node's accounts, not its image's (``--host-root``).

The chart mounts the node's ``/`` at ``/host`` and runs the agent with
``--host-root=/host``. Here the "node" is a real Debian root filesystem
(the cached debootstrap rootfs of the image tests) unpacked into a temporary
directory, with its own /etc/passwd, PAM configuration, useradd and bash;
this machine plays the agent's container. Users are made, logged in (the
node's own ``login`` PAM service), re-keyed and given a terminal through the
gateway, and each of them exists in the node's root only, never in this
machine's accounts. Bad logins under pressure (that login service delays
every refusal, by SLOW_REFUSAL seconds here) must not stall other accounts,
and a guessed account backs off.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from vapor.agent.host.hostroot import HostRoot
from vapor.agent.nodeapi import accounts as accounts_api
from vapor.agent.nodeapi import users as users_api
from vapor.agent.nodeapi import ws as ws_api
from vapor.gateway import create_app
from vapor.kube import Kube

from ..conftest import Kubectl
from ..support import node as noderoot
from ..support.node import NodeUser
from ..support.nodeapi import NodeAPIHarness, running_node_api
from ..support.pam import linux_accounts, pam_service
from ..support.wait import eventually
from ..websockets.conftest import shell_output

pytestmark = pytest.mark.controlplane

BAD_LOGINS = 16  # twice the login host's password-check threads


SLOW_REFUSAL = 30  # seconds the node's login service delays a refused password here (pam_faildelay)
FAIL_DELAY = 3.0  # seconds the agent delays a refused password's answer (and backs an account off)


@pytest.fixture(scope="module")
def node_root() -> Iterator[Path]:
    """A Debian root filesystem playing the node's ``/`` (removed after the module).

    Its login service delays a refusal by SLOW_REFUSAL seconds instead of Debian's 3: a delay slept in a
    thread of the login host shows far above any slowness of a busy test machine.
    """
    with noderoot.node_root() as root:
        service = root / "etc/pam.d/login"
        text = service.read_text()
        assert "pam_faildelay.so  delay=3000000" in text
        service.write_text(text.replace("delay=3000000", f"delay={SLOW_REFUSAL * 1_000_000}"))
        yield root


@pytest.fixture
async def node(kube: Kube, kubectl: Kubectl, namespace: str, node_root: Path) -> AsyncIterator[NodeAPIHarness]:
    routes = [users_api.routes, accounts_api.routes, ws_api.routes]
    name = f"root-{uuid.uuid4().hex[:8]}"
    agent = {"host_root": node_root, "pam_service": "login", "login_fail_delay": FAIL_DELAY}
    async with running_node_api(kube, kubectl, namespace, name, routes=routes, **agent) as harness:
        yield harness


@pytest.fixture
def second_admin(node_root: Path) -> Iterator[NodeUser]:
    with noderoot.admin_of(node_root) as user:
        yield user


@pytest.fixture
async def client(gateway_config: dict[str, Any], node: NodeAPIHarness, node_admin: NodeUser) -> AsyncIterator[Client]:
    """A gateway that logs users in on the node (its own PAM refuses everyone)."""
    with pam_service(refuse_all=True) as refusing:
        config = {
            **gateway_config,
            **node.gateway_config(),
            "PAM_SERVICE": refusing,
            "AUTH_HOSTS": node.node_name,
            "ADMIN_GROUPS": node_admin.group,
        }
        async with create_app(config).test_app() as app:
            yield app.test_client()


async def _login(client: Client, name: str, password: str) -> tuple[int, Any]:
    response = await client.post("/api/v1/auth/login", json={"username": name, "password": password})
    return response.status_code, await response.get_json()


def _on_this_machine(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


async def test_users_live_in_the_nodes_root(client: Client, node_root: Path, node_admin: NodeUser) -> None:
    status, body = await _login(client, node_admin.name, node_admin.password)
    assert status == 200, body
    assert body["data"]["user"]["role"] == "admin"
    admin = {"Authorization": f"Bearer {body['data']['token']}"}
    name = f"nu{uuid.uuid4().hex[:8]}"
    try:
        made = await client.post(
            "/api/v1/users", json={"username": name, "password": "First-pass-1", "groups": "users"}, headers=admin
        )
        assert made.status_code == 201, await made.get_json()
        assert f"{name}:" in (node_root / "etc/passwd").read_text()
        assert (node_root / "home" / name).is_dir()
        assert not _on_this_machine(name)

        with linux_accounts() as accounts:  # a user of this machine is not one of the node's
            here = accounts.user("here").name
            listed = await (await client.get("/api/v1/users", headers=admin)).get_json()
        names = {u["username"] for u in listed["data"]["users"]}
        assert {name, node_admin.name} <= names
        assert here not in names

        status, body = await _login(client, name, "First-pass-1")
        assert status == 200 and body["data"]["user"]["role"] == "viewer", body
        reset = await client.post(
            f"/api/v1/users/{name}/reset-password", json={"password": "Second-pass-2"}, headers=admin
        )
        assert reset.status_code == 200, await reset.get_json()
        assert (await _login(client, name, "First-pass-1"))[0] == 401
        status, body = await _login(client, name, "Second-pass-2")
        assert status == 200, body
        refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": body["data"]["refresh_token"]})
        assert refreshed.status_code == 200, await refreshed.get_json()  # the account is read in the node's root
        subprocess.run(["chroot", str(node_root), "usermod", "-L", name], check=True, capture_output=True)
        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": (await refreshed.get_json())["data"]["refresh_token"]}
        )
        assert refreshed.status_code == 401, await refreshed.get_json()  # locked in the node's shadow file
    finally:
        subprocess.run(["chroot", str(node_root), "userdel", "-r", "-f", name], capture_output=True, check=False)


async def test_a_group_missing_on_the_node_is_refused(client: Client, node_admin: NodeUser) -> None:
    token = (await _login(client, node_admin.name, node_admin.password))[1]["data"]["token"]
    name = f"nu{uuid.uuid4().hex[:8]}"
    with linux_accounts() as accounts:  # the group exists on this machine, not on the node
        group = accounts.group("only-here")
        made = await client.post(
            "/api/v1/users",
            json={"username": name, "password": "First-pass-1", "groups": group},
            headers={"Authorization": f"Bearer {token}"},
        )
    body = await made.get_json()
    assert made.status_code == 400, body
    assert body["error"]["code"] == "INVALID_INPUT" and group in body["error"]["message"]


async def test_the_terminal_is_a_shell_in_the_nodes_root(client: Client, node_admin: NodeUser) -> None:
    token = (await _login(client, node_admin.name, node_admin.password))[1]["data"]["token"]
    line = "echo who=$(id -un) marker=$(cat /etc/vapor-marker)"
    seen = await shell_output(client, token, line, until=f"marker={noderoot.MARKER}")
    assert f"who={node_admin.name}" in seen


async def test_refused_passwords_do_not_hold_the_workers_threads(node_root: Path, node_admin: NodeUser) -> None:
    """The node's login service delays a refusal (pam_faildelay); the worker's threads do not sleep it.

    Sixteen refusals on eight threads would take two delays if slept there; the agent delays the answers
    instead, on its event loop (vapor.loginguard), and the right password is answered as soon as PAM checked it.
    """
    root = HostRoot(node_root)
    try:
        assert node_admin.group in await root.call("verify", "login", node_admin.name, node_admin.password)
        started = time.monotonic()
        refused = [root.call("verify", "login", node_admin.name, f"not-the-password-{i}") for i in range(16)]
        *answers, accepted = await asyncio.gather(
            *refused, root.call("verify", "login", node_admin.name, node_admin.password)
        )
        assert answers == [None] * 16 and node_admin.group in accepted
        assert time.monotonic() - started < SLOW_REFUSAL / 3
    finally:
        await root.close()


async def test_the_account_worker_comes_back_after_it_dies_and_ends_on_close(
    node_root: Path, node_admin: NodeUser
) -> None:
    root = HostRoot(node_root)
    try:
        assert (await root.call("standing", "login", node_admin.name))["refused"] is None
        first = root.worker_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await eventually(lambda: root.worker_pid is None, 10, "the worker seen gone")
        assert (await root.call("standing", "login", node_admin.name))["refused"] is None  # a new worker
        second = root.worker_pid
        assert second not in (None, first)
    finally:
        await root.close()
    assert root.worker_pid is None
    assert not Path(f"/proc/{second}").exists()  # ended and reaped, not left behind


# Bad logins under pressure: the node's login service delays every refusal (pam_faildelay), the setting in
# which about ten concurrent bad logins used to hold every PAM worker of the login host.


async def test_bad_logins_do_not_stall_refreshes_or_terminals(client: Client, node_admin: NodeUser) -> None:
    status, body = await _login(client, node_admin.name, node_admin.password)
    assert status == 200, body
    token, refresh_token = body["data"]["token"], body["data"]["refresh_token"]
    guesses = [
        asyncio.create_task(_login(client, f"guess{uuid.uuid4().hex[:8]}", "not-a-password")) for _ in range(BAD_LOGINS)
    ]
    await asyncio.sleep(0.5)  # the guesses are with the login host's PAM now
    started = time.monotonic()
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    took = time.monotonic() - started
    assert refreshed.status_code == 200, await refreshed.get_json()
    assert took < SLOW_REFUSAL / 3, f"a refresh took {took:.1f} s behind {BAD_LOGINS} bad logins"
    started = time.monotonic()
    await shell_output(client, token, "echo who=$(id -un)", until=f"who={node_admin.name}")
    took = time.monotonic() - started
    assert took < SLOW_REFUSAL / 3, f"a terminal took {took:.1f} s to answer behind {BAD_LOGINS} bad logins"
    answers = await asyncio.gather(*guesses)
    assert {status for status, _ in answers} == {401}, answers


async def test_a_guessed_account_backs_off_and_others_do_not(
    client: Client, node_admin: NodeUser, second_admin: NodeUser
) -> None:
    """Three wrong passwords in a row: the account is not checked for a while, even with the right one."""
    for _ in range(3):
        status, body = await _login(client, node_admin.name, "a-wrong-guess")
        assert (status, body["error"]["code"]) == (401, "UNAUTHORIZED"), body
    status, body = await _login(client, node_admin.name, node_admin.password)
    assert (status, body["error"]["code"]) == (429, "RATE_LIMITED"), body
    assert "try again in" in body["error"]["message"]
    status, body = await _login(client, second_admin.name, second_admin.password)  # another account: no wait
    assert status == 200, body
    await asyncio.sleep(FAIL_DELAY + 0.5)  # the backoff (the agent's fail delay) has passed
    status, body = await _login(client, node_admin.name, node_admin.password)
    assert status == 200, body


async def test_concurrent_guesses_of_one_account_reach_pam_one_at_a_time(client: Client, node_admin: NodeUser) -> None:
    async def timed_guess(i: int) -> tuple[int, float]:
        started = time.monotonic()
        status, _ = await _login(client, node_admin.name, f"guess-{i}")
        return status, time.monotonic() - started

    answers = sorted(await asyncio.gather(*(timed_guess(i) for i in range(8))))
    assert [status for status, _ in answers] == [401] + [429] * 7, answers
    checked = answers[0][1]  # the one guess PAM saw, answered after the fail delay
    assert max(took for _, took in answers[1:]) < checked, answers  # the others were refused at once
