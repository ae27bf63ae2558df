"""Logins checked on a host through its agent (VAPOR_AUTH_HOSTS), as a gateway pod in a cluster does.

The gateway's own PAM service in these tests refuses every password
(pam_deny), and the agent's is the test's pam_unix one: a login that works
was checked by the agent. Real users, real PAM, a real node API with real
TokenReviews; the agent runs in the test's process so that its log records
can be searched for the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from quart.typing import TestClientProtocol as Client

from vapor.agent.nodeapi import accounts as accounts_api
from vapor.gateway import create_app
from vapor.kube import Kube, NotFound
from vapor.model import Host, HostSpec, HostStatus, ObjectMeta
from vapor.model.host import AgentEndpoint

from ..conftest import Kubectl
from ..gateway.conftest import Users
from ..support.nodeapi import OTHER_SA, NodeAPIHarness, running_node_api
from ..support.pam import LinuxUser, pam_service

pytestmark = pytest.mark.controlplane


@pytest.fixture
def refusing_service() -> Iterator[str]:
    with pam_service(refuse_all=True) as name:
        yield name


@pytest.fixture
async def node(kube: Kube, kubectl: Kubectl, namespace: str, pam_service_name: str) -> AsyncIterator[NodeAPIHarness]:
    """The login host's node API: the accounts routes, checking with the test's pam_unix service."""
    name = f"login-{uuid.uuid4().hex[:8]}"
    async with running_node_api(
        kube, kubectl, namespace, name, routes=[accounts_api.routes], pam_service=pam_service_name
    ) as harness:
        yield harness


def _config(gateway_config: dict[str, Any], node: NodeAPIHarness, refusing: str, auth_hosts: str | None) -> Any:
    return {**gateway_config, **node.gateway_config(), "PAM_SERVICE": refusing, "AUTH_HOSTS": auth_hosts}


@pytest.fixture
async def client(gateway_config: dict[str, Any], node: NodeAPIHarness, refusing_service: str) -> AsyncIterator[Client]:
    """A gateway whose logins go to the node's agent."""
    async with create_app(_config(gateway_config, node, refusing_service, node.node_name)).test_app() as app:
        yield app.test_client()


async def _login(client: Client, name: str, password: str) -> tuple[int, Any]:
    response = await client.post("/api/v1/auth/login", json={"username": name, "password": password})
    return response.status_code, await response.get_json()


