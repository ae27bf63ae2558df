"""vaporctl on the real test guest: ssh finds its address and logs in; the serial console shows a login and a command.

ssh runs in the Testbed host's network namespace, where the guest's NAT
network is: a wrapper named ssh on vaporctl's PATH runs the real ssh there
with the test's key (vaporctl itself talks to the gateway on the machine's
loopback). The console test needs the gateway's /ws/vms/{id}/console and is
skipped, saying so, while the gateway does not serve it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vapor.gateway import create_app

from ..cli.conftest import Vaporctl, finish, read_until, spawn
from .conftest import HOSTNAME, Day2VM

pytestmark = [pytest.mark.day2, pytest.mark.guest, pytest.mark.timeout(1200)]
CONSOLE = "/ws/vms/<vm_id>/console" in {r.rule for r in create_app().url_map.iter_rules() if r.websocket}


@pytest.fixture
def ctl(day2_vm: Day2VM, tmp_path: Path) -> Vaporctl:
    home = tmp_path / "home"
    home.mkdir()
    ctl = Vaporctl(home)
    ctl.login(day2_vm.stack.admin, day2_vm.stack.url)
    return ctl


def test_vaporctl_ssh_logs_in_to_the_guest_at_its_reported_address(
    day2_vm: Day2VM, ctl: Vaporctl, tmp_path: Path
) -> None:
    day2_vm.ensure_running()
    wrapper = tmp_path / "bin" / "ssh"
    wrapper.parent.mkdir()
    options = "-o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    wrapper.write_text(
        f"#!/bin/sh\nexec ip netns exec {day2_vm.netns} {shutil.which('ssh')} -i {day2_vm.key.private} "
        f'{options} -o LogLevel=ERROR -o ConnectTimeout=20 "$@"\n'
    )
    wrapper.chmod(0o755)
    ctl.env["PATH"] = f"{wrapper.parent}:/usr/sbin:/usr/bin:/sbin:/bin"
    out = ctl.ok("ssh", f"{day2_vm.namespace}/{day2_vm.name}", "-l", "debian", "--", "hostname")
    assert out.strip() == HOSTNAME


@pytest.mark.skipif(not CONSOLE, reason="the gateway does not serve /ws/vms/{id}/console yet")
def test_vaporctl_console_shows_the_login_prompt_and_a_typed_commands_output(day2_vm: Day2VM, ctl: Vaporctl) -> None:
    day2_vm.ensure_running()
    proc = spawn(ctl, "console", f"{day2_vm.namespace}/{day2_vm.name}")
    try:
        assert proc.stdin is not None

        def send(text: str) -> None:
            assert proc.stdin is not None
            proc.stdin.write(text.encode())
            proc.stdin.flush()

        for _ in range(10):  # a fresh line makes getty print its prompt again
            send("\r")
            if read_until(proc, b"login:", 10) is not None:
                break
        else:
            raise AssertionError("no login prompt on the serial console")
        send("debian\r")
        assert read_until(proc, b"assword:", 30) is not None
        send(f"{day2_vm.password}\r")
        assert read_until(proc, b"$ ", 60) is not None
        send("echo vapor-$((6*7))\r")
        assert read_until(proc, b"vapor-42", 30) is not None
        send("exit\r")
        send("\x1d")
    finally:
        code, err = finish(proc)
    assert code == 0, err
    assert "Disconnected." in err
