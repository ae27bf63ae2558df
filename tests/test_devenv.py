"""`make cluster-up` / `cluster-down`: the control plane as a user drives it from the shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from vapor.devenv import ControlPlane

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
