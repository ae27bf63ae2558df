"""One feed of VirtualMachine changes for every /ws/vms socket, fed by the gateway's VM watch cache.

The gateway already follows VirtualMachines with one watch (``Gateway.vms``);
the feed hooks on its changes, encodes each change once (the view of GET
/api/v1/vms, cached per resourceVersion by the list body) and hands the same
bytes to every subscriber. A subscriber is a bounded queue: one that falls
more than QUEUE_LIMIT changes behind (a slow client, or a watch that re-listed
a thousand VMs at once) drops what it holds and is sent a fresh ``sync``
instead, which is always correct since a sync is the whole list.

Consistency: :meth:`VmFeed.subscribe` registers the subscriber and takes the
sync from the cache in one step of the event loop (no await between), so every
change after the sync is in the queue and none before it.
"""

from __future__ import annotations

import asyncio
from collections import deque

from vapor.kube import Informer, WatchEvent
from vapor.model import VirtualMachine

from ._bodies import ListBody
from ._json import dumps
from ._views import vm_view

QUEUE_LIMIT = 2000  # changes a subscriber may lag behind before it gets a fresh sync instead
_ENVELOPE = b'{"status":"success",'


class Subscriber:
    """What one socket has yet to send: changes in order, or ``None`` for a fresh sync."""

    def __init__(self, namespace: str | None) -> None:
        self.namespace = namespace
        self._pending: deque[bytes] = deque()
        self._stale = False
        self._ready = asyncio.Event()

    def push(self, message: bytes) -> None:
        """Queue a change; past QUEUE_LIMIT forget them all and ask for a sync."""
        if self._stale:
            return
        if len(self._pending) >= QUEUE_LIMIT:
            self._pending.clear()
            self._stale = True
        else:
            self._pending.append(message)
        self._ready.set()

    async def next(self) -> bytes | None:
        """The next change to send, or None when the subscriber fell behind and needs a sync."""
        while not self._pending and not self._stale:
            self._ready.clear()
            await self._ready.wait()
        if self._stale:
            self._stale = False
            return None
        return self._pending.popleft()


class VmFeed:
    """Hands each change of the VM cache to every subscriber, encoded once."""

    def __init__(self, informer: Informer[VirtualMachine], bodies: ListBody) -> None:
        self.bodies = bodies
        self._subscribers: set[Subscriber] = set()
        informer.on_change(self._changed)

    @property
    def subscribers(self) -> int:
        """How many sockets follow the feed."""
        return len(self._subscribers)

    def subscribe(self, namespace: str | None) -> tuple[Subscriber, bytes]:
        """A new subscriber (of one namespace, or all) and the sync message it starts from."""
        subscriber = Subscriber(namespace)
        self._subscribers.add(subscriber)
        return subscriber, self.sync(namespace)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop feeding a subscriber."""
        self._subscribers.discard(subscriber)

    def sync(self, namespace: str | None) -> bytes:
        """``{type: 'sync', data: {vms, count}}``: the data of GET /api/v1/vms now (the cached body, re-tagged)."""
        body = self.bodies.get(namespace)
        assert body.startswith(_ENVELOPE), body[:40]
        return b'{"type":"sync",' + body[len(_ENVELOPE) :]

    def _changed(self, event: WatchEvent[VirtualMachine]) -> None:
        if not self._subscribers:
            return
        vm = event.object
        # a deleted VM's last view is not kept among the list body's pieces
        view = dumps(vm_view(vm)) if event.type == "DELETED" else self.bodies.encoded(vm)
        message = b'{"type":"vm","event":"' + event.type.encode() + b'","vm":' + view + b"}"
        namespace = vm.metadata.namespace
        for subscriber in self._subscribers:
            if subscriber.namespace is None or subscriber.namespace == namespace:
                subscriber.push(message)
