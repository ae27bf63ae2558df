"""/api/v1/hosts: the fleet's servers and their inventory, from the Host watch cache."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import document_response, tag, validate_response

from ._guard import require
from ._lookups import find_host
from ._schema import Failure, HostList, HostView, Success
from ._state import gateway
from ._views import host_view

blueprint = Blueprint("hosts", __name__, url_prefix="/api/v1/hosts")


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