async def test_users_log_in_with_the_role_their_groups_on_the_host_give(client: Client, users: Users) -> None:
    status, body = await _login(client, users.admin.name, users.admin.password)
    assert status == 200, body
    assert body["data"]["user"]["role"] == "admin"
    assert users.admin_group in body["data"]["user"]["groups"]
    status, body = await _login(client, users.viewer.name, users.viewer.password)
    assert status == 200, body
    assert body["data"]["user"] == {"username": users.viewer.name, "role": "viewer", "groups": [users.viewer.name]}
    token = body["data"]["token"]
    me = await client.get("/api/v1/hosts", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200


@pytest.mark.parametrize("case", ["wrong password", "no such user", "empty password"])
async def test_a_refused_password_is_unauthorized(client: Client, users: Users, case: str) -> None:
    name, password = {
        "wrong password": (users.admin.name, users.admin.password + "x"),
        "no such user": (f"nobody{uuid.uuid4().hex[:8]}", "whatever-1"),
        "empty password": (users.admin.name, ""),
    }[case]
    status, body = await _login(client, name, password)
    expected = 400 if case == "empty password" else 401
    assert status == expected, body
    assert body["error"]["code"] == ("INVALID_INPUT" if expected == 400 else "UNAUTHORIZED")


async def test_without_an_auth_host_the_gateways_own_pam_decides(
    gateway_config: dict[str, Any], node: NodeAPIHarness, refusing_service: str, users: Users
) -> None:
    """The control: the same gateway checking locally refuses, so the logins above were the agent's."""
    async with create_app(_config(gateway_config, node, refusing_service, None)).test_app() as app:
        status, body = await _login(app.test_client(), users.admin.name, users.admin.password)
    assert status == 401, body


async def test_refresh_asks_the_host_again_and_follows_group_changes(client: Client, users: Users) -> None:
    status, body = await _login(client, users.viewer.name, users.viewer.password)
    assert status == 200 and body["data"]["user"]["role"] == "viewer", body
    subprocess.run(["gpasswd", "-a", users.viewer.name, users.admin_group], check=True, capture_output=True)
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": body["data"]["refresh_token"]})
    renewed = await response.get_json()
    assert response.status_code == 200, renewed
    assert renewed["data"]["user"]["role"] == "admin"


async def test_refresh_of_a_user_removed_from_the_host_is_refused(client: Client, users: Users) -> None:
    gone = LinuxUser(name=f"{users.viewer.name[:20]}g", password="Gone-user-pw-1")
    subprocess.run(["useradd", "-M", "-s", "/bin/sh", gone.name], check=True, capture_output=True)
    try:
        subprocess.run(["chpasswd"], input=f"{gone.name}:{gone.password}\n", text=True, check=True)
        status, body = await _login(client, gone.name, gone.password)
        assert status == 200, body
    finally:
        subprocess.run(["userdel", "-f", gone.name], capture_output=True, check=False)
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": body["data"]["refresh_token"]})
    refused = await response.get_json()
    assert response.status_code == 401, refused
    assert "no longer exists" in refused["error"]["message"]


async def _agent_post(node: NodeAPIHarness, path: str, body: Any, token: str) -> tuple[int, Any]:
    return await _agent_call(node, "POST", path, token, body)


async def _agent_get(node: NodeAPIHarness, path: str, token: str) -> tuple[int, Any]:
    return await _agent_call(node, "GET", path, token)


async def _agent_call(node: NodeAPIHarness, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, node.url + path, json=body, headers=headers, ssl=False) as answer,
    ):
        return answer.status, await answer.json()


ACCOUNT_CHANGES = {
    "locked": (["usermod", "-L"], "the password is locked"),  # pam_unix ignores the lock without a password
    "expired": (["chage", "-E", "0"], "may no longer log in"),  # PAM's account stage refuses
    "must change password": (["chage", "-d", "0"], "new one required"),
}


@pytest.mark.parametrize("where", ["agent", "gateway"])
@pytest.mark.parametrize("change", list(ACCOUNT_CHANGES))
async def test_refresh_is_refused_once_a_login_would_be(
    gateway_config: dict[str, Any],
    node: NodeAPIHarness,
    pam_service_name: str,
    users: Users,
    where: str,
    change: str,
) -> None:
    """A refresh token does not outlive the account: locked, expired or aged out on the login host, it is refused."""
    auth_hosts = node.node_name if where == "agent" else None
    command, reason = ACCOUNT_CHANGES[change]
    async with create_app(_config(gateway_config, node, pam_service_name, auth_hosts)).test_app() as app:
        client = app.test_client()
        status, body = await _login(client, users.viewer.name, users.viewer.password)
        assert status == 200, body
        subprocess.run([*command, users.viewer.name], check=True, capture_output=True)
        response = await client.post("/api/v1/auth/refresh", json={"refresh_token": body["data"]["refresh_token"]})
        refused = await response.get_json()
        assert response.status_code == 401, refused
        assert reason in refused["error"]["message"]
        status, _ = await _login(client, users.viewer.name, users.viewer.password)
        assert status == 401  # the same account state refuses a login too


