"""Login through real PAM, bearer tokens, refresh rotation and reuse, replicas sharing tokens, roles."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import jwt
import pytest
from quart.typing import TestClientProtocol as Client

from vapor.gateway import create_app

from ..conftest import Kubectl
from ..support.wait import eventually
from .conftest import Users, bearer, login


async def test_login_returns_the_fields_of_both_documents(client: Client, users: Users) -> None:
    data = await login(client, users.admin)
    assert set(data) >= {"token", "expires_at", "refresh_token", "expires_in"}
    assert data["expires_in"] > 3000
    assert data["user"] == {"username": users.admin.name, "role": "admin", "groups": data["user"]["groups"]}
    assert users.admin_group in data["user"]["groups"]
    claims = jwt.decode(data["token"], options={"verify_signature": False})
    assert claims["sub"] == users.admin.name
    assert claims["exp"] == data["expires_at"]
    response = await client.get("/api/v1/vms", headers=bearer(data["token"]))
    assert response.status_code == 200
    assert (await response.get_json())["status"] == "success"


async def test_wrong_password_and_unknown_user_are_refused_alike(client: Client, users: Users) -> None:
    for body in (
        {"username": users.admin.name, "password": users.admin.password + "x"},
        {"username": users.admin.name + "nobody", "password": users.admin.password},
    ):
        response = await client.post("/api/v1/auth/login", json=body)
        assert response.status_code == 401
        assert await response.get_json() == {
            "status": "error",
            "error": {"code": "UNAUTHORIZED", "message": "invalid username or password"},
        }


async def test_a_refused_login_never_logs_the_name_in_clear(
    client: Client, users: Users, caplog: pytest.LogCaptureFixture
) -> None:
    """A name that is refused is often a password typed into the wrong field: the log holds a mark instead."""
    caplog.set_level(logging.DEBUG)
    typed = "Hunter2-typed-as-a-name"
    for _ in range(2):
        response = await client.post("/api/v1/auth/login", json={"username": typed, "password": "whatever"})
        assert response.status_code == 401
    lines = [record.getMessage() + repr(record.__dict__) for record in caplog.records]
    assert not [line for line in lines if typed in line]
    refused = [r.getMessage() for r in caplog.records if "login refused" in r.getMessage()]
    assert len(refused) == 2 and refused[0] == refused[1]  # the same name gives the same mark
    assert (await login(client, users.admin))["user"]["username"] == users.admin.name
    assert any(f"{users.admin.name!r} logged in" in record.getMessage() for record in caplog.records)


async def test_a_guessed_account_backs_off_without_holding_a_thread(
    gateway_config: dict[str, Any], users: Users
) -> None:
    """PAM on the gateway's machine: three wrong passwords, then even the right one waits; other accounts do not."""
    async with create_app({**gateway_config, "LOGIN_FAIL_DELAY": 1.0}).test_app() as app:
        client = app.test_client()
        wrong = {"username": users.admin.name, "password": "a-wrong-guess"}
        for _ in range(3):
            assert (await client.post("/api/v1/auth/login", json=wrong)).status_code == 401
        right = {"username": users.admin.name, "password": users.admin.password}
        response = await client.post("/api/v1/auth/login", json=right)
        body = await response.get_json()
        assert (response.status_code, body["error"]["code"]) == (429, "RATE_LIMITED"), body
        assert (await login(client, users.viewer))["user"]["username"] == users.viewer.name
        guesses = [client.post("/api/v1/auth/login", json={**wrong, "username": users.viewer.name}) for _ in range(4)]
        statuses = sorted([(await answer).status_code for answer in asyncio.as_completed(guesses)])
        assert statuses == [401, 429, 429, 429]  # one guess of an account at a time
        await asyncio.sleep(1.5)
        assert (await login(client, users.admin))["user"]["role"] == "admin"


async def test_login_without_a_field_names_it(client: Client, users: Users) -> None:
    response = await client.post("/api/v1/auth/login", json={"username": users.admin.name})
    assert response.status_code == 400
    error = (await response.get_json())["error"]
    assert error["code"] == "INVALID_INPUT"
    assert "password" in error["message"]
    assert error["fields"][0]["field"] == "password"


