"""The web console as a person uses it, in Debian's chromium against the whole stack (marker browser).

An admin logs in with the keyboard, finds this machine's host, watches its live
charts and a journal line arrive while following, creates a VM, starts it and
sees Running without a reload, stops it; a viewer sees every write control
disabled. Screenshots of each page are saved (the folder is printed).
"""

from __future__ import annotations

import contextlib
import re
import uuid
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from ..support.journald import Journald
from ..support.stack import Stack
from .conftest import PHONE, WebConsole

LIVE = 90_000  # ms: the operator places the VM and the agent defines and starts it (a diskless domain)


def vm_row(page: Page, namespace: str, name: str):  # type: ignore[no-untyped-def]
    return page.locator(f'tr[data-vm="{namespace}/{name}"]')


def confirm(page: Page, button: str) -> None:
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name=button, exact=True).click()
    expect(dialog).to_be_hidden()


def test_an_admin_sees_this_host_live_and_a_journal_line_arrive_while_following(
    web: WebConsole, stack: Stack, journal: Journald, artifacts: Path
) -> None:
    page = web.login(stack.admin)
    page.get_by_role("link", name="Hosts").click()
    row = page.locator("tr", has=page.get_by_role("link", name=stack.node, exact=True))
    expect(row.locator(".badge")).to_have_text("connected", timeout=60_000)
    page.screenshot(path=artifacts / "hosts.png")

    row.get_by_role("link", name=stack.node).click()
    expect(page.get_by_role("heading", name=re.compile(stack.node))).to_be_visible()
    # the charts' last values come over /ws/metrics, one a second
    expect(page.get_by_test_id("metric-CPU")).to_have_text(re.compile(r"^\d+\.\d%$"))
    expect(page.get_by_test_id("metric-Memory")).to_have_text(re.compile(r"^\d+\.\d%$"))
    expect(page.locator("table").first.get_by_role("cell", name="lo", exact=True)).to_be_visible()
    # the host's accounts (admins only): the test's own PAM users are among them
    expect(page.get_by_role("region", name="Users")).to_contain_text(stack.admin.name)
    # and they keep coming: the chart holds more samples as seconds pass, without a reload
    expect(page.locator('figure.chart[data-samples="5"]').first).to_be_visible()

    before, after = f"before {uuid.uuid4().hex[:6]}", f"arrived {uuid.uuid4().hex[:6]}"
    journal.send(before)
    page.get_by_label("Unit").fill(journal.identifier)
    page.get_by_role("button", name="Filter").click()
    log = page.get_by_role("list", name="Journal entries")
    expect(log).to_contain_text(before)  # a page from REST /logs
    page.get_by_label("Follow").check()
    expect(log).to_contain_text(before)  # the last lines, as the subscription starts
    journal.send(after)
    expect(log.locator("li").first).to_contain_text(after)  # newest first, without a reload
    page.screenshot(path=artifacts / "host.png", full_page=True)


def test_an_admin_creates_a_vm_starts_it_and_sees_running_without_a_reload(
    web: WebConsole, stack: Stack, vms_namespace: str, artifacts: Path
) -> None:
    page = web.login(stack.admin)
    page.get_by_role("link", name="VMs").click()
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page
    page.get_by_role("button", name="Create VM…").click()
    dialog = page.get_by_role("dialog", name="Create a virtual machine")
    dialog.get_by_label("Name", exact=True).fill("web")
    dialog.get_by_label("Namespace").fill(vms_namespace)
    dialog.get_by_label("Memory").fill("32Mi")
    dialog.get_by_label("Host labels").fill(f"e2e-run={stack.run}")
    page.screenshot(path=artifacts / "create-vm.png")
    dialog.get_by_role("button", name="Create").click()
    expect(dialog).to_be_hidden()

    row = vm_row(page, vms_namespace, "web")
    expect(row.locator(".badge")).to_have_text("Stopped", timeout=LIVE)
    details = page.get_by_role("complementary", name="Virtual machine web")
    details.get_by_role("button", name="Start", exact=True).click()
    confirm(page, "Start")
    expect(row.locator(".badge")).to_have_text("Running", timeout=LIVE)
    expect(row).to_contain_text(stack.node)
    page.screenshot(path=artifacts / "vms.png")

    details.get_by_role("button", name="Force stop").click()  # a diskless guest has no OS to shut down
    confirm(page, "Force stop")
    expect(row.locator(".badge")).to_have_text("Stopped", timeout=LIVE)
    assert page.evaluate("window.__sameDocument") is True

    details.get_by_role("button", name="Delete…").click()
    confirm(page, "Delete")
    expect(row).to_have_count(0, timeout=LIVE)


