"""Per-client limits behind a proxy: X-Forwarded-For counts only when a trusted proxy sent it."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from werkzeug.datastructures import Headers

from vapor.gateway import DEFAULTS, create_app
from vapor.gateway._clients import forwarded_client, parse_networks

from .conftest import Users, bearer

PROXIES = parse_networks("10.0.0.0/8, fd00::/8")


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("192.0.2.7", ["198.51.100.1"], "192.0.2.7"),  # not a proxy we trust: its header is ignored
        ("10.1.2.3", ["198.51.100.1"], "198.51.100.1"),
        ("10.1.2.3", ["198.51.100.1, 10.9.9.9"], "198.51.100.1"),  # two trusted hops
        ("10.1.2.3", ["203.0.113.66, 198.51.100.1"], "198.51.100.1"),  # a client's own entry does not count
        ("10.1.2.3", ["203.0.113.66", "198.51.100.1"], "198.51.100.1"),  # the header twice: one list
        # Only trusted addresses: the one our proxy saw, not the leftmost, which the sender wrote.
        ("10.1.2.3", ["10.4.4.4, 10.5.5.5"], "10.5.5.5"),
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


async def _login_status(client: Client, forwarded_for: str, username: str = "nobody-here") -> int:
    response = await client.post(
        "/api/v1/auth/login",
        json={"username": username, "password": "x"},
        headers={"X-Forwarded-For": forwarded_for},
        scope_base={"client": ("127.0.0.1", 40000)},  # the proxy's address as the server sees it
    )
    return response.status_code


@pytest.mark.controlplane
@pytest.mark.parametrize("trusted", [True, False])
async def test_each_forwarded_client_gets_its_own_budget(gateway_config: dict[str, Any], trusted: bool) -> None:
    config = {**gateway_config, "LOGIN_RATE_LIMIT": 2, "TRUSTED_PROXIES": "127.0.0.0/8" if trusted else ""}
    async with create_app(config).test_app() as app:
        client = app.test_client()
        assert [await _login_status(client, "198.51.100.1") for _ in range(3)] == [401, 401, 429]
        # another user behind the same proxy: its own budget only when the proxy is trusted
        assert await _login_status(client, "198.51.100.2") == (401 if trusted else 429)


@pytest.mark.controlplane
async def test_a_client_in_a_trusted_network_cannot_pick_its_bucket(gateway_config: dict[str, Any]) -> None:
    """A sender inside the trusted networks writes a new X-Forwarded-For on each request; the proxy adds
    the sender's address after it. The sender's address counts, so its own entries give it no fresh budget."""
    config = {**gateway_config, "LOGIN_RATE_LIMIT": 2, "TRUSTED_PROXIES": "127.0.0.0/8"}
    async with create_app(config).test_app() as app:
        client = app.test_client()
        answers = [await _login_status(client, f"127.0.0.{10 + i}, 127.0.0.2") for i in range(4)]
        assert answers == [401, 401, 429, 429]


@pytest.mark.controlplane
async def test_a_client_looping_on_login_does_not_lock_out_the_others_behind_its_address(
    gateway_config: dict[str, Any], users: Users
) -> None:
    """With the default limits and no trusted proxy every user behind the proxy is one client: one of them
    looping on a login spends that username's budget, not everyone's."""
    config = {k: v for k, v in gateway_config.items() if k not in ("RATE_LIMIT", "LOGIN_RATE_LIMIT")}
    config["LOGIN_BACKOFF_MAX"] = 0  # the per-account backoff (its own tests) would answer 429 before the budget
    async with create_app(config).test_app() as app:
        client = app.test_client()
        looped = [
            await _login_status(client, "198.51.100.1", users.viewer.name) for _ in range(DEFAULTS["RATE_LIMIT"] + 20)
        ]
        assert looped[: DEFAULTS["LOGIN_RATE_LIMIT"]] == [401] * DEFAULTS["LOGIN_RATE_LIMIT"]
        assert set(looped[DEFAULTS["LOGIN_RATE_LIMIT"] :]) == {429}
        refused = await client.post(
            "/api/v1/auth/login",
            json={"username": users.viewer.name, "password": users.viewer.password},
            scope_base={"client": ("127.0.0.1", 40000)},
        )
        assert refused.status_code == 429 and refused.headers["Retry-After"]  # that username waits a minute
        assert "too many logins" in (await refused.get_json())["error"]["message"]
        # The admin behind the same address logs in and works.
        response = await client.post(
            "/api/v1/auth/login",
            json={"username": users.admin.name, "password": users.admin.password},
            scope_base={"client": ("127.0.0.1", 40000)},
        )
        assert response.status_code == 200, await response.get_json()
        token = (await response.get_json())["data"]["token"]
        hosts = await client.get("/api/v1/hosts", headers=bearer(token), scope_base={"client": ("127.0.0.1", 40000)})
        assert hosts.status_code == 200
