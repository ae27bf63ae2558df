"""Bad requests to the containers and Docker endpoints: each is refused with the right status and code,
before any host is asked (so nothing is half done), and says what is wrong."""

from __future__ import annotations

from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from .conftest import Users, bearer, login

OK = {"name": "web-1", "image": "nginx:latest"}


def body(**change: Any) -> dict[str, Any]:
    return {**OK, **change}


# (method, path, json, status, code, words the message or details must hold)
CASES: dict[str, tuple[str, str, Any, int, str, tuple[str, ...]]] = {
    "name with a space": ("POST", "/docker/containers", body(name="bad name"), 400, "INVALID_INPUT", ("name",)),
    "name like an option": ("POST", "/docker/containers", body(name="--privileged"), 400, "INVALID_INPUT", ("name",)),
    "name too long": ("POST", "/docker/containers", body(name="a" * 200), 400, "INVALID_INPUT", ("name",)),
    "upper-case image": ("POST", "/docker/containers", body(image="Nginx:latest"), 400, "INVALID_INPUT", ("image",)),
    "image with a space": ("POST", "/docker/containers", body(image="nginx :1"), 400, "INVALID_INPUT", ("image",)),
    "image like an option": ("POST", "/docker/containers", body(image="-v/:/host"), 400, "INVALID_INPUT", ("image",)),
    "empty image": ("POST", "/docker/containers", body(image=""), 400, "INVALID_INPUT", ("image",)),
    "no image": ("POST", "/docker/containers", {"name": "web-1"}, 400, "INVALID_INPUT", ("image",)),
    "env without =": ("POST", "/docker/containers", body(env=["PRODUCTION"]), 400, "INVALID_INPUT", ("env",)),
    "env bad name": ("POST", "/docker/containers", body(env=["1X=y"]), 400, "INVALID_INPUT", ("env",)),
    "env not a list": ("POST", "/docker/containers", body(env="A=b"), 400, "INVALID_INPUT", ("env",)),
    "env with NUL": ("POST", "/docker/containers", body(env=["A=b\x00c"]), 400, "INVALID_INPUT", ("env",)),
    "port protocol": (
        "POST", "/docker/containers", body(portBindings={"80/icmp": [{"hostPort": "8080"}]}),
        400, "INVALID_INPUT", ("portBindings",),
    ),
    "container port 0": (
        "POST", "/docker/containers", body(portBindings={"0/tcp": [{"hostPort": "8080"}]}),
        400, "INVALID_INPUT", ("portBindings",),
    ),
    "host port too big": (
        "POST", "/docker/containers", body(portBindings={"80/tcp": [{"hostPort": "99999"}]}),
        400, "INVALID_INPUT", ("hostPort",),
    ),
    "host port not a number": (
        "POST", "/docker/containers", body(portBindings={"80/tcp": [{"hostPort": "80; rm -rf /"}]}),
        400, "INVALID_INPUT", ("hostPort",),
    ),
    "host ip not an address": (
        "POST", "/docker/containers", body(portBindings={"80/tcp": [{"hostPort": "8080", "hostIp": "eth0"}]}),
        400, "INVALID_INPUT", ("hostIp",),
    ),
    "no host bindings": (
        "POST", "/docker/containers", body(portBindings={"80/tcp": []}), 400, "INVALID_INPUT", ("portBindings",),
    ),
    "unknown field": ("POST", "/docker/containers", body(privileged=True), 400, "INVALID_INPUT", ("privileged",)),
    "body not an object": ("POST", "/docker/containers", ["nginx"], 400, "INVALID_INPUT", ("object",)),
    "pull tag in the name": (
        "POST", "/docker/images/pull", {"imageName": "nginx:latest"}, 400, "INVALID_INPUT", ("imageName",),
    ),
    "pull bad tag": (
        "POST", "/docker/images/pull", {"imageName": "nginx", "tag": "v1 --all"}, 400, "INVALID_INPUT", ("tag",),
    ),
    "pull no name": ("POST", "/docker/images/pull", {"tag": "latest"}, 400, "INVALID_INPUT", ("imageName",)),
    "stop bad timeout": ("POST", "/docker/containers/web-1/stop?timeout=-1", None, 400, "INVALID_INPUT", ("timeout",)),
    "stop timeout too long": (
        "POST", "/docker/containers/web-1/stop?timeout=100000", None, 400, "INVALID_INPUT", ("timeout",),
    ),
    "start bad id": ("POST", "/docker/containers/-rf/start", None, 400, "INVALID_INPUT", ("container id",)),
    "delete bad id": ("DELETE", "/docker/containers/.hidden", None, 400, "INVALID_INPUT", ("container id",)),
    "get bad id": ("GET", "/containers/a%20b", None, 400, "INVALID_INPUT", ("container id",)),
    "logs tail 0": ("GET", "/containers/web-1/logs?tail=0", None, 400, "INVALID_INPUT", ("tail",)),
    "logs tail not a number": ("GET", "/containers/web-1/logs?tail=all", None, 400, "INVALID_INPUT", ("tail",)),
    "unknown runtime": ("GET", "/containers?runtime=podman", None, 400, "INVALID_INPUT", ("runtime",)),
    "wrong method": ("PUT", "/docker/containers/web-1/start", None, 405, "METHOD_NOT_ALLOWED", ("method",)),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
async def test_bad_request_is_refused_with_its_code(client: Client, users: Users, case: str) -> None:
    method, path, json, status, code, words = CASES[case]
    token = (await login(client, users.admin))["token"]
    response = await client.open(f"/api/v1{path}", method=method, json=json, headers=bearer(token))
    answer = await response.get_json()
    assert response.status_code == status, answer
    assert answer["status"] == "error" and answer["error"]["code"] == code, answer
    said = f"{answer['error']['message']} {answer['error'].get('details', '')}".lower()
    assert all(word.lower() in said for word in words), answer


@pytest.mark.parametrize(
    ("method", "path", "json"),
    [
        ("POST", "/docker/containers", OK),
        ("POST", "/docker/containers/web-1/start", None),
        ("POST", "/docker/containers/web-1/stop", None),
        ("DELETE", "/docker/containers/web-1", None),
        ("POST", "/docker/images/pull", {"imageName": "nginx"}),
    ],
)
async def test_docker_changes_need_role_admin(client: Client, users: Users, method: str, path: str, json: Any) -> None:
    token = (await login(client, users.viewer))["token"]
    response = await client.open(f"/api/v1{path}", method=method, json=json, headers=bearer(token))
    answer = await response.get_json()
    assert response.status_code == 403 and answer["error"]["code"] == "PERMISSION_DENIED", answer


@pytest.mark.parametrize("path", ["/containers", "/containers/abc", "/containers/abc/logs", "/docker/ps"])
async def test_reads_need_a_token(client: Client, path: str) -> None:
    response = await client.get(f"/api/v1{path}")
    answer = await response.get_json()
    assert response.status_code == 401 and answer["error"]["code"] == "UNAUTHORIZED", answer


async def test_start_takes_no_body_fields(client: Client, users: Users) -> None:
    token = (await login(client, users.admin))["token"]
    response = await client.post("/api/v1/docker/containers/web-1/start", json={"force": True}, headers=bearer(token))
    answer = await response.get_json()
    assert response.status_code == 400 and answer["error"]["code"] == "INVALID_INPUT", answer
    assert "force" in str(answer["error"]), answer


@pytest.mark.parametrize("path", ["/docker/containers", "/docker/images/pull", "/docker/containers/web-1/start"])
async def test_a_body_that_is_not_utf8_is_invalid_input(client: Client, users: Users, path: str) -> None:
    # Found by the property-based run (tests/gateway/test_schemathesis.py): it was a 500.
    token = (await login(client, users.admin))["token"]
    headers = {**bearer(token), "Content-Type": "application/json"}
    response = await client.post(f"/api/v1{path}", data=b"\xc5\x1eh\xff", headers=headers)
    answer = await response.get_json()
    assert response.status_code == 400 and answer["error"]["code"] == "INVALID_INPUT", answer
    assert "not valid JSON" in answer["error"]["message"], answer
