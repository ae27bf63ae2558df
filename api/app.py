"""``create_app()``: configuration, OpenAPI, blueprints, error handlers and the gateway's lifecycle."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from quart import Quart
from quart_schema import HttpSecurityScheme, Info, QuartSchema

from . import (
    _agents,
    _bodysize,
    _clients,
    _metrics,
    _ratelimit,
    _uploads,
    auth,
    clones,
    consoles,
    containers,
    docker,
    hosts,
    images,
    kubernetes,
    logs,
    migrations,
    network,
    snapshots,
    storage,
    system,
    ui,
    users,
    vms,
    vmstream,
    ws,
)
from ._errors import register_error_handlers
from ._json import OrjsonProvider
from ._state import Gateway
from ._streamdoc import StreamsOpenAPI

log = logging.getLogger("vapor.gateway")

# Every setting, with its default; each can be set by an environment variable VAPOR_<NAME>.
DEFAULTS: dict[str, Any] = {
    "KUBECONFIG": None,  # else $KUBECONFIG, else the in-cluster service account
    "PAM_SERVICE": "login",  # the PAM service that checks passwords (when the gateway runs where the users live)
    "AUTH_HOSTS": "",  # hosts (ids or names, comma separated) whose agents check passwords, asked in order;
    # none: PAM on the gateway's machine
    "AUTH_TIMEOUT": 10.0,  # seconds a login host's agent has to answer before the next login host is asked
    "ADMIN_GROUPS": "sudo,wheel",  # members of these Linux groups get role admin
    "LOGIN_FAIL_DELAY": 2.0,  # seconds a refused password's answer waits, per account (when PAM runs here)
    "LOGIN_BACKOFF_MAX": 60.0,  # the longest an account that keeps failing is not checked (PAM here; 0: no backoff)
    "TERMINAL_GROUPS": "",  # besides the admins, members of these groups may open /ws/terminal
    "VIEWER_LOG_UNITS": "",  # systemd units whose logs viewers may read (none: logs are admin-only)
    "TOKEN_LIFETIME": 3600,  # seconds a bearer token is valid
    "REFRESH_TOKEN_LIFETIME": 7 * 24 * 3600,  # seconds a refresh token is valid (renewed on each use)
    "REFRESH_FAMILY_LIFETIME": 30 * 24 * 3600,  # seconds a login's refresh tokens last at most, however renewed
    "REFRESH_SWEEP_INTERVAL": 3600,  # seconds between removals of expired refresh-token families
    "SECRET_NAMESPACE": "vapor-system",  # where the signing key and refresh-token families live
    "SIGNING_KEY_SECRET": "vapor-gateway-signing-key",
    "ACTION_TIMEOUT": 30.0,  # seconds a power action waits for the agent, unless ?wait= says otherwise
    "MAX_CONTENT_LENGTH": 10 << 20,  # bytes of a logged-in user's request body (413 above it; see _bodysize)
    "UPLOAD_MAX_BYTES": 64 << 30,  # bytes of one image upload, streamed to a host (413 above it; see _uploads)
    "AUTH_MAX_BODY": 8 << 10,  # bytes of a login or refresh body, and of any body without a valid token
    "DEFAULT_HOST": None,  # host (id or name) of host-scoped endpoints called without ?host=
    "RATE_LIMIT": 100,  # requests per minute per client address, as the contract says (0: no limit)
    "LOGIN_RATE_LIMIT": 10,  # logins per minute per username and client address, outside RATE_LIMIT (0: no limit)
    "TRUSTED_PROXIES": "",  # CIDRs of proxies whose X-Forwarded-For names the client (see _clients)
    "IMPERSONATION_PREFIX": "vapor:",  # a REST user alice acts on Kubernetes as vapor:alice (see _impersonation)
    "AGENT_TIMEOUT": 30.0,  # seconds the gateway waits for an agent's node-local API
    "AGENT_TOKEN_FILE": None,  # the gateway's token for agents, of audience vapor-agent (the chart projects one)
    "AGENT_SERVICE_ACCOUNT": "vapor-system/vapor-gateway",  # else a TokenRequest for this (dev, tests)
    "UI_DIR": None,  # the built web console (default: the package's static folder, written by `make ui`)
}


class GatewayOpenAPI(StreamsOpenAPI, _uploads.RawBodiesOpenAPI):
    """The upload's body as bytes, not JSON; /ws/vms's messages under x-vapor-websockets."""


def create_app(config: Mapping[str, Any] | None = None) -> Quart:
    """The gateway app: defaults, then VAPOR_* environment variables, then ``config``."""
    app = Quart("vapor.gateway", static_folder=None)
    app.config.update(DEFAULTS)
    app.config.from_prefixed_env("VAPOR")
    if config:
        app.config.update(config)
    QuartSchema(
        app,
        info=Info(title="Vapor", version="v1", description="Hosts and virtual machines, the Kubernetes way."),
        security_schemes={"bearer": HttpSecurityScheme(scheme="bearer", bearer_format="JWT")},
        redoc_ui_path=None,
        scalar_ui_path=None,
        openapi_provider_class=GatewayOpenAPI,
    )
    _clients.install(app)
    app.json = OrjsonProvider(app)
    _bodysize.install(app)  # JSON requests, their body limit chosen by path and token
    _uploads.install(app)  # image uploads: streamed with backpressure, never held whole
    app.register_blueprint(auth.blueprint)
    app.register_blueprint(hosts.blueprint)
    app.register_blueprint(vms.blueprint)
    app.register_blueprint(snapshots.blueprint)
    app.register_blueprint(clones.blueprint)  # POST /api/v1/vms/{id}/clone
    app.register_blueprint(migrations.blueprint)
    app.register_blueprint(images.blueprint)
    app.register_blueprint(containers.blueprint)
    app.register_blueprint(docker.blueprint)
    app.register_blueprint(kubernetes.blueprint)
    app.register_blueprint(system.blueprint)
    app.register_blueprint(logs.blueprint)
    app.register_blueprint(users.blueprint)
    app.register_blueprint(network.blueprint)
    app.register_blueprint(storage.blueprint)
    app.register_blueprint(ws.blueprint)  # /ws/metrics, /ws/logs, /ws/terminal
    app.register_blueprint(consoles.blueprint)  # /ws/vms/{id}/console and /vnc
    app.register_blueprint(vmstream.blueprint)  # /ws/vms: VM changes as they happen
    app.register_blueprint(ui.blueprint)  # the web console at / (ui/, built into api/static)
    register_error_handlers(app)
    _metrics.install(app)  # /metrics, /healthz, /readyz (no token); first, so it times the rate limiter too
    _ratelimit.install(app, int(app.config["RATE_LIMIT"]), int(app.config["LOGIN_RATE_LIMIT"]))
    _agents.install(app)  # closes the pool of connections to the agents' node-local APIs

    @app.before_serving
    async def start() -> None:
        app.extensions["vapor"] = await Gateway.start(dict(app.config))

    @app.after_serving
    async def stop() -> None:
        state: Gateway | None = app.extensions.pop("vapor", None)
        if state is not None:
            await state.close()

    return app
