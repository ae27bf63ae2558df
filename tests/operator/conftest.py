"""The operator as a real process against the session's control plane."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from vapor.devenv import ControlPlane

from ..support.processes import ComponentProcess


@pytest.fixture(scope="module")
def operator(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComponentProcess]:
    log: Path = tmp_path_factory.mktemp("operator") / "operator.log"
    proc = ComponentProcess(
        "vapor.operator",
        ["--kubeconfig", str(control_plane.kubeconfig)],
        log,
        env={"VAPOR_HEALTH_INTERVAL": "1", "VAPOR_PLACEMENT_RETRY_INTERVAL": "1", "VAPOR_MIGRATION_INTERVAL": "1"},
    ).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> client.ApiClient:
    return config.new_client_from_config(str(control_plane.kubeconfig))
