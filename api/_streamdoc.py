"""The OpenAPI document's part for /ws/vms, an extension beyond the v1 contract.

OpenAPI has no WebSocket operations, so the stream is not a path (the REST
fuzzing and the contract's path list stay as they are): its messages are
schemas under ``components`` (the web console's TypeScript types come from
them) and ``x-vapor-websockets`` names the socket, its messages and its
protocol (PROTOCOL; the route is .vmstream).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from quart_schema.openapi import OpenAPIProvider

from ._vmschema import VMList, VMView

_REF = "#/components/schemas/{model}"

PROTOCOL = """\
Not part of the v1 contract: an extension of this gateway, for the web console and scripts that
follow a fleet. Why a WebSocket and not server-sent events: it authenticates like the other
sockets (the token in the first message, never in a URL or a log line, which
an EventSource could not avoid as it cannot send an Authorization header),
counts against the same MAX_SOCKETS per client, and ends with 4401 when its
token expires, which the web console's socket code already answers by opening
a new one with a fresh token.

Protocol (JSON text messages):

1. ``{type: 'auth', payload: {token}}`` -> ``{type: 'auth', status: 'ok', user}``;
2. ``{type: 'subscribe', payload: {namespace?}}`` (every namespace without one) ->
   ``{type: 'sync', data: {vms: [VMView], count}}``, the data of GET /api/v1/vms at that moment;
3. then for every change ``{type: 'vm', event: 'ADDED' | 'MODIFIED' | 'DELETED', vm: VMView}``,
   the VM as GET /api/v1/vms shows it (for DELETED, as it was last seen).

A client that falls more than 2,000 changes behind is sent a new ``sync``
instead of them. After a reconnect the client starts again from the new
socket's ``sync``: no change is lost between two sockets. Every logged-in
user may follow (the list is what GET /api/v1/vms shows viewers). Refusals
are those of the other sockets: UNAUTHORIZED (4401) without a valid auth
message or when the token expires, RATE_LIMITED (4429) for an 11th socket
of one client, INVALID_INPUT for a bad subscribe message.
"""


class VMStreamSubscribe(BaseModel):
    """The client's second message on /ws/vms: which VMs to follow."""

    type: Literal["subscribe"]
    payload: dict[str, str] | None = Field(
        default=None, description="{namespace}: only that namespace's VMs; every VM without it."
    )


class VMStreamSync(BaseModel):
    """The whole list as GET /api/v1/vms answers it: first after subscribe, and again for a client that fell behind."""

    type: Literal["sync"]
    data: VMList


class VMStreamChange(BaseModel):
    """One VM changed: made (ADDED), changed (MODIFIED) or gone (DELETED, the VM as it was last seen)."""

    type: Literal["vm"]
    event: Literal["ADDED", "MODIFIED", "DELETED"]
    vm: VMView


MESSAGES = (VMStreamSubscribe, VMStreamSync, VMStreamChange)


def websockets_document(components: dict[str, Any]) -> dict[str, Any]:
    """``x-vapor-websockets``; the messages' schemas are added to ``components`` (those already there are kept)."""
    for model in MESSAGES:
        schema = model.model_json_schema(ref_template=_REF)
        for name, definition in schema.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components[model.__name__] = schema
    return {
        "/ws/vms": {
            "summary": "Every VirtualMachine change as it happens (an extension beyond the v1 contract)",
            "description": PROTOCOL,
            "client": [{"$ref": _REF.format(model="VMStreamSubscribe")}],
            "server": [{"$ref": _REF.format(model=m.__name__)} for m in (VMStreamSync, VMStreamChange)],
        }
    }


class StreamsOpenAPI(OpenAPIProvider):
    """Adds the WebSocket extensions' messages to the document (mixed into the gateway's provider)."""

    def schema(self) -> dict[str, Any]:
        """quart-schema's document, with ``x-vapor-websockets``."""
        document = super().schema()
        document["x-vapor-websockets"] = websockets_document(document["components"]["schemas"])
        return document