async def test_an_expired_token_is_refused(gateway_config: dict[str, Any], users: Users) -> None:
    async with create_app({**gateway_config, "TOKEN_LIFETIME": 1}).test_app() as app:
        client = app.test_client()
        data = await login(client, users.viewer)
        assert data["expires_in"] <= 1
        await asyncio.sleep(2.1)  # let the one-second token run out
        response = await client.get("/api/v1/hosts", headers=bearer(data["token"]))
        assert response.status_code == 401
        error = (await response.get_json())["error"]
        assert error["code"] == "UNAUTHORIZED"
        assert "expired" in error["message"]
        # the refresh token still trades for a fresh token that works
        response = await client.post("/api/v1/auth/refresh", json={"refresh_token": data["refresh_token"]})
        assert response.status_code == 200
        token = (await response.get_json())["data"]["token"]
        assert (await client.get("/api/v1/hosts", headers=bearer(token))).status_code == 200


async def _refresh(client: Client, refresh_token: str) -> tuple[int, dict[str, Any]]:
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    return response.status_code, await response.get_json()


async def test_refresh_rotates_and_a_reused_token_revokes_the_family(client: Client, users: Users) -> None:
    first = await login(client, users.admin)
    status, body = await _refresh(client, first["refresh_token"])
    assert status == 200, body
    second = body["data"]
    assert second["refresh_token"] != first["refresh_token"]
    assert set(second) >= {"token", "expires_at", "refresh_token", "expires_in"}
    assert (await client.get("/api/v1/vms", headers=bearer(second["token"]))).status_code == 200
    # the first refresh token was used: presenting it again is refused ...
    status, body = await _refresh(client, first["refresh_token"])
    assert status == 401
    assert body["error"]["code"] == "UNAUTHORIZED"
    assert "already used" in body["error"]["message"]
    # ... and revokes the family: the newest refresh token of that login fails too
    status, body = await _refresh(client, second["refresh_token"])
    assert status == 401
    assert "revoked" in body["error"]["message"]
    # another login is a separate family and still works
    other = await login(client, users.admin)
    status, _ = await _refresh(client, other["refresh_token"])
    assert status == 200


async def test_logout_revokes_the_logins_refresh_token_and_no_other(client: Client, users: Users) -> None:
    ended = await login(client, users.admin)
    kept = await login(client, users.admin)
    response = await client.post("/api/v1/auth/logout", json={"refresh_token": ended["refresh_token"]})
    assert response.status_code == 200, await response.get_json()
    status, body = await _refresh(client, ended["refresh_token"])
    assert status == 401 and "revoked" in body["error"]["message"]
    status, _ = await _refresh(client, kept["refresh_token"])
    assert status == 200, "another login of the same user goes on"
    unknown = "0" * 32 + ".abcdefghijklmnopqrstuvwxyz"
    response = await client.post("/api/v1/auth/logout", json={"refresh_token": unknown})
    body = await response.get_json()
    assert response.status_code == 401 and body["error"]["code"] == "UNAUTHORIZED", body


async def test_a_second_replica_shares_tokens_and_refresh_state(
    client: Client, gateway_config: dict[str, Any], users: Users
) -> None:
    first = await login(client, users.admin)
    async with create_app(gateway_config).test_app() as replica_app:
        replica = replica_app.test_client()
        # a token issued by the first replica is good at the second
        response = await replica.get("/api/v1/vms", headers=bearer(first["token"]))
        assert response.status_code == 200
        # a refresh at the first replica ...
        status, body = await _refresh(client, first["refresh_token"])
        assert status == 200
        # ... makes the same refresh token useless at the second, which revokes the family
        status, refused = await _refresh(replica, first["refresh_token"])
        assert status == 401
        assert refused["error"]["code"] == "UNAUTHORIZED"
        status, _ = await _refresh(client, body["data"]["refresh_token"])
        assert status == 401