def test_tokens_stay_in_memory_and_logout_revokes_the_login(web: WebConsole, stack: Stack) -> None:
    page = web.login(stack.admin)
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert page.evaluate("document.cookie") == ""
    with page.expect_response(lambda r: r.url.endswith("/api/v1/auth/logout")) as logout:
        page.get_by_role("button", name="Log out").click()
    assert logout.value.status == 200
    expect(page.get_by_label("User name")).to_be_visible()
    refresh_token = logout.value.request.post_data_json["refresh_token"]
    again = httpx.post(f"{stack.url}/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    assert again.status_code == 401, again.text
    # a reload starts logged out: nothing of the login was kept in the browser
    page.reload()
    expect(page.get_by_label("User name")).to_be_visible()


def test_an_api_error_is_a_readable_message_in_a_dialog_run_by_keyboard(
    web: WebConsole, stack: Stack, vms_namespace: str
) -> None:
    page = web.login(stack.admin)
    page.get_by_role("button", name="Create VM…").focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Create a virtual machine")
    expect(dialog.get_by_label("Name", exact=True)).to_be_focused()
    page.keyboard.type("tiny")
    dialog.get_by_label("Namespace").fill(vms_namespace)
    dialog.get_by_label("Memory").fill("1Ki")  # under the 16Mi the gateway accepts
    dialog.get_by_role("button", name="Create").click()
    alert = dialog.get_by_role("alert")
    expect(alert).to_contain_text("memory")
    assert "{" not in alert.inner_text()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_a_viewer_sees_everything_with_no_enabled_write_control(
    web: WebConsole, stack: Stack, rest_vm: str, artifacts: Path
) -> None:
    page = web.login(stack.viewer)
    expect(page.get_by_role("note")).to_contain_text("viewer")
    row = vm_row(page, *rest_vm.split("/"))
    expect(row).to_be_visible(timeout=LIVE)
    row.get_by_role("button").click()
    writes = page.locator("[data-write]")
    expect(writes.first).to_be_visible()
    assert writes.count() >= 6  # Create, and the VM's Start ... Delete
    expect(page.locator("[data-write]:enabled")).to_have_count(0)
    page.screenshot(path=artifacts / "viewer-vms.png")
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    expect(row).to_be_visible()
    page.screenshot(path=artifacts / "viewer-vms-phone.png", full_page=True)
    page.get_by_role("link", name="Hosts").click()
    page.get_by_role("link", name=stack.node, exact=True).click()
    # a 403 is explained, not shown raw: the accounts are for admins
    users = page.get_by_role("region", name="Users").get_by_role("alert")
    expect(users).to_contain_text("Not allowed")
    assert "{" not in users.inner_text()
    for name in ("Hosts", "Migrations", "Images"):
        page.get_by_role("link", name=name, exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(name)
        expect(page.locator("[data-write]:enabled")).to_have_count(0)


def test_the_serial_console_shows_the_firmware_and_the_screen_draws(
    web: WebConsole, stack: Stack, vms_namespace: str, artifacts: Path
) -> None:
    with stack.client(stack.admin) as api:
        body = {"name": "serial", "namespace": vms_namespace, "cpu": 1, "memory": "32Mi", "run_strategy": "Running"}
        r = api.post("/vms", json={**body, "host_selector": {"e2e-run": stack.run}})
        assert r.status_code in (200, 201), r.text
    page = web.login(stack.admin)
    row = vm_row(page, vms_namespace, "serial")
    expect(row.locator(".badge")).to_have_text("Running", timeout=LIVE)
    row.get_by_role("button", name="serial").click()
    page.get_by_role("button", name="Serial console").click()
    terminal = page.get_by_role("dialog", name="Serial console of serial").locator(".xterm-rows")
    domain = stack.virt.lookupByName(f"{vms_namespace}_serial")
    for _ in range(15):  # the reset must come after the agent opened the console: again until it shows
        domain.reset(0)
        with contextlib.suppress(AssertionError):
            expect(terminal).to_contain_text("SeaBIOS", timeout=8_000)
            break
    expect(terminal).to_contain_text("SeaBIOS")
    page.screenshot(path=artifacts / "serial-console.png")
    page.get_by_role("dialog", name="Serial console of serial").get_by_role("button", name="Close").click()

    page.get_by_role("button", name="Screen").click()
    screen = page.get_by_role("dialog", name="Screen of serial")
    # noVNC says connect once the RFB handshake over our authenticated socket is done, then draws the display
    expect(screen.get_by_role("status")).to_have_text(re.compile("^Connected"))
    expect(screen.locator(".screen canvas")).to_be_visible()
    expect(screen.get_by_role("button", name="Send Ctrl+Alt+Del")).to_be_enabled()
    expect(screen.get_by_role("alert")).to_have_count(0)
    domain.reset(0)  # the firmware draws on the display too
    page.wait_for_timeout(3000)
    page.screenshot(path=artifacts / "screen.png")
