"""Vapor components run as real processes by the tests (see vapor.devenv.processes), and ending other daemons."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

from vapor.devenv.processes import Component as ComponentProcess

__all__ = ["ComponentProcess", "log_tail", "operator_process", "terminate"]

# The operator's loops at a test's pace: health and placement retried every second.
FAST_OPERATOR = {"VAPOR_HEALTH_INTERVAL": "1", "VAPOR_PLACEMENT_RETRY_INTERVAL": "1"}


def operator_process(
    kubeconfig: str | Path, log: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
) -> ComponentProcess:
    """A (not yet started) operator process on ``kubeconfig`` with fast loops, logging to ``log``."""
    return ComponentProcess(
        "vapor.operator", ["--kubeconfig", str(kubeconfig), *args], log, {**FAST_OPERATOR, **(env or {})}
    )


def terminate(proc: subprocess.Popen[Any] | None, timeout: float = 10.0) -> None:
    """End a daemon the test started, by its PID: SIGTERM, then SIGKILL when it still runs after ``timeout`` s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` of a daemon's log file ("" when there is none yet)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
