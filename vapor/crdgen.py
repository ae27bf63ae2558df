"""Write the CustomResourceDefinitions in ``crds/`` from the model in :mod:`vapor.model`.

The model is the one source of truth, the way controller-gen turns Go types
into CRDs: pydantic gives the JSON schema of each kind (descriptions, enums,
patterns, ranges, defaults, CEL rules placed with ``json_schema_extra``), and
this module rewrites it into the structural schema the API server wants:
references inlined, optional fields unwrapped, titles dropped.

Run ``python -m vapor.crdgen`` (or ``make generate``) after changing the model;
a test fails while ``crds/`` is out of date.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from .model import GROUP, KINDS, VERSION, Resource

HEADER = "# Generated from vapor/model by `python -m vapor.crdgen`; do not edit by hand.\n"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "crds"

# Keys of pydantic's JSON schema that a CRD schema keeps as they are.
_PASSTHROUGH = {
    "type",
    "description",
    "enum",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "default",
    "required",
    "anyOf",
}


def _prose(text: str) -> str:
    """Docstring text as kubectl explain shows it best: paragraphs on one line each."""
    paragraphs = [" ".join(p.split()) for p in text.strip().split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)


def _structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Rewrite one pydantic JSON schema node into a structural CRD schema node."""
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        overlay = {k: v for k, v in schema.items() if k != "$ref"}
        merged = {**target, **overlay}
        # The rules of the field's type and the rules placed on the field itself both hold.
        rules = target.get("x-kubernetes-validations", []) + overlay.get("x-kubernetes-validations", [])
        if rules:
            merged["x-kubernetes-validations"] = rules
        return _structural(merged, defs)
    if "anyOf" in schema and not schema.get("x-kubernetes-int-or-string"):
        # Optional[X] is anyOf [X, null]: the field is simply left out when unset.
        kinds = [s for s in schema["anyOf"] if s.get("type") != "null"]
        if len(kinds) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {schema}")
        overlay = {k: v for k, v in schema.items() if k != "anyOf"}
        return _structural({**kinds[0], **overlay}, defs)

    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "const":
            out["enum"] = [value]
        elif key == "default" and value is None:
            continue
        elif key == "properties" and not value:
            # A model without fields (an empty marker such as Image's source.upload): the API server
            # would store no empty properties, and a stored CRD that differs from its manifest makes
            # every later server-side apply conflict; an object that holds nothing says the same.
            out["maxProperties"] = 0
        elif key == "properties":
            out["properties"] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out["items"] = _structural(value, defs)
        elif key == "additionalProperties" and isinstance(value, dict):
            out["additionalProperties"] = _structural(value, defs)
        elif key == "description":
            out[key] = _prose(value)
        elif key.startswith("x-kubernetes-") or key in _PASSTHROUGH:
            out[key] = value
    if "const" in schema and "type" not in out:
        out["type"] = "string"
    if out.get("type") == "object" and not {"properties", "additionalProperties", "maxProperties"} & out.keys():
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def openapi_schema(kind: type[Resource]) -> dict[str, Any]:  # type: ignore[type-arg]
    """The openAPIV3Schema of one kind."""
    raw = kind.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema = _structural(raw, defs)
    props = schema["properties"]
    props["apiVersion"] = {
        "type": "string",
        "description": "Versioned schema of this object; for Vapor resources, " + f"{GROUP}/{VERSION}.",
    }
    props["kind"] = {"type": "string", "description": f"Kind of object: {kind.__name__}."}
    props["metadata"] = {"type": "object"}  # the API server allows nothing more here
    schema["required"] = [r for r in schema.get("required", []) if r not in {"kind", "apiVersion", "metadata"}]
    if not schema["required"]:
        del schema["required"]
    return schema


def crd(kind: type[Resource]) -> dict[str, Any]:  # type: ignore[type-arg]
    """The whole CustomResourceDefinition of one kind."""
    info = kind.crd
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.crd_name(), "labels": {"app.kubernetes.io/part-of": "vapor"}},
        "spec": {
            "group": GROUP,
            "scope": info.scope,
            "names": {
                "kind": kind.__name__,
                "listKind": f"{kind.__name__}List",
                "plural": info.plural,
                "singular": kind.__name__.lower(),
                "shortNames": list(info.short_names),
                "categories": list(info.categories),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema(kind)},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [c.to_api() for c in info.printer_columns],
                }
            ],
        },
    }


def render(kind: type[Resource]) -> str:  # type: ignore[type-arg]
    """The CRD of one kind as the YAML file in ``crds/``."""
    return HEADER + yaml.safe_dump(crd(kind), sort_keys=False, width=100, allow_unicode=True)


def filename(kind: type[Resource]) -> str:  # type: ignore[type-arg]
    """File name of a kind's CRD in ``crds/``, as controller-gen names them."""
    return f"{GROUP}_{kind.crd.plural}.yaml"


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) the CRD files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="folder to write (default: crds/)")
    parser.add_argument("--check", action="store_true", help="exit 1 if any file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for kind in KINDS:
        path = args.out / filename(kind)
        text = render(kind)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("out of date (run `make generate`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
