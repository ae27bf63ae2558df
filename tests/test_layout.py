"""The folders are named for components; the import names must not shadow the standard library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_operator_folder_never_shadows_pythons_operator_module() -> None:
    """`python -m ...` from the checkout puts operator/ first on sys.path; `import operator` must stay stdlib."""
    probe = "import operator, collections; assert operator.eq(1, 1); print(operator.__file__)"
    out = subprocess.run([sys.executable, "-S", "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert not out.stdout.strip().startswith(str(REPO)), out.stdout


def test_components_import_under_the_vapor_namespace() -> None:
    code = "import vapor.operator, vapor.agent, vapor.gateway, vapor.devenv, vapor.cli; print(vapor.operator.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(REPO / "operator" / "__init__.py")
