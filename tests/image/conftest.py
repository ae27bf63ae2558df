"""What the image tests share besides the build (tests/image/build.py: ``docker_client``, ``base_image``, ``image``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import docker
import pytest

from tests.support.http import http_get  # noqa: F401  (the image tests probe endpoints with it)

from .build import Built  # noqa: F401  (the image tests type their fixture with it)


@pytest.fixture
def readable_kubeconfig(control_plane: object, tmp_path: Path) -> Path:
    """The control plane's kubeconfig (certificates inline), readable by the image's non-root user."""
    source = Path(control_plane.kubeconfig)  # type: ignore[attr-defined]
    folder = tmp_path / "kube"
    folder.mkdir()
    folder.chmod(0o755)
    target = folder / "kubeconfig"
    shutil.copy(source, target)
    target.chmod(0o644)
    return target


def run_logs(container: docker.models.containers.Container) -> str:
    """Everything a container printed so far."""
    return str(container.logs(stdout=True, stderr=True).decode(errors="replace"))
