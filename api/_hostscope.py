"""Which host a host-scoped endpoint acts on: ``?host=<id or name>``, else the default, else the only one.

The contract's network, storage, container, user, system and log endpoints
name no host: they were written for one server. In a fleet the caller says
which with ``?host=``; when it does not, the gateway picks the one configured
as ``VAPOR_DEFAULT_HOST`` (``make dev`` sets it to this machine), else the
only Host there is, else the only connected (Ready) one: a Host written for
a machine whose agent never came (``kubectl apply -k examples/``) does not
break a client that knows no ``?host=``. Otherwise it refuses with
INVALID_INPUT listing the choices, rather than guess.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from quart import has_websocket_context, request, websocket

from vapor.agentapi.errors import INVALID_INPUT
from vapor.model import Host

from ._errors import APIError
from ._lookups import find_host
from ._state import gateway
from ._views import host_status

# Shown in the OpenAPI document of every host-scoped endpoint.
HOST_PARAMETER_HELP = (
    "Host to act on, by id (UUID) or name. May be left out when the gateway has a default host "
    "(VAPOR_DEFAULT_HOST), when there is only one host, or when only one host is connected."
)

MAX_NAMES_IN_ERROR = 10


class HostQuery(BaseModel):
    """Which host (the query string of a host-scoped endpoint without other parameters)."""

    host: str | None = Field(default=None, description=HOST_PARAMETER_HELP)


def scoped_host(host: str | None = None) -> Host:
    """The Host this request is about (``host`` overrides the query string); NOT_FOUND or INVALID_INPUT otherwise."""
    query = websocket.args if has_websocket_context() else request.args  # WebSockets name a host the same way
    wanted = host if host is not None else query.get("host")
    if wanted is not None:
        wanted = wanted.strip()
        if not wanted:
            raise APIError(400, INVALID_INPUT, "query parameter 'host' is empty; give a host id or name")
        return find_host(wanted)
    state = gateway()
    default = state.config.get("DEFAULT_HOST")
    if default:
        return find_host(str(default))
    hosts = sorted(state.hosts.items(), key=lambda h: h.name)
    if len(hosts) == 1:
        return hosts[0]
    connected = [h for h in hosts if host_status(h) == "connected"]
    if len(connected) == 1:
        return connected[0]
    if not hosts:
        raise APIError(400, INVALID_INPUT, "there is no host yet: no agent has registered")
    names = ", ".join(f"{h.name} ({host_status(h)})" for h in hosts[:MAX_NAMES_IN_ERROR])
    more = f" and {len(hosts) - MAX_NAMES_IN_ERROR} more" if len(hosts) > MAX_NAMES_IN_ERROR else ""
    raise APIError(
        400,
        INVALID_INPUT,
        f"there are {len(hosts)} hosts and {len(connected)} of them connected; "
        f"say which with ?host=<id or name> (one of: {names}{more})",
    )
