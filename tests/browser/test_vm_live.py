"""The VM table follows /ws/vms: a phase written by kubectl shows without a reload, and polling takes over
when the stream is gone (marker browser).

They share the folder's one stack and browser (tests/browser/conftest.py). The VMs select a host
label no host has, so the operator marks them Unschedulable once and then leaves their phase alone,
and no agent writes it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from ..conftest import Kubectl
from ..support.stack import Stack
from .conftest import WebConsole
from .test_console import vm_row


@pytest.fixture
def parked_vm(stack: Stack, vms_namespace: str) -> Iterator[str]:
    """A VM no host can take (Unschedulable, its phase left alone afterwards): its name in vms_namespace."""
    name = f"parked-{uuid.uuid4().hex[:6]}"
    with stack.client(stack.admin) as client:
        body = {"name": name, "namespace": vms_namespace, "memory": "32Mi", "host_selector": {"e2e-run": "nowhere"}}
        r = client.post("/vms", json=body)
        assert r.status_code == 201, r.text
    yield name


def _patch_phase(kubectl: Kubectl, namespace: str, name: str, phase: str) -> None:
    patch = json.dumps({"status": {"phase": phase}})
    kubectl("patch", "vvm", name, "-n", namespace, "--subresource=status", "--type=merge", "-p", patch)


def _vm_requests(page: Page) -> list[str]:
    """Every GET /api/v1/vms the page makes from now on."""
    seen: list[str] = []
    page.on("request", lambda r: "/api/v1/vms" in r.url and r.method == "GET" and seen.append(r.url))
    return seen


def test_a_phase_patched_by_kubectl_appears_without_a_reload(
    web: WebConsole, stack: Stack, kubectl: Kubectl, vms_namespace: str, parked_vm: str
) -> None:
    page = web.login(stack.viewer)
    page.get_by_role("link", name="VMs").click()
    row = vm_row(page, vms_namespace, parked_vm)
    expect(row.locator(".badge")).to_have_text("Unschedulable", timeout=30_000)
    expect(page.get_by_test_id("vm-updates")).to_have_text("Live")
    row.get_by_role("button").click()  # the VM's own pane follows too
    details = page.get_by_role("complementary", name=f"Virtual machine {parked_vm}")
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page
    polled = _vm_requests(page)

    for phase in ("Paused", "Migrating"):
        start = time.monotonic()
        _patch_phase(kubectl, vms_namespace, parked_vm, phase)
        expect(row.locator(".badge")).to_have_text(phase, timeout=10_000)
        print(f"{phase}: shown {time.monotonic() - start:.2f} s after kubectl patch started")
        expect(details.locator("h2 .badge")).to_have_text(phase)
    assert polled == [], f"the change came by polling, not by the stream: {polled}"
    assert page.evaluate("window.__sameDocument") is True


def test_the_table_polls_when_the_stream_is_gone(
    web: WebConsole, stack: Stack, kubectl: Kubectl, vms_namespace: str, parked_vm: str
) -> None:
    def refuse(ws: WebSocketRoute) -> None:
        ws.close(code=1011, reason="the test drops /ws/vms")

    web.context.route_web_socket("**/ws/vms", refuse)
    page = web.login(stack.viewer)
    page.get_by_role("link", name="VMs").click()
    row = vm_row(page, vms_namespace, parked_vm)
    expect(row.locator(".badge")).to_have_text("Unschedulable", timeout=30_000)
    expect(page.get_by_test_id("vm-updates")).to_have_text("Refreshed every few seconds")
    polled = _vm_requests(page)
    _patch_phase(kubectl, vms_namespace, parked_vm, "Paused")
    expect(row.locator(".badge")).to_have_text("Paused", timeout=10_000)
    assert polled, "the table changed without polling, yet the stream was refused"
