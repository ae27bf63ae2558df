"""Every endpoint of the two contract documents is served: read from the documents themselves.

The documents write paths three ways (``/containers/{id}``, ``/api/v1/vms/:id/action``,
``WebSocket /ws/metrics``); each is reduced to a method and a path with its
parameters blanked, and compared with the gateway's routes (HTTP and WebSocket).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from vapor.gateway import create_app

# The team's contract documents live beside the checkout (../shared/contract), or where VAPOR_CONTRACT_DIR says.
CONTRACT = Path(os.environ.get("VAPOR_CONTRACT_DIR") or Path(__file__).resolve().parents[3] / "shared" / "contract")
ENDPOINT = re.compile(r"^(GET|POST|PUT|DELETE|PATCH|WebSocket) (/[A-Za-z0-9_/{}:.-]*?)(?=- |\s|$|Power)", re.M)
PARAMETER = re.compile(r"\{[^}/]+\}|<[^>/]+>|:[A-Za-z_]+")

# Contract endpoints the gateway does not serve yet; this list may only shrink.
NOT_BUILT_YET: set[str] = set()


def normalize(path: str) -> str:
    path = path.rstrip("/")
    if not path.startswith(("/api/", "/ws/")):
        path = "/api/v1" + path
    return PARAMETER.sub("{}", path)


def contract_endpoints() -> set[str]:
    if not CONTRACT.is_dir():
        pytest.skip(f"the contract documents are not at {CONTRACT} (set VAPOR_CONTRACT_DIR)")
    found: set[str] = set()
    for document in sorted(CONTRACT.glob("*.txt")):
        for method, path in ENDPOINT.findall(document.read_text()):
            found.add(f"{'WS' if method == 'WebSocket' else method} {normalize(path)}")
    return found


def served_endpoints() -> set[str]:
    served: set[str] = set()
    for rule in create_app().url_map.iter_rules():
        path = normalize(rule.rule)
        if rule.websocket:
            served.add(f"WS {path}")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            served.add(f"{method} {path}")
    return served


def test_the_documents_are_read() -> None:
    endpoints = contract_endpoints()
    # Spot checks from each document, so a parsing slip cannot make the next test pass vacuously.
    assert {"POST /api/v1/auth/login", "POST /api/v1/vms/{}/migrate", "GET /api/v1/kubernetes/pods"} <= endpoints
    assert "WS /ws/terminal" in endpoints
    assert len(endpoints) >= 35


def test_every_contract_endpoint_is_served() -> None:
    missing = contract_endpoints() - served_endpoints()
    newly_built = NOT_BUILT_YET - missing
    assert not newly_built, f"built now, remove from NOT_BUILT_YET: {sorted(newly_built)}"
    assert missing == NOT_BUILT_YET, f"not served: {sorted(missing - NOT_BUILT_YET)}"
