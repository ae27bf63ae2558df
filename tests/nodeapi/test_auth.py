"""Who may call a node's API: only the gateway's ServiceAccount, checked by a real TokenReview, over pinned TLS."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from typing import Any

import aiohttp
import pytest

from vapor.kube import Kube
from vapor.model import Host, HostStatus

from ..support.nodeapi import NodeAPIHarness
from ..support.wait import eventually

pytestmark = pytest.mark.controlplane


async def _get(harness: NodeAPIHarness, path: str, token: str | None, *, pin: bool = True) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    tls: Any = aiohttp.Fingerprint(bytes.fromhex(harness.api.fingerprint or "")) if pin else False
    async with (
        aiohttp.ClientSession() as session,
        session.get(harness.url + path, headers=headers, ssl=tls) as response,
    ):
        return response.status, await response.json()


async def test_the_gateways_token_is_accepted(node: NodeAPIHarness) -> None:
    status, body = await _get(node, "/system/summary", node.token())
    assert status == 200, body
    assert body["status"] == "success"
    assert body["data"]["kernel"]
    assert len(body["data"]["load_average"]) == 3


async def test_another_service_accounts_token_is_forbidden(node: NodeAPIHarness) -> None:
    status, body = await _get(node, "/system/summary", node.token("other"))
    assert status == 403
    assert body["status"] == "error"
    assert body["error"]["code"] == "PERMISSION_DENIED"
    assert f"system:serviceaccount:{node.namespace}:other" in body["error"]["message"]


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Basic dXNlcjpwdw==", "Bearer not-a-token", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln"],
)
async def test_no_token_or_a_bad_one_is_unauthorized(node: NodeAPIHarness, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            node.url + "/system/summary",
            headers=headers,
            ssl=aiohttp.Fingerprint(bytes.fromhex(node.api.fingerprint or "")),
        ) as response,
    ):
        body = await response.json()
    assert response.status == 401
    assert body["error"]["code"] == "UNAUTHORIZED"


async def test_unknown_paths_are_refused_before_they_are_looked_up(node: NodeAPIHarness) -> None:
    status, body = await _get(node, "/no/such/thing", None)
    assert (status, body["error"]["code"]) == (401, "UNAUTHORIZED")
    status, body = await _get(node, "/no/such/thing", node.token())
    assert (status, body["error"]["code"]) == (404, "NOT_FOUND")


async def test_a_revoked_token_is_refused_once_the_cache_expires(node: NodeAPIHarness, kubectl: Any) -> None:
    token = node.token()
    assert (await _get(node, "/system/summary", token))[0] == 200
    kubectl("delete", "serviceaccount", "gateway", "-n", node.namespace)

    async def refused() -> Any:
        node.api.reviewer._cache.clear()  # the cache is only seconds long; the API server's own lookup lags
        status, body = await _get(node, "/system/summary", token)
        return status == 401 and body["error"]["code"] == "UNAUTHORIZED"

    await eventually(refused, what="the deleted ServiceAccount's token to be refused")


async def test_answers_are_cached_briefly(node: NodeAPIHarness) -> None:
    token = node.token()
    before = node.api.reviewer.reviews
    for _ in range(5):
        assert (await _get(node, "/system/summary", token))[0] == 200
    assert node.api.reviewer.reviews == before + 1


async def test_the_endpoint_and_fingerprint_are_published_in_host_status(node: NodeAPIHarness, kube: Kube) -> None:
    host = await kube.resources(Host).get(node.node_name)
    assert host.status is not None and host.status.agent_endpoint is not None
    assert host.status.agent_endpoint.url == node.url
    assert node.url.startswith("https://127.0.0.1:")
    # The certificate the server presents is the one whose fingerprint is published.
    address, port = node.url.removeprefix("https://").rsplit(":", 1)
    pem = await asyncio.to_thread(ssl.get_server_certificate, (address, int(port)))  # the server runs in this loop
    served = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
    assert host.status.agent_endpoint.cert_sha256 == served


async def test_a_different_certificate_is_refused_by_a_pinning_client(node: NodeAPIHarness) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ServerFingerprintMismatch):
            await session.get(node.url + "/system/summary", ssl=aiohttp.Fingerprint(b"\x00" * 32))


async def test_the_endpoint_is_published_again_after_the_host_lost_it(node: NodeAPIHarness, kube: Kube) -> None:
    hosts = kube.resources(Host)
    await hosts.patch_status(node.node_name, HostStatus(agent_endpoint=None), field_manager="vapor-test")

    async def republished() -> bool:
        await node.api.publish()
        host = await hosts.get(node.node_name)
        return host.status is not None and host.status.agent_endpoint is not None

    await eventually(republished)


async def test_a_token_meant_for_the_api_server_is_refused(node: NodeAPIHarness) -> None:
    # The gateway's own ServiceAccount, but a token of the API server's audience (what any pod running
    # as that account has mounted by default): agents take only tokens of the audience vapor-agent.
    status, body = await _get(node, "/system/summary", node.token(audience=None))
    assert (status, body["error"]["code"]) == (401, "UNAUTHORIZED")


async def test_the_token_the_gateway_sends_agents_is_refused_by_the_api_server(
    node: NodeAPIHarness, control_plane: Any
) -> None:
    # What a node that was taken over receives from the gateway cannot be replayed as the gateway.
    from vapor.gateway._agents import GatewayToken

    async with await Kube.connect(str(control_plane.kubeconfig)) as kube:
        token = await GatewayToken(kube, None, f"{node.namespace}/gateway").get()
    assert (await _get(node, "/system/summary", token))[0] == 200
    server = control_plane.url
    request = aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"})
    async with (
        request as session,
        session.get(f"{server}/api/v1/namespaces/{node.namespace}/pods", ssl=False) as answer,
    ):
        assert answer.status == 401
