"""Vapor components run as real processes by the tests (see vapor.devenv.processes), and ending other daemons."""

from __future__ import annotations

import signal
import subprocess
from typing import Any

from vapor.devenv.processes import Component as ComponentProcess

__all__ = ["ComponentProcess", "terminate"]


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
