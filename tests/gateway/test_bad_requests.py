"""Bad requests: each answers the error envelope with the right status, code and a message naming the problem."""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from quart.typing import TestClientProtocol as Client

from .conftest import Users, login


@dataclass(frozen=True)
class Bad:
    """One bad request and the answer it must get."""

    method: str
    path: str
    status: int
    code: str
    says: tuple[str, ...]  # words the message (or details) must contain
    json: Any = None
    raw: bytes | None = None
    auth: str = "admin"  # admin, none, garbage, basic, foreign
    field: str | None = None  # the field INVALID_INPUT must name


NS = "{ns}"  # replaced by the test's namespace
VM = {"name": "ok", "namespace": NS, "memory": "64Mi"}

CASES = {
    "no token": Bad("GET", "/api/v1/vms", 401, "UNAUTHORIZED", ("missing bearer token",), auth="none"),
    "malformed token": Bad("GET", "/api/v1/hosts", 401, "UNAUTHORIZED", ("malformed",), auth="garbage"),
    "basic auth": Bad("GET", "/api/v1/vms", 401, "UNAUTHORIZED", ("Bearer",), auth="basic"),
    "foreign key": Bad("GET", "/api/v1/vms", 401, "UNAUTHORIZED", ("signature",), auth="foreign"),
    "no token on write": Bad("POST", "/api/v1/vms", 401, "UNAUTHORIZED", ("bearer",), json=VM, auth="none"),
    "login bad json": Bad(
        "POST", "/api/v1/auth/login", 400, "INVALID_INPUT", ("not valid JSON",), raw=b'{"username": ', auth="none"
    ),
    "login empty body": Bad(
        "POST", "/api/v1/auth/login", 400, "INVALID_INPUT", ("not valid JSON",), raw=b"", auth="none"
    ),
    "login wrong type": Bad(
        "POST",
        "/api/v1/auth/login",
        400,
        "INVALID_INPUT",
        ("username", "string"),
        json={"username": 7, "password": "x"},
        auth="none",
        field="username",
    ),
    "login unknown field": Bad(
        "POST",
        "/api/v1/auth/login",
        400,
        "INVALID_INPUT",
        ("role", "not permitted"),
        json={"username": "a", "password": "b", "role": "admin"},
        auth="none",
        field="role",
    ),
    "login body is a list": Bad("POST", "/api/v1/auth/login", 400, "INVALID_INPUT", ("object",), json=[1], auth="none"),
    "refresh missing field": Bad(
        "POST",
        "/api/v1/auth/refresh",
        400,
        "INVALID_INPUT",
        ("refresh_token",),
        json={},
        auth="none",
        field="refresh_token",
    ),
    "refresh malformed": Bad(
        "POST", "/api/v1/auth/refresh", 401, "UNAUTHORIZED", ("malformed",), json={"refresh_token": "nope"}, auth="none"
    ),
    "refresh unknown": Bad(
        "POST",
        "/api/v1/auth/refresh",
        401,
        "UNAUTHORIZED",
        ("unknown",),
        json={"refresh_token": f"{uuid.uuid4().hex}.{secrets.token_urlsafe(32)}"},
        auth="none",
    ),
    "create bad json": Bad("POST", "/api/v1/vms", 400, "INVALID_INPUT", ("not valid JSON",), raw=b"{name: web}"),
    "create body not UTF-8": Bad(
        "POST", "/api/v1/vms", 400, "INVALID_INPUT", ("not valid JSON", "utf-8"), raw=b"\xc5\x1eh\xff"
    ),
    "login body not UTF-8": Bad(
        "POST",
        "/api/v1/auth/login",
        400,
        "INVALID_INPUT",
        ("not valid JSON",),
        raw=b'{"username": "\xff"}',
        auth="none",
    ),
    "memory below 16Mi": Bad(
        "POST", "/api/v1/vms", 400, "INVALID_INPUT", ("memory", "16Mi"), json={**VM, "memory": "15Mi"}, field="memory"
    ),
    "memory MiB below 16": Bad(
        "POST", "/api/v1/vms", 400, "INVALID_INPUT", ("memory", "16Mi"), json={**VM, "memory": 8}, field="memory"
    ),
    "memory not a quantity": Bad(
        "POST",
        "/api/v1/vms",
        400,
        "INVALID_INPUT",
        ("memory", "quantity"),
        json={**VM, "memory": "lots"},
        field="memory",
    ),
    "memory missing": Bad(
        "POST",
        "/api/v1/vms",
        400,
        "INVALID_INPUT",
        ("memory", "required"),
        json={"name": "x", "namespace": NS},
        field="memory",
    ),
    "cpu 0": Bad("POST", "/api/v1/vms", 400, "INVALID_INPUT", ("cpu", "1"), json={**VM, "cpu": 0}, field="cpu"),
    "cpu wrong type": Bad(
        "POST", "/api/v1/vms", 400, "INVALID_INPUT", ("cpu", "integer"), json={**VM, "cpu": "two"}, field="cpu"
    ),
    "bad vm name": Bad(
        "POST", "/api/v1/vms", 400, "INVALID_INPUT", ("name", "pattern"), json={**VM, "name": "Web_1"}, field="name"
    ),
    "bad namespace": Bad(
        "POST",
        "/api/v1/vms",
        400,
        "INVALID_INPUT",
        ("namespace",),
        json={**VM, "namespace": "No Space"},
        field="namespace",
    ),
    "namespace missing": Bad(
        "POST", "/api/v1/vms", 404, "NOT_FOUND", ("namespace", "does not exist"), json={**VM, "namespace": "ns-gone-0"}
    ),
    "unknown run strategy": Bad(
        "POST",
        "/api/v1/vms",
        400,
        "INVALID_INPUT",
        ("run_strategy",),
        json={**VM, "run_strategy": "Sprinting"},
        field="run_strategy",
    ),
    "disk size 0": Bad(
        "POST",
        "/api/v1/vms",
        400,
        "INVALID_INPUT",
        ("disks[0].size", "1Mi"),
        json={**VM, "disks": [{"name": "root", "size": "0"}]},
        field="disks[0].size",
    ),
    "disk path with a NUL byte": Bad(
        "POST",
        "/api/v1/vms",
        400,
        "INVALID_INPUT",
        ("disks[0].path",),
        json={**VM, "disks": [{"name": "root", "path": "/var/lib/vapor/images/a\u0000.qcow2"}]},
        field="disks[0].path",
    ),
    "disk without size or path (CEL rule)": Bad(
        "POST",
        "/api/v1/vms",
        400,
        "INVALID_INPUT",
        ("exactly one of size",),
        json={**VM, "disks": [{"name": "root"}]},
    ),
    "disk with an image and a path": Bad(
        "POST",
        "/api/v1/vms",
        400,
        "INVALID_INPUT",
        ("exactly one of size", "image"),
        json={**VM, "disks": [{"name": "root", "image": "debian", "path": "/var/lib/vapor/images/a.qcow2"}]},
        field="disks[0]",
    ),
    "cdrom with a size": Bad(
        "POST",
        "/api/v1/vms",
        400,
        "INVALID_INPUT",
        ("cdrom", "no size"),
        json={**VM, "disks": [{"name": "root", "size": "1Gi", "cdrom": True}]},
        field="disks[0]",
    ),
    "disk naming an image that does not exist": Bad(
        "POST",
        "/api/v1/vms",
        422,
        "INVALID_INPUT",
        ("image 'no-such-image-here' does not exist",),
        json={**VM, "disks": [{"name": "root", "size": "1Gi"}, {"name": "os", "image": "no-such-image-here"}]},
        field="disks[1].image",
    ),
    "memory over 64 bits": Bad(
        "POST", "/api/v1/vms", 400, "INVALID_INPUT", ("at most",), json={**VM, "memory": 2**62}, field="memory"
    ),
    "unknown firmware": Bad(
        "POST", "/api/v1/vms", 400, "INVALID_INPUT", ("firmware",), json={**VM, "firmware": "bogus"}, field="firmware"
    ),
    "unknown action": Bad(
        "POST",
        "/api/v1/vms/{vm}/action",
        400,
        "INVALID_INPUT",
        ("action", "start"),
        json={"action": "explode"},
        field="action",
    ),
    "action missing": Bad(
        "POST", "/api/v1/vms/{vm}/action", 400, "INVALID_INPUT", ("action",), json={}, field="action"
    ),
    "force not a bool": Bad(
        "POST",
        "/api/v1/vms/{vm}/action",
        400,
        "INVALID_INPUT",
        ("force",),
        json={"action": "stop", "force": "very"},
        field="force",
    ),
    "negative wait": Bad(
        "POST",
        "/api/v1/vms/{vm}/action?wait=-1",
        400,
        "INVALID_INPUT",
        ("wait",),
        json={"action": "start"},
        field="wait",
    ),
    "action on unknown vm id": Bad(
        "POST",
        f"/api/v1/vms/{uuid.uuid4()}/action",
        404,
        "NOT_FOUND",
        ("no virtual machine",),
        json={"action": "start"},
    ),
    "unknown vm id": Bad("GET", f"/api/v1/vms/{uuid.uuid4()}", 404, "NOT_FOUND", ("no virtual machine",)),
    "unknown vm name": Bad("GET", "/api/v1/vms/nope?namespace={ns}", 404, "NOT_FOUND", ("nope",)),
    "delete unknown vm": Bad("DELETE", "/api/v1/vms/nope?namespace={ns}", 404, "NOT_FOUND", ("nope",)),
    "list bad namespace": Bad(
        "GET", "/api/v1/vms?namespace=Bad!", 400, "INVALID_INPUT", ("namespace",), field="namespace"
    ),
    "unknown host id": Bad("GET", f"/api/v1/hosts/{uuid.uuid4()}", 404, "NOT_FOUND", ("no host",)),
    "unknown route": Bad("GET", "/api/v1/nothing-here", 404, "NOT_FOUND", ("no such endpoint",)),
    "body too large": Bad(
        # One byte over the contract's 100 MB: refused before the body is parsed.
        "POST",
        "/api/v1/vms",
        413,
        "INVALID_INPUT",
        ("too large",),
        raw=b'{"name": "' + b"x" * (100 << 20) + b'"}',
    ),
    "wrong method": Bad("DELETE", "/api/v1/hosts", 405, "METHOD_NOT_ALLOWED", ("method",)),
}


