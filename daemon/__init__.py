"""The Vapor agent: one process per node that keeps the node's Host and VirtualMachines true.

``python -m vapor.agent`` (``vapor-agent``) runs :class:`Agent` with the
settings of :class:`AgentConfig`. It reports the host's inventory into its
Host resource, heartbeats through a Lease, and runs the VirtualMachines the
operator placed on this node through libvirt.
"""

from ._agent import Agent
from ._config import AgentConfig, parse_args

__all__ = ["Agent", "AgentConfig", "parse_args"]
