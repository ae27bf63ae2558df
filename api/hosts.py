"""/api/v1/hosts: the fleet's servers and their inventory, from the Host watch cache."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import document_response, tag, validate_response

from vapor.model import Host

from ._errors import NOT_FOUND, APIError
from ._guard import require
from ._schema import Failure, HostList, HostView, Success
from ._state import gateway
from ._views import host_view

blueprint = Blueprint("hosts", __name__, url_prefix="/api/v1/hosts")


def find_host(host_id: str) -> Host:
    """A Host by its stable id (status.id) or by its resource name; NOT_FOUND otherwise."""
    cache = gateway().hosts
    host = cache.get(host_id)
    if host is None:
        host = next((h for h in cache.items() if h.status and h.status.id == host_id), None)
    if host is None:
        raise APIError(404, NOT_FOUND, f"no host with id or name {host_id!r}")
    return host


@blueprint.get("")
@require("viewer")
@tag(["hosts"])
@document_response(Success[HostList])
async def list_hosts() -> Response:
    """Every host: id, hostname, connection status, sync cursor and inventory."""
    return gateway().host_bodies.response()


@blueprint.get("/<host_id>")
@require("viewer")
@tag(["hosts"])
@validate_response(Success[HostView])
@document_response(Failure, 404)
async def get_host(host_id: str) -> Success[HostView]:
    """One host, by its id (UUID) or by the name of its Host resource."""
    return Success[HostView](data=host_view(find_host(host_id)))
