"""vaporctl through its installed entry points against the whole stack (tests/support/stack.py) on a private libvirtd.

Every run of the tool is a subprocess of ``.venv/bin/vaporctl`` (or
``kubectl-vapor``) with HOME and XDG_CONFIG_HOME in the test's own folder, as
a user would run it; nothing calls its functions.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from ..conftest import Kubectl
from ..e2e.conftest import stack, vms_namespace
from ..support.pam import LinuxUser
from ..support.stack import Stack

__all__ = ["stack", "vms_namespace"]  # the end-to-end tests' whole stack on a private libvirtd, reused

BIN = Path(sys.executable).parent
GATEWAY_SERVICE_ACCOUNT = ("vapor-system", "vapor-gateway")  # whom the agents let in by default


@dataclass
class Vaporctl:
    """Runs the installed tool as one user of the machine would: its own HOME and config folder."""

    home: Path
    server: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config_dir(self) -> Path:
        return self.home / ".config" / "vapor"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.json"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VAPOR_")}
        env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / ".config"), COLUMNS="200", **self.env)
        if self.server is not None:
            env["VAPOR_SERVER"] = self.server
        return env

    def __call__(
        self, *args: str, input: str | None = None, program: str = "vaporctl", timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / program), *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.environment(),
            timeout=timeout,
        )

    def ok(self, *args: str, input: str | None = None, program: str = "vaporctl") -> str:
        done = self(*args, input=input, program=program)
        assert done.returncode == 0, f"vaporctl {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
        return done.stdout

    def login(self, user: LinuxUser, server: str) -> str:
        return self.ok("login", "--server", server, "--username", user.name, "--password-stdin", input=user.password)


def read_until(
    proc: subprocess.Popen[bytes], pattern: bytes, timeout: float, seen: bytearray | None = None
) -> bytes | None:
    """stdout of ``proc`` until ``pattern`` shows (added to ``seen``, kept across calls); None after ``timeout``."""
    assert proc.stdout is not None
    seen = bytearray() if seen is None else seen
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while pattern not in seen:
        left = deadline - time.monotonic()
        assert proc.poll() is None, f"vaporctl ended: {proc.stderr.read() if proc.stderr else ''!r}"
        if left <= 0:
            return None
        if selector.select(left):
            seen += os.read(proc.stdout.fileno(), 65536)
    return bytes(seen)


def as_from_a_shell() -> None:
    """Ctrl-C as a person's shell gives it: a test run started in the background (a script's `&`, CI)
    has SIGINT ignored, which its children inherit, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(ctl: Vaporctl, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "vaporctl"), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=ctl.environment(), preexec_fn=as_from_a_shell,
    )  # fmt: skip


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err.decode(errors="replace")


@pytest.fixture(scope="module")
def gateway_account(kubectl: Kubectl) -> None:
    """The ServiceAccount the stack's gateway reaches agents' node APIs as (image uploads); the chart makes it."""
    namespace, account = GATEWAY_SERVICE_ACCOUNT
    kubectl("create", "namespace", namespace, check=False)
    kubectl("create", "serviceaccount", account, "-n", namespace, check=False)


@pytest.fixture
def vaporctl(tmp_path: Path) -> Vaporctl:
    home = tmp_path / "home"
    home.mkdir()
    return Vaporctl(home)


@pytest.fixture(scope="module")
def admin_config(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The config file of one login as the stack's admin (the gateway allows 10 logins a minute per user)."""
    ctl = Vaporctl(tmp_path_factory.mktemp("admin-home"))
    ctl.login(stack.admin, stack.url)
    return ctl.config_file.read_text()


@pytest.fixture
def admin_ctl(vaporctl: Vaporctl, admin_config: str) -> Vaporctl:
    """vaporctl logged in as the stack's admin (a copy of the module's one login)."""
    vaporctl.config_dir.mkdir(mode=0o700, parents=True)
    vaporctl.config_file.write_text(admin_config)
    vaporctl.config_file.chmod(0o600)
    return vaporctl


_tokens: dict[tuple[str, str], str] = {}


def rest(stack: Stack, user: LinuxUser | None = None) -> httpx.Client:
    """A REST client of the stack as ``user`` (default the admin), logged in once per stack."""
    user = user or stack.admin
    key = (stack.url, user.name)
    if key not in _tokens:
        _tokens[key] = stack.login(user)["token"]
    return httpx.Client(base_url=f"{stack.url}/api/v1", headers={"Authorization": f"Bearer {_tokens[key]}"}, timeout=60)
