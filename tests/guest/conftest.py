"""One Testbed host with a NAT network per module (tests/support/guesthost.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..support.guest import GuestImage
from ..support.guesthost import GuestHost, guest_testbed


@pytest.fixture(scope="module")
def guest_host(guest_image: GuestImage) -> Iterator[GuestHost]:
    with guest_testbed(guest_image) as found:
        yield found