async def test_a_token_signed_with_another_key_is_refused(
    client: Client, gateway_config: dict[str, Any], users: Users, kubectl: Kubectl
) -> None:
    other_namespace = gateway_config["SECRET_NAMESPACE"] + "-other"
    try:
        async with create_app({**gateway_config, "SECRET_NAMESPACE": other_namespace}).test_app() as other_app:
            foreign = await login(other_app.test_client(), users.admin)
        response = await client.get("/api/v1/vms", headers=bearer(foreign["token"]))
        assert response.status_code == 401
        assert (await response.get_json())["error"] == {
            "code": "UNAUTHORIZED",
            "message": "the token's signature is not valid",
        }
    finally:
        kubectl("delete", "namespace", other_namespace, "--wait=false", "--ignore-not-found", check=False)


async def test_viewer_reads_but_may_not_write(client: Client, users: Users, namespace: str) -> None:
    viewer = await login(client, users.viewer)
    assert viewer["user"]["role"] == "viewer"
    assert (await client.get("/api/v1/vms", headers=bearer(viewer["token"]))).status_code == 200
    assert (await client.get("/api/v1/hosts", headers=bearer(viewer["token"]))).status_code == 200
    vm = {"name": "web", "namespace": namespace, "memory": "64Mi"}
    response = await client.post("/api/v1/vms", json=vm, headers=bearer(viewer["token"]))
    assert response.status_code == 403
    error = (await response.get_json())["error"]
    assert error["code"] == "PERMISSION_DENIED"
    assert users.viewer.name in error["message"]
    admin = await login(client, users.admin)
    response = await client.post("/api/v1/vms", json=vm, headers=bearer(admin["token"]))
    assert response.status_code == 201, await response.get_json()


async def test_signing_key_is_made_once_when_replicas_start_together(
    gateway_config: dict[str, Any], users: Users
) -> None:
    apps = [create_app(gateway_config) for _ in range(3)]
    contexts = [a.test_app() for a in apps]
    started = await asyncio.gather(*(c.__aenter__() for c in contexts))
    try:
        token = (await login(started[0].test_client(), users.viewer))["token"]
        for test_app in started[1:]:
            response = await test_app.test_client().get("/api/v1/hosts", headers=bearer(token))
            assert response.status_code == 200
    finally:
        for context in contexts:
            await context.__aexit__(None, None, None)


async def test_expired_refresh_families_are_swept(
    gateway_config: dict[str, Any], users: Users, kubectl: Kubectl
) -> None:
    namespace = gateway_config["SECRET_NAMESPACE"]
    config = {**gateway_config, "REFRESH_TOKEN_LIFETIME": 1, "REFRESH_SWEEP_INTERVAL": 0.5}
    async with create_app(config).test_app() as app:
        client = app.test_client()
        data = await login(client, users.viewer)
        family = data["refresh_token"].split(".")[0]

        def secrets() -> str:
            return str(kubectl("get", "secrets", "-n", namespace, "-l", "vapor.io/refresh-family", "-o", "name").stdout)

        assert family in secrets()
        await asyncio.sleep(1.1)  # let the one-second refresh token run out
        status, body = await _refresh(client, data["refresh_token"])
        assert status == 401
        assert body["error"]["code"] == "UNAUTHORIZED"
        await eventually(lambda: family not in secrets())


async def test_the_default_pam_service_login_works(gateway_config: dict[str, Any], users: Users) -> None:
    config = {k: v for k, v in gateway_config.items() if k != "PAM_SERVICE"}
    async with create_app(config).test_app() as app:
        assert app.app.config["PAM_SERVICE"] == "login"
        data = await login(app.test_client(), users.admin)
        assert data["user"]["role"] == "admin"


async def test_two_replicas_refreshing_the_same_token_at_once_accept_it_once(
    client: Client, gateway_config: dict[str, Any], users: Users
) -> None:
    first = await login(client, users.viewer)
    async with create_app(gateway_config).test_app() as replica_app:
        replica = replica_app.test_client()
        answers = await asyncio.gather(
            _refresh(client, first["refresh_token"]), _refresh(replica, first["refresh_token"])
        )
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200, 401]
    winner = next(body for status, body in answers if status == 200)["data"]
    # the token was presented twice: its family is revoked, the winner's new refresh token included
    status, body = await _refresh(client, winner["refresh_token"])
    assert status == 401
    assert "revoked" in body["error"]["message"]
