"""Replicas through kopf peering: the ClusterKopfPeering object the replicas share.

With ``vapor-operator --peering`` every replica writes a keep-alive (its id,
priority and lifetime) into ``status`` of the cluster-scoped ClusterKopfPeering
named :data:`PEERING_NAME`; only the replica with the highest priority acts,
the others stay paused and take over when it leaves (at once when it stops
cleanly, after its keep-alive lifetime, 10 s by default, when it dies). The CRD comes
with the chart; the object is made here, at startup, when it is missing: the
chart cannot create it in the same release as its CRD (the API does not know
the kind until the CRD is established), and without it kopf would stay paused.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from vapor.kube import Conflict, Kube
from vapor.kube._client import call

log = logging.getLogger("vapor.operator.peering")

PEERING_NAME = "vapor-operator"
GROUP, VERSION, PLURAL = "kopf.dev", "v1", "clusterkopfpeerings"


async def ensure_peering(kube: Kube, name: str = PEERING_NAME) -> bool:
    """Create the ClusterKopfPeering ``name`` unless it exists; whether it was created."""
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterKopfPeering", "metadata": {"name": name}}
    try:
        await call(kube.custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body))
    except Conflict:
        return False
    log.info("created ClusterKopfPeering %s", name)
    return True


@kopf.on.startup()
async def peering_object(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Make sure the shared peering object exists before kopf looks for it (peering mode only)."""
    if settings.peering.standalone:
        return
    kube = await Kube.connect()
    try:
        await ensure_peering(kube, settings.peering.name)
    finally:
        await kube.close()
