"""The app's shape: every route validated, documented and guarded; route modules are leaves; OpenAPI served;
failures in the envelope.

Also the real server: ``python -m vapor.gateway`` on Hypercorn over HTTP, restarted
with tokens that stay valid.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from quart.typing import TestClientProtocol as Client
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE, QUART_SCHEMA_RESPONSE_ATTRIBUTE

import vapor.gateway
from vapor.gateway import create_app
from vapor.gateway._guard import ROLE_ATTRIBUTE

from ..conftest import Kubectl
from ..support.wait import eventually
from .conftest import GatewayProcess, Users, bearer, login

# Routes whose credential is in the body: the password, or the refresh token (logout ends an expired login too).
PUBLIC = {"auth.login", "auth.refresh", "auth.logout"}
SCHEMA_ROUTES = {"openapi", "swagger_ui"}
# Probes and Prometheus scrapes: outside /api/v1, no token, not in the OpenAPI document (tests/observability).
# Reads that only admins may make: the host's accounts.
ADMIN_READS = {"users.list_users", "containers.container_logs"}  # a container's output may hold secrets
OBSERVABILITY_ROUTES = {"observability.healthz", "observability.readyz", "observability.metrics"}
# The web console's files at / (tests/gateway/test_ui.py): no token, not in the OpenAPI document.
UI_ROUTES = {"ui.index", "ui.asset", "ui.favicon"}


def test_every_route_is_validated_documented_and_guarded() -> None:
    app = create_app()
    # WebSockets authenticate in their first message and are tested in tests/websockets.
    rules = [
        r
        for r in app.url_map.iter_rules()
        if r.endpoint not in SCHEMA_ROUTES | OBSERVABILITY_ROUTES | UI_ROUTES and not r.websocket
    ]
    assert {r.endpoint for r in rules} >= {"auth.login", "vms.vm_action", "hosts.get_host"}
    for rule in rules:
        view = app.view_functions[rule.endpoint]
        assert rule.rule.startswith("/api/v1/"), rule
        assert view.__doc__ and len(view.__doc__.strip()) > 20, rule
        responses = getattr(view, QUART_SCHEMA_RESPONSE_ATTRIBUTE, {})
        assert {200, 201} & set(responses), rule
        methods = set(rule.methods or ()) - {"HEAD", "OPTIONS"}
        if methods & {"POST", "PUT", "PATCH"} and not rule.rule.endswith("/login"):
            assert getattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE, None) is not None, rule
        role = getattr(view, ROLE_ATTRIBUTE, None)
        if rule.endpoint in PUBLIC:
            assert role is None, rule
        else:
            expected = "admin" if methods != {"GET"} or rule.endpoint in ADMIN_READS else "viewer"
            assert role == expected, rule
            assert 401 in responses, rule


def _imported_modules(path: Path) -> set[str]:
    """The gateway modules ``path`` imports, by full name (``from .vms import x``, ``from . import vms``, ...)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = "vapor.gateway" if node.level else (node.module or "")
            module = f"{base}.{node.module}" if node.level and node.module else base
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_route_modules_are_leaves() -> None:
    """Only the app imports a route module (vms, hosts, ...); what routes share lives in helper modules.

    Helper modules (``_metrics``: counters, and the probes it installs) may be imported by anything.
    """
    app = create_app()
    route_modules = {
        bp.import_name
        for bp in app.blueprints.values()
        if bp.import_name.startswith("vapor.gateway.") and not bp.import_name.rpartition(".")[2].startswith("_")
    }
    assert {"vapor.gateway.vms", "vapor.gateway.hosts", "vapor.gateway.migrations"} <= route_modules
    folder = Path(vapor.gateway.__file__).parent
    offenders = {
        f"{path.name} imports {module}"
        for path in folder.glob("*.py")
        if path.name != "app.py"
        for module in _imported_modules(path) & route_modules
    }
    assert not offenders


