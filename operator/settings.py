"""Operator configuration: kopf settings, intervals, and the API connection."""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from vapor.kube import Kube
from vapor.model import GROUP, names
from vapor.model.host import DEFAULT_CPU_ALLOCATION_RATIO

from ._state import Memo
from .ledger import Ledger

FIELD_MANAGER = names.FIELD_MANAGER_OPERATOR
# How often each Host's Ready condition is checked against its Lease (seconds).
HEALTH_INTERVAL = float(os.environ.get("VAPOR_HEALTH_INTERVAL", "5"))
# Where the agents' heartbeat Leases are (the chart's release namespace).
LEASE_NAMESPACE = os.environ.get("VAPOR_LEASE_NAMESPACE", names.LEASE_NAMESPACE)
# How often a VM that could not be placed is tried again (seconds).
RETRY_INTERVAL = float(os.environ.get("VAPOR_PLACEMENT_RETRY_INTERVAL", "5"))
# Migration limits (KubeVirt's defaults): active migrations in the cluster, and leaving one host.
PARALLEL_MIGRATIONS = int(os.environ.get("VAPOR_PARALLEL_MIGRATIONS", "5"))
PARALLEL_OUTBOUND_PER_HOST = int(os.environ.get("VAPOR_PARALLEL_OUTBOUND_PER_HOST", "2"))
# How often unfinished Migrations and draining Hosts are looked at again (seconds).
MIGRATION_INTERVAL = float(os.environ.get("VAPOR_MIGRATION_INTERVAL", "5"))
# How long a running Migration waits for its source host to come back once that host is NotReady (its agent's
# Lease expired; seconds): after it, the Migration fails with reason SourceHostLost (only the source agent
# could have ended it, and its finalizer would hold a deletion for good).
SOURCE_LOST_GRACE = float(os.environ.get("VAPOR_MIGRATION_SOURCE_LOST_GRACE", "60"))
# vCPUs a host gives out per logical CPU unless its spec.cpuAllocationRatio says otherwise.
CPU_ALLOCATION_RATIO = int(os.environ.get("VAPOR_CPU_ALLOCATION_RATIO") or DEFAULT_CPU_ALLOCATION_RATIO)
# With --peering: how long a replica's keep-alive holds (seconds; it renews it 5-10 s sooner, at least every 1 s).
# A replica that dies is taken over by the next one at most this long after its last keep-alive (kopf's default
# is 60 s; an operator that is away that long leaves placements and migrations waiting).
PEERING_LIFETIME = int(os.environ.get("VAPOR_PEERING_LIFETIME", "10"))
if not 1 <= CPU_ALLOCATION_RATIO <= 100:
    raise SystemExit(f"VAPOR_CPU_ALLOCATION_RATIO must be 1 to 100, not {CPU_ALLOCATION_RATIO}")

log = logging.getLogger("vapor.operator")


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    """Set kopf up for a long-lived operator and connect to the API server."""
    # Without these, kopf watches can hang silently when a connection drops
    # (kopf issues 585, 614, 955): the server closes each watch after
    # server_timeout, and the client gives up a little later.
    settings.watching.server_timeout = int(os.environ.get("VAPOR_WATCH_SERVER_TIMEOUT", "300"))
    settings.watching.client_timeout = settings.watching.server_timeout + 30
    settings.watching.connect_timeout = 30
    # kopf's own bookkeeping goes into annotations under our group, not into
    # status (our structural schemas would prune it).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    settings.peering.name = "vapor-operator"
    settings.peering.lifetime = PEERING_LIFETIME
    state: Memo = memo
    state.kube = await Kube.connect()
    state.ledger = Ledger(state.kube, CPU_ALLOCATION_RATIO)
    await state.ledger.start()
    from .placer import Placer  # it imports this module's settings

    state.placer = Placer(state.ledger)
    log.info(
        "operator connected; health every %.0fs, placement retry every %.0fs, CPU allocation ratio %d",
        HEALTH_INTERVAL,
        RETRY_INTERVAL,
        CPU_ALLOCATION_RATIO,
    )


@kopf.on.cleanup()
async def disconnect(memo: Any, **_: Any) -> None:
    """Close the API connection on shutdown."""
    state: Memo = memo
    if state.placer:
        await state.placer.stop()
    if state.ledger:
        await state.ledger.stop()
    if state.kube:
        await state.kube.close()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Log in with $KUBECONFIG when set (read now, not at import), else as the pod's service account."""
    if os.environ.get("KUBECONFIG"):
        return kopf.login_with_kubeconfig(**kwargs)
    return kopf.login_with_service_account(**kwargs)
