"""Password checks for logins: in the agent's own root, and in the node's root through a chrooted child.

An agent on the host checks a password in a thread of its own process; an
agent in a container (``--host-root``) hands it to a long-lived child that
chrooted into the node's root (vapor.agent.host.hostroot). This measures what
that costs: the median of ROUNDS accepted checks, each
way, for a user that exists in each root, with a pam_unix service without
the failure delay. Baseline: PAM called directly (vapor.hostaccounts), what
the gateway does when it runs where the users live. A refresh checks no
password but the account's standing (PAM's account stage and the shadow
lock), measured the same two ways. The node's root is the Debian rootfs of
the image tests (made with debootstrap when not cached).
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.image.base import rootfs_tarball
from vapor import hostaccounts
from vapor.agent.host.hostroot import HostRoot

ROUNDS = 30
SERVICE_RULES = "auth required pam_unix.so nodelay\naccount required pam_unix.so\n"


def _make_user(root: Path, name: str, password: str) -> None:
    prefix = [] if root == Path("/") else ["chroot", str(root)]
    subprocess.run([*prefix, "useradd", "-M", "-s", "/bin/sh", "--", name], check=True, capture_output=True)
    subprocess.run([*prefix, "chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True)


def _remove_user(root: Path, name: str) -> None:
    prefix = [] if root == Path("/") else ["chroot", str(root)]
    subprocess.run([*prefix, "userdel", "-f", "--", name], capture_output=True, check=False)


async def _median_ms(check: Callable[[], Awaitable[bool]]) -> float:
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        assert await check(), "the password was refused"
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def _run(node_root: Path, service: str, name: str, password: str) -> None:
    own, chrooted = HostRoot("/"), HostRoot(node_root)

    async def direct() -> bool:
        return hostaccounts.verify(service, name, password) is not None

    async def in_thread() -> bool:  # what POST /accounts/check runs: the password, then the groups
        return await own.call("verify", service, name, password) is not None

    async def in_node_root() -> bool:
        return await chrooted.call("verify", service, name, password) is not None

    async def refresh_in_thread() -> bool:  # what GET /accounts/{user} runs on a refresh: no password
        return (await own.call("standing", service, name))["refused"] is None

    async def refresh_in_node_root() -> bool:
        return (await chrooted.call("standing", service, name))["refused"] is None

    for label, check in (
        ("login, baseline: PAM called directly", direct),
        ("login, agent on the host (thread)", in_thread),
        ("login, agent in a container (chrooted child)", in_node_root),
        ("refresh, agent on the host (thread)", refresh_in_thread),
        ("refresh, agent in a container (chrooted child)", refresh_in_node_root),
    ):
        print(f"{label:48s} {await _median_ms(check):8.1f} ms per accepted check (median of {ROUNDS})")
    await chrooted.close()


def main() -> None:
    """Print the figures: logins, the baseline first, then refreshes (the account's standing, no password)."""
    node_root = Path(tempfile.mkdtemp(prefix="vapor-bench-root-"))
    service = f"vapor-bench-{uuid.uuid4().hex[:8]}"
    name, password = f"vb{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(12)
    made: list[Path] = []
    try:
        subprocess.run(["tar", "--numeric-owner", "-C", str(node_root), "-xf", str(rootfs_tarball())], check=True)
        for root in (Path("/"), node_root):
            (root / "etc/pam.d" / service).write_text(SERVICE_RULES)
            _make_user(root, name, password)
            made.append(root)
        asyncio.run(_run(node_root, service, name, password))
    finally:
        for root in made:
            _remove_user(root, name)
        Path("/etc/pam.d", service).unlink(missing_ok=True)
        shutil.rmtree(node_root, ignore_errors=True)


if __name__ == "__main__":
    main()
