"""Bad logins under pressure: other accounts' refreshes and terminals go on, and a guessed account backs off.

The login host is a real agent (node API) whose accounts live in a Debian
root filesystem playing the node's ``/`` (``--host-root``), checked by the
node's own ``login`` PAM service, which delays every refusal by 3 s
(pam_faildelay): the setting in which about ten concurrent bad logins
used to hold every PAM worker of the login host.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from vapor.agent.nodeapi import accounts as accounts_api
from vapor.agent.nodeapi import ws as ws_api
from vapor.gateway import create_app
from vapor.kube import Kube

from ..conftest import Kubectl
from ..support import node as noderoot
from ..support.node import NodeUser, admin_of
from ..support.nodeapi import NodeAPIHarness, running_node_api
from ..support.pam import pam_service
from ..websockets.conftest import shell_output

pytestmark = pytest.mark.controlplane

BAD_LOGINS = 16  # twice the login host's password-check threads


@pytest.fixture(scope="module")
def node_root() -> Iterator[Path]:
    """A Debian root filesystem playing the node's ``/`` (removed after the module)."""
    with noderoot.node_root() as root:
        yield root


@pytest.fixture
def second_admin(node_root: Path) -> Iterator[NodeUser]:
    with admin_of(node_root) as user:
        yield user


@pytest.fixture
async def node(kube: Kube, kubectl: Kubectl, namespace: str, node_root: Path) -> AsyncIterator[NodeAPIHarness]:
    routes = [accounts_api.routes, ws_api.routes]
    name = f"press-{uuid.uuid4().hex[:8]}"
    async with running_node_api(
        kube, kubectl, namespace, name, routes=routes, host_root=node_root, pam_service="login", login_fail_delay=1.0
    ) as harness:
        yield harness


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
    assert took < 1.5, f"a refresh took {took:.1f} s behind {BAD_LOGINS} bad logins"
    started = time.monotonic()
    await shell_output(client, token, "echo who=$(id -un)", until=f"who={node_admin.name}")
    took = time.monotonic() - started
    assert took < 3.0, f"a terminal took {took:.1f} s to answer behind {BAD_LOGINS} bad logins"
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
    await asyncio.sleep(1.5)  # the backoff (the agent's fail delay: 1 s) has passed
    status, body = await _login(client, node_admin.name, node_admin.password)
    assert status == 200, body


async def test_concurrent_guesses_of_one_account_reach_pam_one_at_a_time(client: Client, node_admin: NodeUser) -> None:
    async def timed_guess(i: int) -> tuple[int, float]:
        started = time.monotonic()
        status, _ = await _login(client, node_admin.name, f"guess-{i}")
        return status, time.monotonic() - started

    answers = sorted(await asyncio.gather(*(timed_guess(i) for i in range(8))))
    assert [status for status, _ in answers] == [401] + [429] * 7, answers
    assert max(took for status, took in answers if status == 429) < 1.0, answers  # not held: refused at once