async def test_the_agent_tells_why_an_account_may_no_longer_log_in(node: NodeAPIHarness, users: Users) -> None:
    token = node.token()
    status, body = await _agent_get(node, f"/accounts/{users.viewer.name}", token)
    assert status == 200, body
    assert body["data"] == {"username": users.viewer.name, "groups": [users.viewer.name], "refused": None}
    subprocess.run(["usermod", "-L", users.viewer.name], check=True, capture_output=True)
    status, body = await _agent_get(node, f"/accounts/{users.viewer.name}", token)
    assert status == 200 and body["data"]["refused"] == "the password is locked", body
    status, body = await _agent_get(node, "/accounts/nosuchuser-vapor", token)
    assert status == 404 and body["error"]["code"] == "NOT_FOUND", body


async def test_an_unregistered_login_host_is_auth_unavailable(
    gateway_config: dict[str, Any], node: NodeAPIHarness, refusing_service: str, users: Users
) -> None:
    config = _config(gateway_config, node, refusing_service, "no-such-host")
    async with create_app(config).test_app() as app:
        status, body = await _login(app.test_client(), users.admin.name, users.admin.password)
    assert status == 503, body
    assert body["error"]["code"] == "AUTH_UNAVAILABLE"
    assert "no-such-host" in body["error"]["message"]


@pytest.fixture
async def host_without_agent(kube: Kube) -> AsyncIterator[str]:
    """A registered Host whose agent has published no endpoint (never started, or gone)."""
    name = f"silent-{uuid.uuid4().hex[:8]}"
    hosts = kube.resources(Host)
    await hosts.create(Host(metadata=ObjectMeta(name=name), spec=HostSpec()), field_manager="vapor-test")
    try:
        yield name
    finally:
        with contextlib.suppress(NotFound):
            await hosts.delete(name)


async def test_login_hosts_that_cannot_be_asked_pass_to_the_next(
    gateway_config: dict[str, Any], node: NodeAPIHarness, refusing_service: str, users: Users, host_without_agent: str
) -> None:
    """An unregistered host and one without an agent are skipped, in order; the first that answers decides."""
    login_hosts = f"no-such-host-{uuid.uuid4().hex[:6]}, {host_without_agent},{node.node_name}"
    async with create_app(_config(gateway_config, node, refusing_service, login_hosts)).test_app() as app:
        client = app.test_client()
        status, body = await _login(client, users.admin.name, users.admin.password)
        assert status == 200 and body["data"]["user"]["role"] == "admin", body
        response = await client.post("/api/v1/auth/refresh", json={"refresh_token": body["data"]["refresh_token"]})
        assert response.status_code == 200, await response.get_json()
        status, body = await _login(client, users.admin.name, users.admin.password + "x")
        assert status == 401 and body["error"]["code"] == "UNAUTHORIZED", body
        metrics = await (await client.get("/metrics")).get_data(as_text=True)
    unregistered = login_hosts.split(",")[0]
    for host, code in ((unregistered, "AUTH_UNAVAILABLE"), (host_without_agent, "AGENT_UNAVAILABLE")):
        # asked for the login, the refresh and the wrong password: each time skipped, and counted
        assert f'vapor_gateway_login_host_failures_total{{code="{code}",host="{host}"}} 3.0' in metrics


@pytest.fixture
async def host_that_hangs(kube: Kube) -> AsyncIterator[str]:
    """A Host whose published endpoint takes connections and never answers (a hung agent)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    name = f"hung-{uuid.uuid4().hex[:8]}"
    hosts = kube.resources(Host)
    await hosts.create(Host(metadata=ObjectMeta(name=name), spec=HostSpec()), field_manager="vapor-test")
    endpoint = AgentEndpoint(url=f"https://127.0.0.1:{port}", cert_sha256="0" * 64)
    await hosts.apply_status(name, HostStatus(agent_endpoint=endpoint), field_manager="vapor-test", force=True)
    try:
        yield name
    finally:
        for writer in held:
            writer.close()
        server.close()
        with contextlib.suppress(NotFound):
            await hosts.delete(name)


async def test_a_login_host_that_hangs_passes_to_the_next_after_the_auth_timeout(
    gateway_config: dict[str, Any], node: NodeAPIHarness, refusing_service: str, users: Users, host_that_hangs: str
) -> None:
    """VAPOR_AUTH_TIMEOUT, not the agents' (much longer) timeout, bounds how long a hung login host holds a login."""
    config = {
        **_config(gateway_config, node, refusing_service, f"{host_that_hangs},{node.node_name}"),
        "AUTH_TIMEOUT": 1,
        "AGENT_TIMEOUT": 3600,  # were it used, the test would hang until pytest's timeout
    }
    async with create_app(config).test_app() as app:
        status, body = await _login(app.test_client(), users.admin.name, users.admin.password)
    assert status == 200 and body["data"]["user"]["role"] == "admin", body


