"""`make cluster-up` / `cluster-down`: the control plane as a user drives it from the shell."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from vapor.devenv import ControlPlane
from vapor.devenv.processes import free_port

REPO = Path(__file__).resolve().parent.parent


def devenv(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vapor.devenv", *args, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )


def test_cluster_up_down_up_keeps_data_and_stops_cleanly(tmp_path: Path, control_plane: ControlPlane) -> None:
    state = tmp_path / "cluster"
    cp = ControlPlane(state, bin_dir=control_plane.bin_dir)
    try:
        up = devenv(state, "up")
        assert up.returncode == 0, up.stderr
        assert up.stdout.strip() == f"export KUBECONFIG={state / 'kubeconfig'}"
        assert "CRDs established" in up.stderr

        # The processes outlive the command that started them, as with `make cluster-up`.
        pids = json.loads((state / "state.json").read_text())["pids"]
        assert set(pids) == {"etcd", "kube-apiserver"}
        cp.kubectl_run("create", "namespace", "survives")
        crds = cp.kubectl_run("get", "crd", "-o", "name").stdout.split()
        assert "customresourcedefinition.apiextensions.k8s.io/virtualmachines.vapor.io" in crds
        assert devenv(state, "status").returncode == 0

        assert devenv(state, "up").returncode == 0, "a second up reuses the running one"
        assert json.loads((state / "state.json").read_text())["pids"] == pids

        down = devenv(state, "down")
        assert down.returncode == 0, down.stderr
        for pid in pids.values():
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        status = devenv(state, "status")
        assert status.returncode == 1 and "not running" in status.stdout

        # Data and certificates stay for the next up.
        assert devenv(state, "up").returncode == 0
        assert "survives" in cp.kubectl_run("get", "namespace", "-o", "name").stdout
    finally:
        devenv(state, "destroy")
    assert not state.exists()


def test_cluster_env_prints_an_export_line_to_eval() -> None:
    out = subprocess.run(["make", "-s", "cluster-env"], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == f"export KUBECONFIG={REPO / '.vapor' / 'cluster' / 'kubeconfig'}"


def test_binary_named_by_environment_is_used_instead_of_building(tmp_path: Path, control_plane: ControlPlane) -> None:
    fake_home = tmp_path / "cache"  # an empty cache: anything not overridden would have to be built
    env = {
        **os.environ,
        "VAPOR_CACHE": str(fake_home),
        "KUBE_APISERVER": str(control_plane.bin_dir / "kube-apiserver"),
        "ETCD": str(control_plane.bin_dir / "etcd"),
        "KUBECTL": str(control_plane.bin_dir / "kubectl"),
    }
    out = subprocess.run(
        ["bash", "hack/kube-binaries.sh"], capture_output=True, text=True, env=env, cwd=REPO, timeout=60, check=True
    )
    chosen = Path(out.stdout.strip())
    for name in ("kube-apiserver", "etcd", "kubectl"):
        assert (chosen / name).resolve() == (control_plane.bin_dir / name).resolve()
    assert "building" not in out.stderr


def test_dev_runs_the_whole_system_until_interrupted(tmp_path: Path, control_plane: ControlPlane) -> None:
    """`make dev`: control plane, operator, agent and gateway come up; Ctrl-C (SIGINT) stops all of it."""
    import signal
    import uuid

    import httpx

    from .support.pam import linux_accounts, pam_service
    from .support.wait import wait_until

    port = free_port()
    node = f"dev-{uuid.uuid4().hex[:6]}"
    state = tmp_path / "state"
    with linux_accounts() as accounts, pam_service() as service:
        admins = accounts.group("admins")
        user = accounts.user("dev", groups=(admins,))
        env = {
            **os.environ,
            "VAPOR_PAM_SERVICE": service,
            "VAPOR_ADMIN_GROUPS": admins,
            "VAPOR_LOG_FORMAT": "json",  # for a log shipper: one JSON object a line, in all three
            "KUBE_APISERVER": str(control_plane.bin_dir / "kube-apiserver"),
            "ETCD": str(control_plane.bin_dir / "etcd"),
            "KUBECTL": str(control_plane.bin_dir / "kubectl"),
        }
        with (tmp_path / "dev.log").open("wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "vapor.devenv",
                    "dev",
                    "--state-dir",
                    str(state),
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--node-name",
                    node,
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}/api/v1"
        dev = ControlPlane(state, bin_dir=control_plane.bin_dir)
        try:
            wait_until(lambda: "Vapor is up" in (tmp_path / "dev.log").read_text(), 150, what="Vapor is up")
            # Said only once this machine's Host is Ready: a VM made now finds its host.
            host = json.loads(dev.kubectl_run("get", "hosts.vapor.io", node, "-o", "json").stdout)
            assert {"type": "Ready", "status": "True"}.items() <= _condition(host, "Ready").items()
            login = httpx.post(f"{url}/auth/login", json={"username": user.name, "password": user.password})
            assert login.status_code == 200, login.text
            auth = {"Authorization": f"Bearer {login.json()['data']['token']}"}
            hosts = httpx.get(f"{url}/hosts", headers=auth).json()["data"]["hosts"]
            assert [h["status"] for h in hosts if h["name"] == node] == ["connected"]

            # The examples bring a Host whose machine has no agent; a client that knows no ?host=
            # still gets this machine's answers.
            dev.kubectl_run("apply", "-f", str(REPO / "examples" / "host.yaml"))
            wait_until(lambda: len(httpx.get(f"{url}/hosts", headers=auth).json()["data"]["hosts"]) == 2, 30)
            system = httpx.get(f"{url}/system/summary", headers=auth, timeout=30)
            assert system.status_code == 200, system.text
            assert system.json()["data"]["hostname"] == socket.gethostname()
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(90)
    assert code == 0, (tmp_path / "dev.log").read_text()[-3000:]
    # One log format: every line of each component is one JSON object with the same first keys.
    for component in ("operator", "agent", "gateway"):
        lines = (state / "logs" / f"{component}.log").read_text().splitlines()
        assert lines, component
        for line in lines:
            entry = json.loads(line)
            assert list(entry)[:4] == ["ts", "level", "logger", "msg"], (component, line)
            assert entry["level"] in ("debug", "info", "warning", "error", "critical"), (component, line)
    assert _status(f"{url}/hosts") is None, "the gateway is gone"
    assert not ControlPlane(state).running()
    leftover = subprocess.run(["pgrep", "-f", node], capture_output=True, text=True).stdout.split()
    assert not leftover, "the agent is gone"


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c["type"] == kind), {})


def _status(url: str) -> int | None:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None
