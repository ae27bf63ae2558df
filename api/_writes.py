"""How the gateway writes as the user who asked: the field manager, the audit Event, the wait for its own cache.

Every write is made as the user (``as_user``: impersonation, so Kubernetes
RBAC decides, see ``_impersonation``) and carries the user: the field manager ``vapor-gateway:<user>``
(so ``managedFields`` tells who set what), and an Event on the object
(reporting controller ``gateway``) saying who asked for what through the
REST API.
"""

from __future__ import annotations

from typing import Any

from vapor.kube import Kube
from vapor.model import Resource
from vapor.model.names import FIELD_MANAGER_GATEWAY_PREFIX

from ._guard import current_user
from ._state import gateway

CONTROLLER = "gateway"
# How long a create waits for the watch cache to show the new object, so that a GET right after finds it.
CACHE_CATCH_UP = 5.0


def as_user() -> Kube:
    """The connection that writes as the request's user (impersonation: Kubernetes RBAC decides)."""
    user = current_user()
    return gateway().users.as_user(user.username, user.role)


def field_manager(username: str) -> str:
    """The field manager of a user's writes."""
    return f"{FIELD_MANAGER_GATEWAY_PREFIX}:{username}"[:128]


async def record_event(obj: Resource[Any, Any], *, reason: str, note: str, action: str) -> None:
    """An Event on ``obj`` (reason: CamelCase word; note: a sentence naming the user) from the gateway."""
    await gateway().kube.events.record(obj, reason=reason, note=note, controller=CONTROLLER, action=action)