def test_the_gateway_asks_the_operators_rules_without_importing_the_operator() -> None:
    """The pre-flight rules the gateway shows (migration targets) live in vapor.rules: no kopf, no handlers."""
    probe = (
        "import sys, vapor.gateway.app; "
        "print(sorted(m for m in sys.modules if m == 'kopf' or m.startswith(('kopf.', 'vapor.operator'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


async def test_openapi_and_docs_are_served(client: Client) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec = await response.get_json()
    assert "/api/v1/vms/{vm_id}/action" in spec["paths"]
    action = spec["paths"]["/api/v1/vms/{vm_id}/action"]["post"]
    assert "restart" in action["description"] + action["summary"]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in (await docs.get_data(as_text=True)).lower()


async def test_the_5xx_answers_of_host_endpoints_list_their_codes(client: Client) -> None:
    spec = await (await client.get("/openapi.json")).get_json()
    schemas = spec["components"]["schemas"]

    def codes(path: str, method: str, status: int) -> set[str]:
        answer = spec["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]
        code = schemas[answer["properties"]["error"]["$ref"].rpartition("/")[2]]["properties"]["code"]
        return set(code.get("enum") or [code["const"]])

    assert codes("/api/v1/docker/ps", "get", 503) == {"AGENT_UNAVAILABLE", "AUTH_UNAVAILABLE", "NO_RUNTIME_AVAILABLE"}
    assert codes("/api/v1/containers", "get", 502) >= {"AGENT_UNREACHABLE", "DOCKER_ERROR", "RUNTIME_ERROR"}
    assert codes("/api/v1/system/summary", "get", 503) == {"AGENT_UNAVAILABLE", "AUTH_UNAVAILABLE"}
    assert codes("/api/v1/logs", "get", 504) == {"AGENT_TIMEOUT"}
    for path in ("/api/v1/system/summary", "/api/v1/users", "/api/v1/network/interfaces"):
        assert {"400", "404"} <= set(spec["paths"][path]["get"]["responses"]), path  # ?host= empty, no such host


async def test_an_unexpected_failure_is_an_internal_error_without_a_trace(
    client: Client, users: Users, kubectl: Kubectl, gateway_config: dict[str, Any]
) -> None:
    await login(client, users.viewer)
    # The gateway's own namespace goes away under it (no controller-manager here, so it stays
    # Terminating): the API server refuses the new refresh-token Secret of the next login.
    kubectl("delete", "namespace", gateway_config["SECRET_NAMESPACE"], "--wait=false")
    response = await client.post(
        "/api/v1/auth/login", json={"username": users.viewer.name, "password": users.viewer.password}
    )
    body = await response.get_json()
    assert response.status_code == 500
    assert body["status"] == "error"
    assert body["error"]["code"] == "INTERNAL_ERROR"
    assert "Traceback" not in str(body) and "ApiException" not in str(body)


# -- the real server ---------------------------------------------------------------------------------


async def test_real_server_over_http_keeps_tokens_across_a_restart(server: GatewayProcess, users: Users) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        response = await http.post(
            "/api/v1/auth/login", json={"username": users.admin.name, "password": users.admin.password}
        )
        assert response.status_code == 200
        pair = response.json()["data"]
        assert response.headers["content-type"] == "application/json"
        vms = await http.get("/api/v1/vms", headers=bearer(pair["token"]))
        assert vms.status_code == 200
        assert vms.json()["status"] == "success"
        missing = await http.get("/api/v1/vms")
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "UNAUTHORIZED"

    server.stop()
    server.start()  # a new process, on a new port
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await http.get("/api/v1/hosts", headers=bearer(pair["token"]))).status_code == 200
        refreshed = await http.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        token = refreshed.json()["data"]["token"]

        async def works() -> bool:
            return (await http.get("/api/v1/vms", headers=bearer(token))).status_code == 200

        await eventually(works)
    log = server.log_path.read_text()
    assert users.admin.name in log  # the log says who logged in ...
    assert users.admin.password not in log  # ... but never a password or a token
    assert pair["token"] not in log and pair["refresh_token"] not in log


async def test_rate_limit_answers_429_in_the_envelope(gateway_config: dict[str, Any], users: Users) -> None:
    async with create_app({**gateway_config, "RATE_LIMIT": 3}).test_app() as app:
        client = app.test_client()
        token = (await login(client, users.viewer))["token"]  # logins have a budget of their own
        assert (await client.get("/api/v1/hosts", headers=bearer(token))).status_code == 200
        assert (await client.get("/api/v1/vms", headers=bearer(token))).status_code == 200
        assert (await client.get("/api/v1/vms", headers=bearer(token))).status_code == 200
        response = await client.get("/api/v1/vms", headers=bearer(token))
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) >= 1
        error = (await response.get_json())["error"]
        assert error["code"] == "RATE_LIMITED"
        assert "3 a minute" in error["message"]
        assert (await client.get("/openapi.json")).status_code == 200  # the docs are not counted
