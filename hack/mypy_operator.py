"""mypy (strict, the settings of pyproject.toml) over operator/ as the package it is installed as, vapor.operator.

Plain ``mypy operator`` cannot check it: run from the checkout, the folder
is taken for Python's own ``operator`` module (which the standard library
and typeshed import). So each file is handed to mypy under its import name,
from a directory where only ``vapor`` is visible. ``make lint`` runs this.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from mypy import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource

REPO = Path(__file__).resolve().parent.parent
FOLDER, PACKAGE = REPO / "operator", "vapor.operator"


def sources() -> list[BuildSource]:
    """Every module of the folder, named as it is imported."""
    found = []
    for path in sorted(FOLDER.rglob("*.py")):
        parts = list(path.relative_to(FOLDER).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.append(BuildSource(str(path), ".".join([PACKAGE, *parts])))
    return found


def main() -> int:
    """Check the package; print mypy's messages; exit 1 when there are errors."""
    _files, options = process_options(["--config-file", str(REPO / "pyproject.toml"), str(REPO / "vapor")])
    with tempfile.TemporaryDirectory() as stage:
        (Path(stage) / "vapor").symlink_to(REPO / "vapor")  # vapor is importable, the folder operator/ is not
        os.chdir(stage)
        try:
            result = build.build(sources(), options)
        except CompileError as exc:
            print("\n".join(exc.messages), file=sys.stderr)
            return 2
    for line in result.errors:
        print(line)
    checked = len(sources())
    print(f"{PACKAGE}: {'no issues' if not result.errors else 'errors'} in {checked} source files")
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
