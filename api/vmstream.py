"""/ws/vms: every VirtualMachine change as it happens (an extension beyond the v1 contract).

The protocol, and why a WebSocket, are told in ._streamdoc.PROTOCOL (the
OpenAPI document's ``x-vapor-websockets`` serves the same text); the one feed
every socket reads is ._vmfeed.
"""

from __future__ import annotations

import logging

import orjson
from quart import Blueprint, websocket

from vapor.agentapi.errors import INVALID_INPUT

from ._errors import APIError
from ._sockets import authenticate, read_message, serve_socket, until_expiry
from ._state import gateway

log = logging.getLogger("vapor.gateway.vmstream")

blueprint = Blueprint("vmstream", __name__)


def _namespace(subscribe: dict[str, object]) -> str | None:
    payload = subscribe.get("payload")
    if payload is None:
        return None
    namespace = payload.get("namespace") if isinstance(payload, dict) else ""
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise APIError(400, INVALID_INPUT, "subscribe's payload.namespace must be a namespace's name when given")
    return namespace


async def _follow(namespace: str | None) -> None:
    feed = gateway().vm_feed
    subscriber, sync = feed.subscribe(namespace)
    try:
        message: bytes | None = sync
        while True:
            await websocket.send((message or feed.sync(namespace)).decode())
            message = await subscriber.next()
    finally:
        feed.unsubscribe(subscriber)


async def _session(client: str) -> None:
    claims = await authenticate()
    await websocket.send(orjson.dumps({"type": "auth", "status": "ok", "user": claims.username}).decode())
    subscribe, _ = await read_message("subscribe")
    namespace = _namespace(subscribe)
    log.info("vm stream opened", extra={"user": claims.username, "client": client, "namespace": namespace})
    await until_expiry(claims, _follow(namespace))


@blueprint.websocket("/ws/vms")
async def ws_vms() -> None:
    """Every VM change: a sync of the list, then each ADDED, MODIFIED and DELETED VM."""
    await serve_socket(_session)
