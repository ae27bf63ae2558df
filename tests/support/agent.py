"""The Vapor agent as a real process for tests: one node, a temporary state folder, logs kept.

``AgentProcess`` runs ``python -m vapor.agent`` with its own node name, state
folder and Lease namespace, so tests (and the integrator's end-to-end tests)
can run several agents side by side against one control plane and one
libvirtd. ``stop()`` sends SIGTERM like a DaemonSet would; ``kill()`` is a
crash. ``restart()`` keeps the state folder, so the host id survives. The
state folder must be reachable by QEMU's user: see ``qemu_reachable_dir()``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType


def qemu_reachable_dir(prefix: str = "vapor-agent-test-") -> Path:
    """A fresh folder QEMU (running as its own user) can reach; pytest's tmp_path is root-only.

    Use it (or a folder inside it) as an agent's state folder; remove it when done.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    path.chmod(0o755)
    return path


class AgentProcess:
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
    ) -> None:
        self.node_name = node_name
        self.state_dir = Path(state_dir)
        self.log_path = self.state_dir / "agent.log"
        self.args = [
            "--node-name", node_name,
            "--kubeconfig", str(kubeconfig),
            "--libvirt-uri", libvirt_uri,
            "--state-dir", str(self.state_dir),
            "--lease-namespace", lease_namespace,
            "--scan-interval", str(scan_interval),
            "--inventory-interval", str(inventory_interval),
            "--lease-renew-interval", str(lease_renew_interval),
            "--log-level", "DEBUG",
            *extra_args,
        ]  # fmt: skip
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def storage_dir(self) -> Path:
        """Where this agent creates disk images (the default under its state folder)."""
        return self.state_dir / "disks"

    def start(self) -> AgentProcess:
        """Start the agent (again); its log is appended to ``log_path``."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vapor.agent", *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        return self

    def running(self) -> bool:
        """Whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code (None if it never ran)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """End the agent at once, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> AgentProcess:
        """Stop gracefully and start again with the same state folder."""
        self.stop()
        return self.start()

    def log(self) -> str:
        """Everything the agent logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> AgentProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
