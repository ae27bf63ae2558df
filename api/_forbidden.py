"""Whose 403 it is: the user's, or an API server that is still starting.

The gateway acts as the user (``_impersonation``), so a 403 Forbidden from the
API server normally means Kubernetes RBAC refused that user: 403
PERMISSION_DENIED. But a kube-apiserver that has just (re)started answers
requests before its RBAC authorizer's caches are filled, and until then it
refuses every request that only an RBAC binding allows, for users who are
allowed too (for a fraction of a second after each restart; the chaos suite
saw it). Its ``/readyz`` fails until those caches are filled. So a 403 counts
as the user's only while ``/readyz``, asked with the gateway's own identity,
answers 200; otherwise the gateway answers 503 KUBERNETES_NOT_INSTALLED, which
a client retries, as while the API server is down (``_errors.refusal``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import current_app

from vapor.kube import KubeError

if TYPE_CHECKING:  # _state imports, through _json, _errors, which uses this module
    from ._state import Gateway

FORBIDDEN = 403
NOT_AUTHORIZING = "the Kubernetes API server is starting and cannot authorize requests yet; try again in a moment"


async def users_own(error: KubeError) -> bool:
    """Whether a refusal by the API server is its verdict on the request (False: a 403 while it is not ready)."""
    if error.status != FORBIDDEN:
        return True
    state: Gateway = current_app.extensions["vapor"]
    return await state.kube.ready()
