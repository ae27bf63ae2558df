"""/api/v1/users through the gateway and a real node API: real accounts made with useradd, real PAM logins.

Every account made here has a unique name and is removed (``userdel -r``)
after the test, even when it fails. Logins go through the gateway's login
endpoint, which checks the password with real PAM (the test's pam_unix service).
"""

from __future__ import annotations

import pwd
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from quart.typing import TestClientProtocol as Client

from vapor.agent.nodeapi import users as users_api
from vapor.kube import Kube

from ..conftest import Kubectl
from ..gateway.conftest import Users, bearer, login
from ..support.nodeapi import NodeAPIHarness, running_node_api
from ..support.pam import LinuxUser

pytestmark = pytest.mark.controlplane


@pytest.fixture
async def node(kube: Kube, kubectl: Kubectl, namespace: str) -> AsyncIterator[NodeAPIHarness]:
    """A node API serving the users routes (overrides the package's system-only one)."""
    name = f"node-{uuid.uuid4().hex[:8]}"
    async with running_node_api(kube, kubectl, namespace, name, routes=[users_api.routes]) as harness:
        yield harness


@pytest.fixture
def fresh_name() -> Iterator[str]:
    """A user name nobody has; whatever account gets it is removed after the test."""
    name = f"vu{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        subprocess.run(["userdel", "-r", "-f", name], capture_output=True, check=False)


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


async def _admin(client: Client, users: Users) -> dict[str, str]:
    return bearer((await login(client, users.admin))["token"])


async def _create(client: Client, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
    response = await client.post("/api/v1/users", json=body, headers=headers)
    return response.status_code, await response.get_json()


async def _reset(client: Client, headers: dict[str, str], name: str, password: str) -> tuple[int, Any]:
    response = await client.post(f"/api/v1/users/{name}/reset-password", json={"password": password}, headers=headers)
    return response.status_code, await response.get_json()


async def _login_status(client: Client, name: str, password: str) -> int:
    response = await client.post("/api/v1/auth/login", json={"username": name, "password": password})
    return response.status_code


async def test_a_user_made_over_rest_logs_in_and_a_reset_password_replaces_the_old(
    gw_client: Client, users: Users, fresh_name: str
) -> None:
    admin = await _admin(gw_client, users)
    first = "first-Secret-1"
    status, body = await _create(
        gw_client, admin, {"username": fresh_name, "password": first, "groups": users.admin_group}
    )
    assert status == 201, body
    made = body["data"]["user"]
    entry = pwd.getpwnam(fresh_name)
    assert made["username"] == fresh_name and made["uid"] == str(entry.pw_uid) and made["gid"] == str(entry.pw_gid)
    assert entry.pw_shell == made["shell"] == "/bin/bash"
    assert entry.pw_dir == made["home"] and subprocess.run(["test", "-d", entry.pw_dir], check=False).returncode == 0
    assert users.admin_group in made["groups"]

    response = await gw_client.get("/api/v1/users", headers=admin)
    listed = {u["username"]: u for u in (await response.get_json())["data"]["users"]}
    assert response.status_code == 200
    assert listed[fresh_name] == made
    assert users.viewer.name in listed and "root" not in listed and "nobody" not in listed

    session = await login(gw_client, LinuxUser(name=fresh_name, password=first))
    assert session["token"]

    second = "second:Secret 2"  # a colon and a space reach chpasswd intact
    status, body = await _reset(gw_client, admin, fresh_name, second)
    assert status == 200, body
    assert body["data"]["username"] == fresh_name
    assert await _login_status(gw_client, fresh_name, second) == 200
    assert await _login_status(gw_client, fresh_name, first) == 401


async def test_a_password_reset_revokes_the_refresh_tokens_of_the_users_logins(gw_client: Client, users: Users) -> None:
    stolen = (await login(gw_client, users.viewer))["refresh_token"]
    other = (await login(gw_client, users.admin))["refresh_token"]
    status, body = await _reset(gw_client, await _admin(gw_client, users), users.viewer.name, "after-Reset-1")
    assert status == 200, body
    response = await gw_client.post("/api/v1/auth/refresh", json={"refresh_token": stolen})
    assert response.status_code == 401
    assert "revoked" in (await response.get_json())["error"]["message"]
    response = await gw_client.post("/api/v1/auth/refresh", json={"refresh_token": other})
    assert response.status_code == 200  # the admin's own login goes on
    assert await _login_status(gw_client, users.viewer.name, "after-Reset-1") == 200


async def test_a_viewer_may_neither_list_nor_change_users(gw_client: Client, users: Users, fresh_name: str) -> None:
    viewer = bearer((await login(gw_client, users.viewer))["token"])
    response = await gw_client.get("/api/v1/users", headers=viewer)
    assert (response.status_code, (await response.get_json())["error"]["code"]) == (403, "PERMISSION_DENIED")
    status, body = await _create(gw_client, viewer, {"username": fresh_name, "password": "long-enough-1"})
    assert (status, body["error"]["code"]) == (403, "PERMISSION_DENIED")
    assert not _exists(fresh_name)
    status, body = await _reset(gw_client, viewer, users.admin.name, "long-enough-1")
    assert (status, body["error"]["code"]) == (403, "PERMISSION_DENIED")
    assert await _login_status(gw_client, users.admin.name, users.admin.password) == 200


async def test_without_a_token_nothing_is_listed(gw_client: Client) -> None:
    response = await gw_client.get("/api/v1/users")
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        ({"username": "Bad Name", "password": "long-enough-1"}, 400, "INVALID_INPUT", "username"),
        ({"username": "-oremove", "password": "long-enough-1"}, 400, "INVALID_INPUT", "username"),
        ({"username": "a" * 33, "password": "long-enough-1"}, 400, "INVALID_INPUT", "username"),
        ({"username": "{name}", "password": "short"}, 400, "INVALID_INPUT", "password"),
        ({"username": "{name}", "password": "long-enough\nroot:x"}, 400, "INVALID_INPUT", "newline"),
        ({"username": "{name}", "password": "long\x00enough"}, 400, "INVALID_INPUT", "NUL"),
        ({"username": "{name}", "password": "x" * 1025}, 400, "INVALID_INPUT", "password"),
        (
            {"username": "{name}", "password": "long-enough-1", "groups": "nosuchgroupzz9"},
            400,
            "INVALID_INPUT",
            "nosuchgroupzz9",
        ),
        ({"username": "{name}", "password": "long-enough-1", "groups": "users,-g0"}, 400, "INVALID_INPUT", "group"),
        ({"username": "{name}", "password": "long-enough-1", "shell": "/bin/sh"}, 400, "INVALID_INPUT", "shell"),
        ({"username": "{name}"}, 400, "INVALID_INPUT", "password"),
    ],
)
async def test_bad_new_users_are_refused_and_nothing_is_made(
    gw_client: Client, users: Users, fresh_name: str, body: dict[str, Any], status: int, code: str, says: str
) -> None:
    admin = await _admin(gw_client, users)
    sent = {k: (fresh_name if v == "{name}" else v) for k, v in body.items()}
    got_status, got = await _create(gw_client, admin, sent)
    assert (got_status, got["error"]["code"]) == (status, code), got
    assert says in got["error"]["message"] + str(got["error"].get("details")), got
    assert not _exists(fresh_name)
    assert "long-enough" not in str(got)  # the password is never echoed


