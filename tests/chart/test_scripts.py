"""The scripts around the chart: helm from hack/kube-binaries.sh, and hack/kind.sh's checks before it acts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO, Helm

pytestmark = pytest.mark.chart

SCRIPT = REPO / "hack" / "kube-binaries.sh"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120, cwd=REPO
    )


def test_kube_binaries_provides_the_pinned_helm(helm: Helm) -> None:
    folder = Path(run(str(SCRIPT), "helm").stdout.strip())
    version = subprocess.run([str(folder / "helm"), "version", "--template", "{{.Version}}"], capture_output=True)
    assert version.stdout.decode() == "v3.19.5"
    # helm knows the Kubernetes version of its libraries: the chart's kubeVersion
    # (>=1.27) passes without a cluster, where an unstamped build assumes v1.20.
    rendered = subprocess.run(
        [str(folder / "helm"), "template", "vapor", str(REPO / "charts" / "vapor")], capture_output=True, text=True
    )
    assert rendered.returncode == 0, rendered.stderr
    # The control plane's binaries (and the node's, once built) stay in their own folder, without helm.
    three = Path(run(str(SCRIPT)).stdout.strip())
    names = {p.name for p in three.iterdir()}
    assert {"etcd", "kube-apiserver", "kubectl"} <= names and "helm" not in names, names


def test_kube_binaries_takes_helm_from_the_environment(helm: Helm, tmp_path: Path) -> None:
    own = tmp_path / "my-helm"
    own.symlink_to(helm.path)
    folder = Path(run(str(SCRIPT), "helm", env={"HELM": str(own)}).stdout.strip())
    assert (folder / "helm").resolve() == helm.path.resolve()
    refused = run(str(SCRIPT), "helm", env={"HELM": str(tmp_path / "missing")})
    assert refused.returncode == 1 and "is not an executable file" in refused.stderr


def test_kind_script_stops_before_acting_when_a_tool_is_missing(tmp_path: Path) -> None:
    # A PATH with bash and coreutils but no kind (nor helm): nothing is created.
    result = run(str(REPO / "hack" / "kind.sh"), env={"PATH": "/usr/bin:/bin", "KIND_CLUSTER": "never-made"})
    assert result.returncode == 1
    assert "is needed on PATH" in result.stderr
    assert "creating kind cluster" not in result.stderr
