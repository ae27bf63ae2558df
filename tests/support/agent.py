"""The Vapor agent as a real process for tests: one node, a temporary state folder, logs kept.

``AgentProcess`` runs ``python -m vapor.agent`` with its own node name, state
folder and Lease namespace, so tests (and the integrator's end-to-end tests)
can run several agents side by side against one control plane and one
libvirtd. ``image_dirs`` are the folders whose images VM disks may name by
path (``--image-dir``; the agent's defaults otherwise). ``stop()`` sends SIGTERM like a DaemonSet would; ``kill()`` is a
crash. ``restart()`` keeps the state folder, so the host id survives. The
state folder must be reachable by QEMU's user: see ``qemu_reachable_dir()``.
"""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path

from vapor.devenv.processes import Component, free_port


def qemu_reachable_dir(prefix: str = "vapor-agent-test-") -> Path:
    """A fresh folder QEMU (running as its own user) can reach; pytest's tmp_path is root-only.

    Use it (or a folder inside it) as an agent's state folder; remove it when done.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    path.chmod(0o755)
    return path


class AgentProcess(Component):
    """One ``vapor-agent`` process for one node name."""

    def __init__(
        self,
        kubeconfig: str | Path,
        node_name: str,
        state_dir: Path,
        *,
        lease_namespace: str,
        libvirt_uri: str = "qemu:///system",
        scan_interval: float = 1.0,
        inventory_interval: float = 60.0,
        lease_renew_interval: float = 10.0,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        image_dirs: tuple[Path, ...] = (),
    ) -> None:
        self.node_name = node_name
        self.state_dir = Path(state_dir)
        args = [
            "--node-name", node_name,
            "--kubeconfig", str(kubeconfig),
            "--libvirt-uri", libvirt_uri,
            "--state-dir", str(self.state_dir),
            "--lease-namespace", lease_namespace,
            "--scan-interval", str(scan_interval),
            "--inventory-interval", str(inventory_interval),
            "--lease-renew-interval", str(lease_renew_interval),
            "--log-level", "DEBUG",
            *[arg for folder in image_dirs for arg in ("--image-dir", str(folder))],
            *extra_args,
        ]  # fmt: skip
        if "--api-bind" not in extra_args:
            # Its own port for the node-local API: the default (the node's address, port 9443) is one per
            # machine, and tests run several agents at once or back to back.
            args += ["--api-bind", f"127.0.0.1:{free_port()}"]
        super().__init__("vapor.agent", args, self.state_dir / "agent.log", env)

    @property
    def storage_dir(self) -> Path:
        """Where this agent creates disk images (the default under its state folder)."""
        return self.state_dir / "disks"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """SIGTERM (as a DaemonSet would), SIGKILL after ``timeout``; the exit code (None if it never ran)."""
        return super().stop(sig, timeout)

    def log(self) -> str:
        """Everything the agent logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