async def test_an_existing_user_is_already_exists(gw_client: Client, users: Users) -> None:
    admin = await _admin(gw_client, users)
    status, body = await _create(gw_client, admin, {"username": users.viewer.name, "password": "long-enough-1"})
    assert (status, body["error"]["code"]) == (409, "ALREADY_EXISTS"), body
    assert await _login_status(gw_client, users.viewer.name, users.viewer.password) == 200


@pytest.mark.parametrize(
    ("name", "password", "status", "code"),
    [
        ("root", "long-enough-1", 400, "INVALID_INPUT"),
        ("daemon", "long-enough-1", 400, "INVALID_INPUT"),
        ("nobody", "long-enough-1", 400, "INVALID_INPUT"),
        ("vunosuchuser0", "long-enough-1", 404, "NOT_FOUND"),
        ("-e", "long-enough-1", 400, "INVALID_INPUT"),
        ("{viewer}", "short", 400, "INVALID_INPUT"),
        ("{viewer}", "long-enough\n", 400, "INVALID_INPUT"),
    ],
)
async def test_bad_password_resets_are_refused(
    gw_client: Client, users: Users, name: str, password: str, status: int, code: str
) -> None:
    admin = await _admin(gw_client, users)
    target = users.viewer.name if name == "{viewer}" else name
    before = subprocess.run(["getent", "shadow", "root"], capture_output=True, text=True, check=False).stdout
    got_status, got = await _reset(gw_client, admin, target, password)
    assert (got_status, got["error"]["code"]) == (status, code), got
    assert subprocess.run(["getent", "shadow", "root"], capture_output=True, text=True, check=False).stdout == before
    assert await _login_status(gw_client, users.viewer.name, users.viewer.password) == 200


async def test_the_agent_checks_again_whatever_the_gateway_let_through(node: NodeAPIHarness, fresh_name: str) -> None:
    """Straight to the node API as the gateway: its own validation refuses what a broken gateway might pass on."""
    headers = {"Authorization": f"Bearer {node.token()}"}
    tls = aiohttp.Fingerprint(bytes.fromhex(node.api.fingerprint or ""))
    bad = [
        ("/users", {"username": "-rf", "password": "long-enough-1"}),
        ("/users", {"username": fresh_name, "password": "long-enough-1", "groups": "--help"}),
        ("/users", {"username": fresh_name, "password": "a\nroot:pw"}),
        ("/users/-p/reset-password", {"password": "long-enough-1"}),
        ("/users/root/reset-password", {"password": "long-enough-1"}),
    ]
    async with aiohttp.ClientSession() as session:
        for path, body in bad:
            async with session.post(node.url + path, json=body, headers=headers, ssl=tls) as response:
                answer = await response.json()
                assert (response.status, answer["error"]["code"]) == (400, "INVALID_INPUT"), (path, answer)
    assert not _exists(fresh_name)
