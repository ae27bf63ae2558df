"""/api/v1/system through the gateway: the gateway asks the host's real node API with its ServiceAccount token."""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from vapor.agent.nodeapi import system as system_api
from vapor.gateway import create_app
from vapor.kube import Kube

from ..conftest import Kubectl
from ..gateway.conftest import Users, bearer, login
from ..support.nodeapi import NodeAPIHarness, running_node_api

pytestmark = pytest.mark.controlplane


async def test_summary_cpu_and_memory_come_from_the_host(gw_client: Client, users: Users) -> None:
    token = (await login(gw_client, users.viewer))["token"]
    response = await gw_client.get("/api/v1/system/summary", headers=bearer(token))
    body = await response.get_json()
    assert response.status_code == 200, body
    assert body["data"]["hostname"] == socket.gethostname()
    assert body["data"]["uptime"] > 0 and len(body["data"]["load_average"]) == 3
    response = await gw_client.get("/api/v1/system/cpu", headers=bearer(token))
    cpu = (await response.get_json())["data"]
    assert cpu["threads"] == len(cpu["per_cpu_percent"]) >= 1
    response = await gw_client.get("/api/v1/system/memory", headers=bearer(token))
    memory = (await response.get_json())["data"]
    assert 0 < memory["available"] <= memory["total"]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/v1/system/summary?host=no-such-host", 404, "NOT_FOUND"),
        ("/api/v1/system/summary?host=", 400, "INVALID_INPUT"),
        ("/api/v1/system/disk", 404, "NOT_FOUND"),
    ],
)
async def test_bad_requests(gw_client: Client, users: Users, path: str, status: int, code: str) -> None:
    token = (await login(gw_client, users.viewer))["token"]
    response = await gw_client.get(path, headers=bearer(token))
    body = await response.get_json()
    assert (response.status_code, body["error"]["code"]) == (status, code), body


async def test_without_a_login_the_agent_is_never_asked(gw_client: Client, node: NodeAPIHarness) -> None:
    before = node.api.reviewer.reviews
    response = await gw_client.get("/api/v1/system/summary")
    assert response.status_code == 401
    assert node.api.reviewer.reviews == before


async def test_a_stopped_agent_is_a_502(gw_client: Client, users: Users, node: NodeAPIHarness) -> None:
    token = (await login(gw_client, users.viewer))["token"]
    await node.api.stop()
    response = await gw_client.get("/api/v1/system/summary", headers=bearer(token))
    body = await response.get_json()
    assert (response.status_code, body["error"]["code"]) == (502, "AGENT_UNREACHABLE"), body


async def test_the_gateway_never_calls_an_agent_without_tls(
    kube: Kube, kubectl: Kubectl, namespace: str, gateway_config: dict[str, Any], users: Users
) -> None:
    # An agent that publishes a plain-HTTP endpoint (--no-api-tls) would receive the gateway's token
    # and users' passwords in clear: the gateway refuses to call it.
    name = f"node-{uuid.uuid4().hex[:8]}"
    async with running_node_api(kube, kubectl, namespace, name, routes=[system_api.routes], tls=False) as node:
        assert node.url.startswith("http://")
        async with create_app({**gateway_config, **node.gateway_config()}).test_app() as app:
            client = app.test_client()
            before = node.api.reviewer.reviews
            token = (await login(client, users.viewer))["token"]
            response = await client.get("/api/v1/system/summary", headers=bearer(token))
            body = await response.get_json()
            assert node.api.reviewer.reviews == before, "the gateway sent its token to a plain-HTTP agent"
    assert (response.status_code, body["error"]["code"]) == (503, "AGENT_UNAVAILABLE"), body
    assert "over https only" in body["error"]["message"]


async def test_an_answer_is_taken_only_from_the_host_the_gateway_asked(
    gw_client: Client, users: Users, node: NodeAPIHarness, kubectl: Kubectl, cluster_objects: list[str]
) -> None:
    # A Host whose status names another node's agent (its address and certificate): the gateway must
    # not take that agent's answers, logins or data for the Host it meant to ask.
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    kubectl.apply({"apiVersion": "vapor.io/v1alpha1", "kind": "Host", "metadata": {"name": ghost}, "spec": {}})
    cluster_objects.append(f"hosts.vapor.io/{ghost}")
    endpoint = {"url": node.url, "certSha256": node.api.fingerprint}
    kubectl("patch", "host", ghost, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"agentEndpoint": endpoint}}))  # fmt: skip
    token = (await login(gw_client, users.viewer))["token"]
    response = await gw_client.get(f"/api/v1/system/summary?host={ghost}", headers=bearer(token))
    body = await response.get_json()
    assert (response.status_code, body["error"]["code"]) == (502, "AGENT_UNREACHABLE"), body
    assert f"answered as node {node.node_name!r}, not as host {ghost!r}" in body["error"]["message"]
    # The same agent, asked for its own host, answers.
    response = await gw_client.get(f"/api/v1/system/summary?host={node.node_name}", headers=bearer(token))
    assert response.status_code == 200, await response.get_json()
