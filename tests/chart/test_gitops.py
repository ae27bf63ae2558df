"""examples/gitops: the kustomization builds (chart through kustomize's helm support, plus the
machines) and the API server accepts all of it; the Argo CD Application points at what exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Kubectl

from .conftest import REPO, Helm

pytestmark = pytest.mark.chart

GITOPS = REPO / "examples" / "gitops"


def build(kubectl: Kubectl, helm: Helm, path: Path) -> str:
    return kubectl(
        "kustomize", "--enable-helm", f"--helm-command={helm.path}",
        "--load-restrictor", "LoadRestrictionsNone", str(path),
    ).stdout  # fmt: skip


def kinds_and_names(manifest: str) -> set[tuple[str, str, str]]:
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in docs}


def test_the_gitops_build_holds_the_chart_and_the_machines(helm: Helm, kubectl: Kubectl) -> None:
    objects = kinds_and_names(build(kubectl, helm, GITOPS))
    assert {
        ("Namespace", "", "vapor-system"),
        ("CustomResourceDefinition", "", "virtualmachines.vapor.io"),
        ("CustomResourceDefinition", "", "mounts.vapor.io"),
        ("Deployment", "vapor-system", "vapor-operator"),
        ("DaemonSet", "vapor-system", "vapor-agent"),
        ("Deployment", "vapor-system", "vapor-gateway"),
        ("Ingress", "vapor-system", "vapor-gateway"),
        ("VirtualMachine", "default", "web-1"),
        ("Mount", "", "node-1-data"),
    } <= objects
    # Nothing of the build leaks into the example folder (kustomize may pull charts there).
    assert sorted(p.name for p in GITOPS.iterdir()) == [
        "argocd-application.yaml",
        "kustomization.yaml",
        "machines",
        "namespace.yaml",
    ]


def test_the_api_server_accepts_the_gitops_build(helm: Helm, kubectl: Kubectl) -> None:
    manifest = build(kubectl, helm, GITOPS)
    applied = kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", input=manifest).stdout
    for line in (
        "virtualmachine.vapor.io/web-1 serverside-applied (server dry run)",
        "mount.vapor.io/node-1-data serverside-applied (server dry run)",
        "deployment.apps/vapor-gateway serverside-applied (server dry run)",
        "customresourcedefinition.apiextensions.k8s.io/virtualmachines.vapor.io serverside-applied (server dry run)",
    ):
        assert line in applied
    # A dry run leaves nothing behind.
    assert kubectl("get", "virtualmachine", "web-1", "-n", "default", check=False).returncode != 0


def test_the_argocd_application_points_at_the_chart_and_the_machines(helm: Helm, kubectl: Kubectl) -> None:
    app: dict[str, Any] = yaml.safe_load((GITOPS / "argocd-application.yaml").read_text())
    assert app["kind"] == "Application" and app["apiVersion"] == "argoproj.io/v1alpha1"
    chart, machines = app["spec"]["sources"]
    assert (REPO / chart["path"] / "Chart.yaml").is_file()
    # Its values pass the chart's schema and reach the objects.
    values = yaml.safe_dump(chart["helm"]["valuesObject"])
    rendered = helm("template", "vapor", str(REPO / chart["path"]), "-n", "vapor-system", "-f", "-", input=values)
    assert ("Ingress", "vapor-system", "vapor-gateway") in kinds_and_names(rendered.stdout)
    built = kinds_and_names(build(kubectl, helm, REPO / machines["path"]))
    assert built == {("VirtualMachine", "default", "web-1"), ("Mount", "", "node-1-data")}
