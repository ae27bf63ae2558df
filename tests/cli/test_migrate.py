"""vaporctl migrate and follow: the Migration's progress, live until it ends, and Ctrl-C's question.

No operator or agent runs here (the gateway alone, as a process, against the
control plane): Hosts, the VM and the Migration's status are written by a
STAND-IN for the operator and the agents (kubectl patch of the status
subresource), step by step, as they would report a migration. Real migrations
between hosts are tested in tests/migration.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ..conftest import Kubectl
from ..gateway.conftest import GatewayProcess, Users, gateway_config, pam_service_name, secret_namespace, server, users
from ..support.wait import wait_until
from .conftest import BIN, Vaporctl, as_from_a_shell

__all__ = ["gateway_config", "pam_service_name", "secret_namespace", "server", "users"]  # the gateway alone
MIB = 1 << 20


class StandIn:
    """STAND-IN for the operator and the agents: writes Host, VM and Migration status as they would."""

    def __init__(self, kubectl: Kubectl, namespace: str) -> None:
        self.kubectl = kubectl
        self.namespace = namespace

    def status(self, kind: str, name: str, status: dict[str, Any], namespaced: bool = True) -> None:
        where = ["-n", self.namespace] if namespaced else []
        patch = json.dumps({"status": status})
        self.kubectl("patch", kind, name, *where, "--subresource=status", "--type=merge", "-p", patch)

    def migration(self) -> str:
        """The name of the namespace's one Migration, once it exists."""
        found: list[str] = []

        def made() -> bool:
            items = self.kubectl.get_json("vmig", "-n", self.namespace)["items"]
            found[:] = [m["metadata"]["name"] for m in items]
            return bool(found)

        wait_until(made, 30, what="the Migration")
        return found[0]

    def run(self, name: str, steps: list[dict[str, Any]], pause: float = 2.5) -> None:
        for step in steps:
            self.status("vmig", name, step)
            time.sleep(pause)


@pytest.fixture
def hosts(kubectl: Kubectl) -> Iterator[tuple[str, str]]:
    names = (f"src-{uuid.uuid4().hex[:8]}", f"dst-{uuid.uuid4().hex[:8]}")
    ready = [{"type": "Ready", "status": "True", "reason": "StandIn", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    for name in names:
        kubectl.apply({"apiVersion": "vapor.io/v1alpha1", "kind": "Host", "metadata": {"name": name}, "spec": {}})
        patch = json.dumps({"status": {"id": str(uuid.uuid4()), "conditions": ready}})
        kubectl("patch", "host", name, "--subresource=status", "--type=merge", "-p", patch)
    yield names
    kubectl("delete", "host", *names, "--wait=false", check=False)


@pytest.fixture
def world(kubectl: Kubectl, namespace: str, hosts: tuple[str, str]) -> StandIn:
    stand_in = StandIn(kubectl, namespace)
    kubectl.apply({"apiVersion": "vapor.io/v1alpha1", "kind": "VirtualMachine",
                   "metadata": {"name": "web", "namespace": namespace}, "spec": {"memory": "64Mi"}})  # fmt: skip
    stand_in.status("vvm", "web", {"phase": "Running", "host": hosts[0]})
    return stand_in


def running(percent: int, remaining: int) -> dict[str, Any]:
    return {"phase": "Running", "progress": {"percent": percent, "dataTotalBytes": 1024 * MIB,
                                             "dataRemainingBytes": remaining}}  # fmt: skip


@pytest.fixture
def ctl(vaporctl: Vaporctl, server: GatewayProcess, users: Users) -> Vaporctl:
    vaporctl.login(users.admin, server.url)
    return vaporctl


def test_migrate_shows_the_progress_until_it_succeeds(
    ctl: Vaporctl, world: StandIn, hosts: tuple[str, str], namespace: str
) -> None:
    src, dst = hosts
    wait_until(lambda: ctl("get", "vm", f"{namespace}/web").returncode == 0, 20, what="VM cached")
    steps = [
        {"phase": "Scheduling", "sourceHost": src, "targetHost": dst},
        running(30, 700 * MIB),
        running(70, 300 * MIB),
        {"phase": "Succeeded", "progress": {"percent": 100, "dataRemainingBytes": 0}, "downtimeMs": 42},
    ]
    feeder = threading.Thread(target=lambda: world.run(world.migration(), steps))
    feeder.start()
    done = ctl("migrate", "web", "-n", namespace, "--to", dst)
    feeder.join()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    name = world.migration()
    assert lines[0] == f"Migration {namespace}/{name} of web started."
    shown = [line.removeprefix(f"{namespace}/{name} ") for line in lines[1:-1]]
    assert shown[0] in ("Pending 0%", "Scheduling 0%"), "what it was when first asked"
    assert "Running 30% 700Mi remaining" in shown and "Running 70% 300Mi remaining" in shown
    assert shown.index("Running 30% 700Mi remaining") < shown.index("Running 70% 300Mi remaining")
    assert shown[-1] == "Succeeded 100% 0 remaining"
    assert lines[-1] == f"Migration {namespace}/{name} succeeded: web runs on {dst}, downtime 42 ms."


def test_a_failed_migration_exits_non_zero_with_its_reason_and_a_terminal_gets_a_bar(
    ctl: Vaporctl, world: StandIn, hosts: tuple[str, str], namespace: str
) -> None:
    dst = hosts[1]
    wait_until(lambda: ctl("get", "vm", f"{namespace}/web").returncode == 0, 20, what="VM cached")
    steps = [running(40, 600 * MIB), {"phase": "Failed", "failureReason": "the destination refused the memory"}]
    ctl.env["TTY_COMPATIBLE"] = "1"  # Rich draws as on a terminal
    feeder = threading.Thread(target=lambda: world.run(world.migration(), steps))
    feeder.start()
    done = ctl("migrate", f"{namespace}/web", "--to", dst)
    feeder.join()
    assert done.returncode == 1
    assert done.stderr.strip().endswith("failed: the destination refused the memory"), done.stderr
    assert "━" in done.stdout and "40%" in done.stdout and "600Mi remaining" in done.stdout, done.stdout

    # follow shows a migration that has ended, with the same exit code
    again = ctl("follow", world.migration(), "-n", namespace)
    assert again.returncode == 1 and "failed: the destination refused the memory" in again.stderr


def test_ctrl_c_asks_and_cancels_the_migration(
    ctl: Vaporctl, world: StandIn, hosts: tuple[str, str], namespace: str, kubectl: Kubectl
) -> None:
    dst = hosts[1]
    wait_until(lambda: ctl("get", "vm", f"{namespace}/web").returncode == 0, 20, what="VM cached")
    env = ctl.environment()
    proc = subprocess.Popen(
        [str(BIN / "vaporctl"), "migrate", f"{namespace}/web", "--to", dst],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=as_from_a_shell,
    )  # fmt: skip
    try:
        name = world.migration()
        world.status("vmig", name, running(20, 800 * MIB))
        time.sleep(2.5)  # it shows 20%
        proc.send_signal(signal.SIGINT)
        assert proc.stdin is not None
        proc.stdin.write("y\n")
        proc.stdin.flush()
        wait_until(lambda: kubectl.get_json("vmig", name, "-n", namespace)["spec"].get("cancel") is True, 20,
                   what="spec.cancel")  # fmt: skip
        world.status("vmig", name, {"phase": "Cancelled"})
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert f"Cancel migration {namespace}/{name}?" in out and "Cancel requested" in out, out
    assert err.strip() == f"error: migration {namespace}/{name} cancelled", err
