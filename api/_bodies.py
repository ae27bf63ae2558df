"""List bodies served as bytes: encoded once per watch-cache generation, and gzip-compressed on demand.

Each object's view is encoded once per resourceVersion and kept, so a change
to one VM among a thousand re-encodes that VM only; the body is then joined
from the encoded pieces. The envelope is the one ``Success[<List>]`` documents.

Pages (``?limit=`` and ``?continue=``) walk the objects in (namespace, name)
order from where the last page ended (which objects, :mod:`._vmpages`): the
continue token names the last object a page held, so a page is never skipped
or repeated when objects come and go between two requests (an object made
behind the cursor meanwhile is not seen by that walk; one made ahead of it is).
"""

from __future__ import annotations

import base64
import binascii
import gzip
from collections.abc import Callable, Hashable
from typing import Any

from pydantic import BaseModel
from quart import Response, request

from vapor.kube import Informer

from ._json import dumps

KEPT_BODIES = 128  # bodies kept per cache generation: the whole list's, and the pages polled


class ListBody:
    """The body of one list endpoint (``{"status": "success", "data": {<key>: [...], "count": n}}``)."""

    def __init__(self, informer: Informer[Any], view: Callable[[Any], BaseModel], key: str) -> None:
        self.informer = informer
        self.view = view
        self._head = b'{"status":"success","data":{"' + key.encode() + b'":['
        self._generation = -1
        self._bodies: dict[tuple[Hashable, bool], bytes] = {}  # (namespace or a page's query, gzipped): body
        self._pieces: dict[str, tuple[str | None, bytes]] = {}  # uid: (resourceVersion, encoded view)

    def get(self, namespace: str | None = None, *, gzipped: bool = False) -> bytes:
        """The body for every object, or for one namespace; gzip-compressed when asked."""
        return self._cached(namespace, gzipped, lambda: self._build(namespace))

    def response(self, namespace: str | None = None) -> Response:
        """The body as a response, compressed when the request accepts gzip."""
        gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
        return _respond(self.get(namespace, gzipped=gzipped), gzipped)

    def page_response(self, query: Hashable, make: Callable[[], bytes]) -> Response:
        """A page's body as a response, compressed when the request accepts gzip.

        ``make`` makes the body of the page ``query`` names; it is kept, like the whole list's,
        until the cache changes, so a client polling the same page is answered from bytes.
        """
        gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
        return _respond(self._cached(("page", query), gzipped, make), gzipped)

    def _cached(self, key: Hashable, gzipped: bool, make: Callable[[], bytes]) -> bytes:
        if self._generation != self.informer.generation:
            self._bodies = {}
            self._generation = self.informer.generation
        body = self._bodies.get((key, gzipped))
        if body is None:
            body = gzip.compress(self._cached(key, False, make), compresslevel=6, mtime=0) if gzipped else make()
            if len(self._bodies) >= KEPT_BODIES:  # many distinct pages asked in one generation: start again
                self._bodies = {}
            self._bodies[(key, gzipped)] = body
        return body

    def page(self, chosen: list[Any], remaining: int) -> bytes:
        """The body of one page: the ``chosen`` objects, in order, and how many more the next pages hold.

        The body also carries ``continue`` (the token of the next page, null on the last) and
        ``remaining``.
        """
        token = encode_continue(chosen[-1]) if remaining and chosen else None
        pieces = [self._encode(o) for o in chosen]
        return (
            self._head
            + b",".join(pieces)
            + b'],"count":'
            + str(len(pieces)).encode()
            + b',"continue":'
            + (dumps(token) if token else b"null")
            + b',"remaining":'
            + str(remaining).encode()
            + b"}}"
        )

    def _build(self, namespace: str | None) -> bytes:
        items = self.informer.items()
        if namespace is None:  # forget the pieces of objects that are gone
            present = {self._key(o) for o in items}
            self._pieces = {k: v for k, v in self._pieces.items() if k in present}
        else:
            items = [o for o in items if o.metadata.namespace == namespace]
        items.sort(key=_order_key)
        pieces = [self._encode(o) for o in items]
        return self._head + b",".join(pieces) + b'],"count":' + str(len(pieces)).encode() + b"}}"

    def encoded(self, obj: Any) -> bytes:
        """One object's encoded view, as the list bodies hold it (encoded once per resourceVersion)."""
        return self._encode(obj)

    def _encode(self, obj: Any) -> bytes:
        key = self._key(obj)
        version = obj.metadata.resource_version
        piece = self._pieces.get(key)
        if piece is None or piece[0] != version:
            # A copy of orjson's answer: its bytes keep the 8 KiB it wrote into, whatever their length
            # (10,000 VMs: 80 MiB held for 6 MiB of JSON).
            piece = self._pieces[key] = (version, bytes(memoryview(dumps(self.view(obj)))))
        return piece[1]

    @staticmethod
    def _key(obj: Any) -> str:
        return str(obj.metadata.uid or f"{obj.metadata.namespace}/{obj.name}")


def _respond(body: bytes, gzipped: bool) -> Response:
    response = Response(body, content_type="application/json")
    response.headers["Vary"] = "Accept-Encoding"
    if gzipped:
        response.headers["Content-Encoding"] = "gzip"
    return response


def _order_key(obj: Any) -> tuple[str, str]:
    return (obj.metadata.namespace or "", obj.name)


class BadContinue(ValueError):
    """A continue token this gateway did not make."""


def encode_continue(obj: Any) -> str:
    """The continue token after ``obj``: its namespace and name, opaque to clients."""
    namespace, name = _order_key(obj)
    return base64.urlsafe_b64encode(f"{namespace}/{name}".encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[str, str]:
    """The (namespace, name) a continue token names; BadContinue when it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadContinue(token) from exc
    namespace, sep, name = text.partition("/")
    if not sep or not name:
        raise BadContinue(token)
    return namespace, name
