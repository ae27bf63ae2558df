"""A gateway process with a real admin and viewer who log in through PAM, for tests that use it as people do.

``gateway_for_users()`` makes a Linux group of admins, an admin in it and a
viewer (unique names), a test-only PAM service, and starts ``vapor.gateway``
on a free port of 127.0.0.1 against the given kubeconfig; everything is
removed after the block. tests/support/stack.py puts it in front of one agent;
tests/browser/test_migrations.py in front of the two-host migration testbed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from vapor.devenv.processes import free_port

from .pam import LinuxUser, linux_accounts, pam_service
from .processes import ComponentProcess
from .wait import wait_until


@dataclass
class UserGateway:
    """The running gateway and who may log in to it."""

    url: str
    process: ComponentProcess
    admin: LinuxUser
    viewer: LinuxUser

    def client(self, user: LinuxUser) -> httpx.Client:
        return api_client(self.url, user)


def login(url: str, user: LinuxUser) -> dict[str, Any]:
    """The tokens of ``user``'s login at the gateway at ``url`` (POST /api/v1/auth/login)."""
    r = httpx.post(f"{url}/api/v1/auth/login", json={"username": user.name, "password": user.password})
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def api_client(url: str, user: LinuxUser) -> httpx.Client:
    """An HTTP client on the gateway's /api/v1 with ``user``'s bearer token."""
    token = login(url, user)["token"]
    return httpx.Client(base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60)


def gateway_answers(url: str) -> bool:
    """Whether a gateway serves at ``url`` (an unauthenticated read is 401)."""
    try:
        return httpx.get(f"{url}/api/v1/hosts", timeout=2).status_code == 401
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def gateway_for_users(kubeconfig: str | Path, log: Path) -> Iterator[UserGateway]:
    """The gateway on ``kubeconfig`` (logging to ``log``), serving once the block starts; stopped after."""
    with linux_accounts() as accounts, pam_service() as service:
        admins = accounts.group("admins")
        admin = accounts.user("adm", groups=(admins,))
        viewer = accounts.user("view")
        port = free_port()
        gateway = ComponentProcess(
            "vapor.gateway",
            ["--bind", f"127.0.0.1:{port}", "--kubeconfig", str(kubeconfig)],
            log,
            # The tests poll; the contract's rate limit is tested in tests/gateway.
            env={"VAPOR_PAM_SERVICE": service, "VAPOR_ADMIN_GROUPS": admins, "VAPOR_RATE_LIMIT": "0"},
        ).start()
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: gateway_answers(url), 60, what="gateway up")
            yield UserGateway(url, gateway, admin, viewer)
        finally:
            gateway.stop()
