"""What the operator keeps in memory between handler calls (kopf's ``memo``).

Only caches and locks live here: everything that matters is in the resources,
so a restarted operator rebuilds this from its watches and changes nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from vapor.kube import Kube

from .placement import Request

VMKey = tuple[str, str]  # (namespace, name)


@dataclass
class Memo:
    """The operator's shared state, handed to every handler as ``memo``."""

    kube: Kube | None = None
    # Placements made by this process that the VM index may not show yet, so
    # that two VMs placed at once cannot both take a host's last free memory.
    reservations: dict[VMKey, tuple[str, Request]] = field(default_factory=dict)
    placement_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
