"""Placing VirtualMachines on hosts: the kopf side of :mod:`.placer` and :mod:`.placement`.

A VM without ``status.host`` is handed to the placer as soon as it is seen,
and again every few seconds while no host can take it (:mod:`.rechecks`). The
placer decides VMs in batches under the ledger's lock, counting what admitted
migrations bring to each host and what the batch has given, then writes
each placement: host, hostId, phase Scheduled and condition Scheduled, then
the host label that host's agent selects on; the chosen host then joins the
fetchHosts of the VM's Images; a clone goes to its source VM's host. A VM
that cannot be placed says why in its Scheduled condition (reason
Unschedulable, or ImageNotFound / ImageFailed, or CloneSourceNotFound /
CloneSourceNotPlaced) and in a Warning Event, once per distinct reason.
"""

from __future__ import annotations

from typing import Any

import kopf

from vapor.model import GROUP, VERSION

from ._state import Memo


def _unplaced(status: kopf.Status, meta: kopf.Meta, **_: Any) -> bool:
    return not status.get("host") and meta.get("deletionTimestamp") is None


@kopf.on.event(GROUP, VERSION, "virtualmachines", when=_unplaced)
async def vm_changed(type: str, namespace: str | None, name: str, memo: Memo, **_: Any) -> None:
    """Hand a VM to the placer the moment it is seen unplaced (it waits for the ledger's watch to bring it)."""
    if type != "DELETED":
        memo.placement.want([(namespace or "", name)])  # its key: no need to read the whole body into the model
