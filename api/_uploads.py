"""Request bodies the gateway passes on as they arrive (image uploads): bounded in total, never held whole.

Quart's ASGI handler reads a request's body into a buffer as fast as the
client sends, whether or not the route keeps up. For an upload that would
hold gigabytes while the host's agent writes them more slowly, so:

- :class:`StreamedBody` counts every byte against the upload limit
  (``UPLOAD_MAX_BYTES``: 413 over it, a Content-Length over it at once) and
  says when its buffer is full (``HIGH_WATER``);
- :class:`BackpressuredConnection` (the app's ASGI HTTP handler) stops taking
  messages from the server while that buffer is full, so the server stops
  reading the client's socket: TCP slows the client down to the agent's pace.

:class:`RawBodiesOpenAPI` documents such a body as application/octet-stream.
Which requests get such a body is decided in :mod:`._bodysize` (the path of
``PUT /api/v1/images/{name}/upload`` and a valid token); every other body
keeps the JSON limits.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from typing import Any

from hypercorn.typing import ASGIReceiveCallable
from pydantic import BaseModel
from quart import Quart, Request
from quart.asgi import ASGIHTTPConnection
from quart.wrappers.request import Body
from quart_schema import DataSource, OpenAPIProvider
from werkzeug.exceptions import RequestEntityTooLarge

UPLOAD_PATH = re.compile(r"^/api/v1/images/[^/]+/upload$")
# Bytes received but not yet passed on, above which the client is made to wait.
HIGH_WATER = 4 << 20


def is_upload(method: str, path: str) -> bool:
    """Whether a request is an image upload (its body is streamed, with the upload limit)."""
    return method == "PUT" and bool(UPLOAD_PATH.match(path))


class StreamedBody(Body):
    """A body read in chunks as it arrives, bounded in total by ``limit`` rather than by what is buffered."""

    def __init__(self, expected_content_length: int | None, limit: int) -> None:
        super().__init__(expected_content_length, limit)
        self.limit = limit
        self.received = 0
        self._room = asyncio.Event()
        self._room.set()

    def append(self, data: bytes) -> None:
        """Take a chunk from the server; over the limit, the body fails with 413."""
        if data == b"" or self._must_raise is not None:
            return
        self.received += len(data)
        if self.received > self.limit:
            self._data.clear()
            self._must_raise = RequestEntityTooLarge()
            self.set_complete()
            return
        self._data.extend(data)
        self._has_data.set()
        if len(self._data) >= HIGH_WATER:
            self._room.clear()

    def set_complete(self) -> None:
        """The last chunk came (or the body failed): nobody waits for room any more."""
        super().set_complete()
        self._room.set()

    async def __anext__(self) -> bytes:
        try:
            data = await super().__anext__()
        except StopAsyncIteration:
            # Over the limit while the reader waited: that is no end of the body, the upload must fail
            # (Quart's Body would end the iteration as if the client had sent everything).
            if self._must_raise is not None:
                raise self._must_raise from None
            raise
        self._room.set()
        return data

    async def room(self) -> None:
        """Wait until the buffer is below HIGH_WATER."""
        await self._room.wait()


class BackpressuredConnection(ASGIHTTPConnection):
    """Quart's ASGI HTTP handler, waiting for room in a StreamedBody before taking the next message."""

    async def handle_messages(self, request: Request, receive: ASGIReceiveCallable) -> None:
        """Pass the server's messages to the request, no faster than a streamed body is read."""
        body = request.body
        while True:
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body.set_complete()
                elif isinstance(body, StreamedBody):
                    await body.room()
            elif message["type"] == "http.disconnect":
                return


class RawBody(BaseModel):
    """A request body that is not JSON but bytes (application/octet-stream), documented as such."""


class RawBodiesOpenAPI(OpenAPIProvider):
    """The OpenAPI document, with a RawBody request (``document_request``) as binary octets."""

    def build_request_body(self, model: Any, source: DataSource) -> tuple[dict[str, Any], dict[str, Any]]:
        """application/octet-stream for a RawBody; quart-schema's JSON for every other model."""
        if isinstance(model, type) and issubclass(model, RawBody):
            binary = {"schema": {"type": "string", "format": "binary"}}
            body = {
                "required": True,
                "description": inspect.getdoc(model),
                "content": {"application/octet-stream": binary},
            }
            return body, {}
        return super().build_request_body(model, source)


def install(app: Quart) -> None:
    """Handle the app's HTTP requests with backpressure on streamed bodies."""
    app.asgi_http_class = BackpressuredConnection
