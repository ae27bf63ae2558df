"""What the operator keeps in memory between handler calls (kopf's ``memo``).

Only caches and locks live here: everything that matters is in the resources,
so a restarted operator rebuilds this from its watches and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vapor.kube import Kube

from .ledger import Ledger

if TYPE_CHECKING:  # the placer imports the handlers' settings, which import this module
    from .placer import Placer


@dataclass
class Memo:
    """The operator's shared state, handed to every handler as ``memo``."""

    kube: Kube | None = None
    ledger: Ledger | None = None  # started with the operator: the one account of hosts, VMs and migrations
    placer: Placer | None = None  # places the VMs it is asked to, in batches

    @property
    def placement(self) -> Placer:
        """The placer (it exists once the operator has started)."""
        assert self.placer is not None, "the operator has not started"
        return self.placer

    @property
    def books(self) -> Ledger:
        """The ledger (it exists once the operator has started)."""
        assert self.ledger is not None, "the operator has not started"
        return self.ledger