async def test_when_no_login_host_can_be_asked_the_last_ones_failure_is_the_answer(
    gateway_config: dict[str, Any], node: NodeAPIHarness, pam_service_name: str, users: Users, host_without_agent: str
) -> None:
    """The gateway's own PAM would accept: still no login, and the error names the last host tried."""
    login_hosts = f"no-such-host-{uuid.uuid4().hex[:6]},{host_without_agent}"
    async with create_app(_config(gateway_config, node, pam_service_name, login_hosts)).test_app() as app:
        status, body = await _login(app.test_client(), users.admin.name, users.admin.password)
    assert status == 503, body
    assert body["error"]["code"] == "AGENT_UNAVAILABLE"
    assert host_without_agent in body["error"]["message"]


async def test_a_login_host_that_does_not_answer_refuses_logins_without_falling_back(
    gateway_config: dict[str, Any], node: NodeAPIHarness, pam_service_name: str, users: Users
) -> None:
    """The gateway's own PAM would accept here, yet a login host that is down means no login."""
    await node.api.stop()
    config = {**gateway_config, **node.gateway_config(), "PAM_SERVICE": pam_service_name, "AUTH_HOSTS": node.node_name}
    async with create_app(config).test_app() as app:
        status, body = await _login(app.test_client(), users.admin.name, users.admin.password)
    assert status == 502, body
    assert body["error"]["code"] == "AGENT_UNREACHABLE"


async def test_the_agent_never_logs_the_password(
    node: NodeAPIHarness, users: Users, caplog: pytest.LogCaptureFixture
) -> None:
    token = node.token()
    caplog.set_level(logging.DEBUG)
    for password in (users.admin.password, "Not-the-password-42"):
        status, body = await _agent_post(
            node, "/accounts/check", {"username": users.admin.name, "password": password}, token
        )
        assert status == 200, body
    assert body["data"] == {"accepted": False}
    typed = "Hunter2-typed-as-a-name"  # a refused name is often a password typed into the wrong field
    status, body = await _agent_post(node, "/accounts/check", {"username": typed, "password": "whatever"}, token)
    assert (status, body["data"]) == (200, {"accepted": False})
    checked = [r for r in caplog.records if r.name == "vapor.agent.accounts"]
    assert [r.__dict__.get("accepted") for r in checked] == [True, False, False]
    assert checked[0].__dict__["user"] == users.admin.name  # an accepted login names its user
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        assert users.admin.password not in text and "Not-the-password-42" not in text
        assert typed not in text


@pytest.mark.parametrize(
    "body",
    [
        {"username": "x"},
        {"password": "y"},
        {"username": "", "password": "y"},
        {"username": "x", "password": "y", "service": "other"},
        ["x", "y"],
    ],
)
async def test_the_agent_refuses_malformed_checks(node: NodeAPIHarness, body: Any) -> None:
    status, answer = await _agent_post(node, "/accounts/check", body, node.token())
    assert status == 400, answer
    assert answer["error"]["code"] == "INVALID_INPUT"


async def test_only_the_gateway_may_ask_the_agent(node: NodeAPIHarness, users: Users) -> None:
    status, answer = await _agent_post(
        node, "/accounts/check", {"username": users.admin.name, "password": users.admin.password}, node.token(OTHER_SA)
    )
    assert status == 403, answer
