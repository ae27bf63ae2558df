"""crds/ is generated from the model and must match it."""

from __future__ import annotations

from pathlib import Path

import yaml

from vapor import crdgen
from vapor.model import KINDS


def test_crds_folder_is_up_to_date() -> None:
    """Fails when the model changed without `make generate`."""
    assert crdgen.main(["--check"]) == 0


def test_crds_folder_holds_exactly_the_generated_files() -> None:
    files = sorted(p.name for p in crdgen.DEFAULT_DIR.glob("*.yaml"))
    assert files == sorted(crdgen.filename(k) for k in KINDS)


def test_generator_writes_valid_yaml_with_the_kind_names(tmp_path: Path) -> None:
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    for kind in KINDS:
        doc = yaml.safe_load((tmp_path / crdgen.filename(kind)).read_text())
        assert doc["spec"]["names"]["kind"] == kind.__name__
        assert doc["spec"]["scope"] == kind.crd.scope
        schema = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert "$ref" not in yaml.safe_dump(schema) and "title" not in schema


def test_optional_fields_are_not_required_and_required_fields_are() -> None:
    vm = crdgen.openapi_schema(KINDS[1])
    assert vm["required"] == ["spec"]
    assert vm["properties"]["spec"]["required"] == ["memory"]
    mount_spec = crdgen.openapi_schema(KINDS[3])["properties"]["spec"]
    assert sorted(mount_spec["required"]) == ["device", "filesystem", "host", "mountPoint"]
