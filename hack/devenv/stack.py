"""The three components for ``make dev``: operator, one agent for this machine, gateway.

libvirtd is started too when none answers on this machine (a machine with
systemd runs it as a service; the development machines here do not).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import TracebackType

from vapor.logs import FORMAT_ENV

from .libvirtd import Libvirtd
from .processes import Component

log = logging.getLogger("vapor.devenv")


class Stack:
    """Starts the components in order and stops them in reverse."""

    def __init__(self, state_dir: Path, env: dict[str, str], *, bind: str, node_name: str) -> None:
        logs = state_dir / "logs"
        agent_dir = state_dir / "agent"
        self.libvirtd = Libvirtd()
        # One format for the three (vapor.logs): key=value for a terminal, unless VAPOR_LOG_FORMAT says otherwise.
        env = {**env, FORMAT_ENV: os.environ.get(FORMAT_ENV) or "logfmt"}
        self.components = {
            "operator": Component("vapor.operator", [], logs / "operator.log", env, echo="operator"),
            "agent": Component(
                "vapor.agent",
                ["--node-name", node_name, "--state-dir", str(agent_dir)],
                logs / "agent.log",
                env,
                echo="agent",
            ),
            # Host-scoped endpoints called without ?host= act on this machine, whatever else is applied.
            "gateway": Component(
                "vapor.gateway",
                ["--bind", bind],
                logs / "gateway.log",
                {**env, "VAPOR_DEFAULT_HOST": node_name},
                echo="gateway",
            ),
        }

    def __enter__(self) -> Stack:
        self.libvirtd.start()  # the machine's own, or one started now when none answers
        for component in self.components.values():
            component.start()
        return self

    def died(self) -> list[str]:
        """Components that exited on their own."""
        return [name for name, c in self.components.items() if c.proc is not None and not c.running()]

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for component in reversed(self.components.values()):
            component.stop()
        self.libvirtd.stop()  # only if it was started here
