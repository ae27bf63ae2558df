"""Quart's in-process test app, with start-up and shut-down limits that hold on a loaded CI machine.

Quart gives an app 6 s to run its start-up (the gateway's first LISTs and
watches) and 6 s to shut down. On two cores shared with libvirt guests and a
control plane that was seen to time out, failing a test that had nothing to do
with time. The limits here are 60 s; a start that hangs still fails the test.
"""

from __future__ import annotations

from quart import Quart
from quart.testing.app import TestApp

LIMIT_SECONDS = 60


class PatientTestApp(TestApp):
    def __init__(self, app: Quart, startup_timeout: int = LIMIT_SECONDS, shutdown_timeout: int = LIMIT_SECONDS):
        super().__init__(app, startup_timeout=startup_timeout, shutdown_timeout=shutdown_timeout)


def install() -> None:
    """Make every ``app.test_app()`` of the suite a :class:`PatientTestApp`."""
    Quart.test_app_class = PatientTestApp
