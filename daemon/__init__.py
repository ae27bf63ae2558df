"""The Vapor agent: one process per node that keeps the node's Host and VirtualMachines true.

``python -m vapor.agent`` (``vapor-agent``) runs :class:`Agent` with the
settings of :class:`AgentConfig`. It reports the host's inventory into its
Host resource, heartbeats through a Lease, and runs the VirtualMachines the
operator placed on this node through libvirt.

The names below load on first use, so that a small helper of the agent (the
child that works inside the node's root, see ``host.hostroot``) starts without
the whole agent.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._agent import Agent
    from ._config import AgentConfig, parse_args

__all__ = ["Agent", "AgentConfig", "parse_args"]

_HOMES = {"Agent": "._agent", "AgentConfig": "._config", "parse_args": "._config"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name], __name__), name)