def _fill(value: Any, ns: str, vm: str) -> Any:
    if isinstance(value, str):
        return value.replace("{ns}", ns).replace("{vm}", vm)
    if isinstance(value, dict):
        return {k: _fill(v, ns, vm) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ns, vm) for v in value]
    return value


@pytest.fixture
async def vm_id(client: Client, users: Users, namespace: str) -> str:
    token = (await login(client, users.admin))["token"]
    body = {"name": "target", "namespace": namespace, "memory": "32Mi"}
    response = await client.post("/api/v1/vms", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201
    return str((await response.get_json())["data"]["id"])


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_bad_request(client: Client, users: Users, namespace: str, vm_id: str, case: Bad) -> None:
    headers: dict[str, str] = {}
    if case.auth == "admin":
        headers["Authorization"] = "Bearer " + (await login(client, users.admin))["token"]
    elif case.auth == "garbage":
        headers["Authorization"] = "Bearer not.a.jwt"
    elif case.auth == "basic":
        headers["Authorization"] = "Basic dXNlcjpwYXNz"
    elif case.auth == "foreign":
        claims = {"sub": users.admin.name, "role": "admin", "iat": int(time.time()), "exp": int(time.time()) + 60}
        token = jwt.encode({**claims, "iss": "vapor-gateway"}, secrets.token_bytes(64), algorithm="HS256")
        headers["Authorization"] = f"Bearer {token}"
    path = _fill(case.path, namespace, vm_id)
    kwargs: dict[str, Any] = {"headers": headers}
    if case.raw is not None:
        kwargs["data"] = case.raw
        headers["Content-Type"] = "application/json"
    elif case.json is not None:
        kwargs["json"] = _fill(case.json, namespace, vm_id)
    response = await client.open(path, method=case.method, **kwargs)
    body = await response.get_json()
    assert response.status_code == case.status, body
    assert body["status"] == "error"
    assert set(body) == {"status", "error"}
    error = body["error"]
    assert error["code"] == case.code
    text = error["message"] + " " + (error.get("details") or "")
    for word in case.says:
        assert word in text, (word, error)
    if case.field is not None:
        assert error["fields"][0]["field"] == case.field
        assert case.field in error["message"]
    assert "Traceback" not in text
