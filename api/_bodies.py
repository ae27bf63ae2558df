"""List bodies served as bytes: encoded once per watch-cache generation, and gzip-compressed on demand.

Each object's view is encoded once per resourceVersion and kept, so a change
to one VM among a thousand re-encodes that VM only; the body is then joined
from the encoded pieces. The envelope is the one ``Success[<List>]`` documents.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from quart import Response, request

from vapor.kube import Informer

from ._json import dumps


class ListBody:
    """The body of one list endpoint (``{"status": "success", "data": {<key>: [...], "count": n}}``)."""

    def __init__(self, informer: Informer[Any], view: Callable[[Any], BaseModel], key: str) -> None:
        self.informer = informer
        self.view = view
        self._head = b'{"status":"success","data":{"' + key.encode() + b'":['
        self._generation = -1
        self._bodies: dict[tuple[str | None, bool], bytes] = {}
        self._pieces: dict[str, tuple[str | None, bytes]] = {}  # uid: (resourceVersion, encoded view)

    def get(self, namespace: str | None = None, *, gzipped: bool = False) -> bytes:
        """The body for every object, or for one namespace; gzip-compressed when asked."""
        if self._generation != self.informer.generation:
            self._bodies = {}
            self._generation = self.informer.generation
        body = self._bodies.get((namespace, gzipped))
        if body is None:
            body = gzip.compress(self.get(namespace), compresslevel=6, mtime=0) if gzipped else self._build(namespace)
            self._bodies[(namespace, gzipped)] = body
        return body

    def response(self, namespace: str | None = None) -> Response:
        """The body as a response, compressed when the request accepts gzip."""
        gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
        response = Response(self.get(namespace, gzipped=gzipped), content_type="application/json")
        response.headers["Vary"] = "Accept-Encoding"
        if gzipped:
            response.headers["Content-Encoding"] = "gzip"
        return response

    def _build(self, namespace: str | None) -> bytes:
        items = self.informer.items()
        if namespace is None:  # forget the pieces of objects that are gone
            present = {self._key(o) for o in items}
            self._pieces = {k: v for k, v in self._pieces.items() if k in present}
        else:
            items = [o for o in items if o.metadata.namespace == namespace]
        items.sort(key=lambda o: (o.metadata.namespace or "", o.name))
        pieces = [self._encode(o) for o in items]
        return self._head + b",".join(pieces) + b'],"count":' + str(len(pieces)).encode() + b"}}"

    def _encode(self, obj: Any) -> bytes:
        key = self._key(obj)
        version = obj.metadata.resource_version
        piece = self._pieces.get(key)
        if piece is None or piece[0] != version:
            piece = self._pieces[key] = (version, dumps(self.view(obj)))
        return piece[1]

    @staticmethod
    def _key(obj: Any) -> str:
        return str(obj.metadata.uid or f"{obj.metadata.namespace}/{obj.name}")
