"""Per-client limits behind a proxy: X-Forwarded-For counts only when a trusted proxy sent it."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from werkzeug.datastructures import Headers

from vapor.gateway import create_app
from vapor.gateway._clients import forwarded_client, parse_networks

PROXIES = parse_networks("10.0.0.0/8, fd00::/8")


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("192.0.2.7", ["198.51.100.1"], "192.0.2.7"),  # not a proxy we trust: its header is ignored
        ("10.1.2.3", ["198.51.100.1"], "198.51.100.1"),
        ("10.1.2.3", ["198.51.100.1, 10.9.9.9"], "198.51.100.1"),  # two trusted hops
        ("10.1.2.3", ["203.0.113.66, 198.51.100.1"], "198.51.100.1"),  # a client's own entry does not count
        ("10.1.2.3", ["203.0.113.66", "198.51.100.1"], "198.51.100.1"),  # the header twice: one list
        ("10.1.2.3", ["10.4.4.4, 10.5.5.5"], "10.4.4.4"),  # only proxies: the first of them
        ("10.1.2.3", [], "10.1.2.3"),
        ("10.1.2.3", ["not-an-address"], "10.1.2.3"),  # a broken header counts the proxy
        ("fd00::1", ["2001:db8::5"], "2001:db8::5"),
    ],
)
def test_the_client_behind_trusted_proxies(peer: str, forwarded: list[str], client: str) -> None:
    headers = Headers([("X-Forwarded-For", line) for line in forwarded])
    assert forwarded_client(peer, headers, PROXIES) == client


def test_no_trusted_proxies_means_the_peer() -> None:
    assert forwarded_client("10.1.2.3", Headers([("X-Forwarded-For", "198.51.100.1")]), ()) == "10.1.2.3"


def test_a_bad_trusted_proxy_entry_stops_the_gateway_from_starting() -> None:
    with pytest.raises(ValueError, match=re.escape("'10.0.0.0/33'")):
        create_app({"TRUSTED_PROXIES": "10.0.0.0/8,10.0.0.0/33"})
    assert parse_networks("10.0.0.1") == (ipaddress.ip_network("10.0.0.1/32"),)


async def _login_status(client: Client, forwarded_for: str) -> int:
    response = await client.post(
        "/api/v1/auth/login",
        json={"username": "nobody-here", "password": "x"},
        headers={"X-Forwarded-For": forwarded_for},
        scope_base={"client": ("127.0.0.1", 40000)},  # the proxy's address as the server sees it
    )
    return response.status_code


@pytest.mark.controlplane
@pytest.mark.parametrize("trusted", [True, False])
async def test_each_forwarded_client_gets_its_own_budget(gateway_config: dict[str, Any], trusted: bool) -> None:
    config = {**gateway_config, "RATE_LIMIT": 2, "TRUSTED_PROXIES": "127.0.0.0/8" if trusted else ""}
    async with create_app(config).test_app() as app:
        client = app.test_client()
        assert [await _login_status(client, "198.51.100.1") for _ in range(3)] == [401, 401, 429]
        # another user behind the same proxy: its own budget only when the proxy is trusted
        assert await _login_status(client, "198.51.100.2") == (401 if trusted else 429)
