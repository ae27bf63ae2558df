"""Fixtures of the storage tests: loop devices that are always taken down again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .loops import LoopDevices


@pytest.fixture
def loops(tmp_path: Path) -> Iterator[LoopDevices]:
    """Loop devices over sparse files in the test's tmp dir; unmounted, detached and removed after."""
    devices = LoopDevices(tmp_path / "images")
    try:
        yield devices
    finally:
        devices.cleanup()
