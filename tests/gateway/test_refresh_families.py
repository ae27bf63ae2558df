"""How long a stolen refresh token works: not past its login's absolute lifetime, not past a lock of the account."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

from quart.typing import TestClientProtocol as Client

from vapor.gateway import create_app

from .conftest import Users, login


async def _refresh(client: Client, refresh_token: str) -> tuple[int, dict[str, Any]]:
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    return response.status_code, await response.get_json()


async def test_a_login_ends_after_the_family_lifetime_however_often_it_is_refreshed(
    gateway_config: dict[str, Any], users: Users
) -> None:
    lifetime = 8  # seconds: room for three refreshes on a busy machine, short enough to wait out
    config = {**gateway_config, "REFRESH_TOKEN_LIFETIME": 3600, "REFRESH_FAMILY_LIFETIME": lifetime}
    async with create_app(config).test_app() as app:
        client = app.test_client()
        started = time.monotonic()
        data = await login(client, users.viewer)
        assert data["refresh_expires_in"] <= lifetime
        token = data["refresh_token"]
        for _ in range(3):  # each use would renew a refresh token's own expiry
            await asyncio.sleep(1)
            status, body = await _refresh(client, token)
            assert status == 200, body
            assert body["data"]["refresh_expires_in"] <= lifetime - 1  # counted from the login, not renewed
            token = body["data"]["refresh_token"]
        await asyncio.sleep(max(0.0, started + lifetime + 1 - time.monotonic()))
        status, body = await _refresh(client, token)
        assert status == 401, body
        assert "log in again" in body["error"]["message"]
        assert (await login(client, users.viewer))["refresh_token"]  # a new login starts a new family


async def test_a_lock_seen_at_one_refresh_revokes_every_login_of_the_account(client: Client, users: Users) -> None:
    stolen = (await login(client, users.viewer))["refresh_token"]
    own = (await login(client, users.viewer))["refresh_token"]
    other = (await login(client, users.admin))["refresh_token"]
    subprocess.run(["usermod", "-L", users.viewer.name], check=True)
    try:
        status, body = await _refresh(client, own)
        assert status == 401 and "locked" in body["error"]["message"], body
    finally:
        subprocess.run(["usermod", "-U", users.viewer.name], check=True)
    # Unlocked again, the other login's refresh token (say, a thief's) stays revoked.
    status, body = await _refresh(client, stolen)
    assert status == 401 and "revoked" in body["error"]["message"], body
    assert (await _refresh(client, other))[0] == 200  # another user's login is not touched
