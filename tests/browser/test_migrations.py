"""Migrations in the web console, on the two-host migration testbed (markers browser and migration).

tests/migration's testbed (two libvirt hosts in network namespaces, an agent
on each, the operator; ``make_cluster``) with a gateway and real PAM users in
front of it (tests/support/gatewayproc.py). An admin picks the destination in
the VM's Migrate dialog, reading each host's pre-flight checks (the operator's
own, from GET /vms/{id}/migration-targets; they follow the storage choice), sees a
refusal as a readable message, then watches the progress bar move live to
Succeeded with the downtime; on the Migrations page an admin cancels a
migration that cannot converge (a guest that keeps dirtying its memory,
1 MiB/s) after confirming, while a viewer's Cancel stays disabled, and one
that ended while its confirmation was open is refused in a readable banner.
Screenshots go to the artifacts folder (migrate-*.png, migrations-*.png).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from vapor.devenv import ControlPlane
from vapor.model.names import MIGRATING_ANNOTATION

from ..conftest import Kubectl
from ..migration.conftest import Cluster, make_cluster
from ..support.gatewayproc import UserGateway, gateway_for_users
from ..support.hosts import Testbed
from ..support.wait import wait_until
from .conftest import PHONE, WebConsole, require_build, web_console

pytestmark = [pytest.mark.browser, pytest.mark.migration]

MOVE = 120_000  # ms: a throttled copy of a 64 MiB guest, and the agents' reports

# Every state the progress bar shows, recorded in the page as it changes (the test's own polling could miss one).
RECORD_BAR = """() => {
  window.__bar = [];
  const note = () => {
    const bar = document.querySelector('dialog[open] [role=progressbar]');
    if (!bar) return;
    const state = [Number(bar.getAttribute('aria-valuenow')), bar.textContent];
    const last = window.__bar[window.__bar.length - 1];
    if (!last || last[0] !== state[0] || last[1] !== state[1]) window.__bar.push(state);
  };
  const all = { subtree: true, childList: true, attributes: true, characterData: true };
  new MutationObserver(note).observe(document.body, all);
}"""


@pytest.fixture(scope="module")
def testbed(control_plane: ControlPlane, kubectl: Kubectl) -> Iterator[Cluster]:
    require_build()
    with make_cluster(control_plane, kubectl, Testbed(2)) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def gateway(
    control_plane: ControlPlane, testbed: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UserGateway]:
    with gateway_for_users(control_plane.kubeconfig, tmp_path_factory.mktemp("gateway") / "gateway.log") as gw:
        yield gw


@pytest.fixture
def vms(testbed: Cluster, namespace: str) -> Iterator[str]:
    yield namespace
    testbed.clean(namespace)


@pytest.fixture
def web(browser: Browser, gateway: UserGateway) -> Iterator[WebConsole]:
    with web_console(browser, gateway.url) as c:
        yield c


def open_migrate_dialog(page: Page, namespace: str, vm: str):  # type: ignore[no-untyped-def]
    row = page.locator(f'tr[data-vm="{namespace}/{vm}"]')
    expect(row.locator(".badge")).to_have_text("Running", timeout=60_000)
    row.get_by_role("button", name=vm).click()
    page.get_by_role("complementary", name=f"Virtual machine {vm}").get_by_role("button", name="Migrate…").click()
    return page.get_by_role("dialog", name=f"Migrate {vm}")


def test_an_admin_picks_a_host_by_its_pre_flight_and_watches_the_progress_to_succeeded(
    web: WebConsole, gateway: UserGateway, testbed: Cluster, vms: str, kubectl: Kubectl, artifacts: Path
) -> None:
    dom = testbed.running_vm(vms, "hop", 0, **testbed.filled_vm_spec())
    testbed.wait_filled(dom)  # 48 MiB to copy: seconds at 8 MiB/s
    source, destination = testbed.nodes
    page = web.login(gateway.admin)
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page
    dialog = open_migrate_dialog(page, vms, "hop")

    # each candidate host with the operator's own pre-flight checks (through the gateway, in the operator's
    # words); the VM's own host cannot be picked
    here = dialog.locator(f'[data-host="{source}"]')
    expect(here).to_contain_text("cannot take it")
    expect(here).to_contain_text(f"Refused: the VM already runs on {source}: destination and source are the same host")
    expect(here.get_by_role("radio")).to_be_disabled()
    there = dialog.locator(f'[data-host="{destination}"]')
    expect(there).to_contain_text("can take it")
    for line in (
        re.compile(rf"DestinationCapacity: {destination} has \d+ CPU and \d+Mi free"),
        "CPUCompatible: both hosts have CPU model",
        "StorageCompatible: every disk is an existing image on shared storage",  # a read-only image both hosts see
    ):
        expect(there).to_contain_text(line)
    # the storage check follows the dialog's storage choice, as the operator would judge it
    dialog.get_by_label("Storage").select_option("all")
    expect(there).to_contain_text("StorageCompatible: 1 disk(s) copied to the destination (copyStorage all)")
    dialog.get_by_label("Storage").select_option("none")
    expect(there).to_contain_text("StorageCompatible: every disk is an existing image on shared storage")
    there.get_by_role("radio").check()
    dialog.get_by_label("Bandwidth limit (MiB/s)").fill("8")
    page.screenshot(path=artifacts / "migrate-picker.png")

    # the destination went into maintenance since the dialog opened: the refusal is a sentence, not JSON
    kubectl("patch", "hosts.vapor.io", destination, "--type=merge", "-p", '{"spec":{"maintenance":true}}')
    try:
        dialog.get_by_role("button", name="Migrate", exact=True).click()
        alert = dialog.get_by_role("alert")
        expect(alert).to_contain_text(f"destination host '{destination}' is in maintenance")
        assert "{" not in alert.inner_text()
    finally:
        kubectl("patch", "hosts.vapor.io", destination, "--type=merge", "-p", '{"spec":{"maintenance":false}}')

    page.evaluate(RECORD_BAR)
    dialog.get_by_role("button", name="Migrate", exact=True).click()
    bar = dialog.get_by_role("progressbar")
    # under way: part of the copy done, and the data still to copy
    expect(bar).to_have_text(re.compile(r"^[1-9]\d%, [\d.]+ MiB left$"), timeout=MOVE)
    page.screenshot(path=artifacts / "migrate-progress.png")
    expect(dialog.locator(".badge").first).to_have_text("Succeeded", timeout=MOVE)
    expect(bar).to_have_attribute("aria-valuenow", "100")
    expect(bar).to_have_text(re.compile(r"^100%, downtime \d+ ms$"))
    page.wait_for_timeout(500)  # the bar's fill slides to its width in 0.4 s
    page.screenshot(path=artifacts / "migrate-succeeded.png")

    # the bar moved in steps as the copy went on (the page recorded each state it showed), then ended full
    seen = page.evaluate("window.__bar")
    part_way = sorted({value for value, text in seen if 0 < value < 100 and "left" in text})
    assert len(part_way) >= 3, f"the bar did not move part-way: {seen}"
    assert seen[-1][0] == 100, seen
    assert testbed.running_on(dom) == [1]

    dialog.get_by_role("button", name="Close").click()
    row = page.locator(f'tr[data-vm="{vms}/hop"]')
    expect(row).to_contain_text(destination, timeout=30_000)  # the table follows, without a reload
    assert page.evaluate("window.__sameDocument") is True


def test_an_admin_cancels_a_running_migration_after_confirming_and_a_viewer_cannot(
    web: WebConsole, browser: Browser, gateway: UserGateway, testbed: Cluster, vms: str, artifacts: Path
) -> None:
    dom = testbed.running_vm(vms, "busy", 0, **testbed.dirty_vm_spec())
    testbed.wait_dirtying(dom)
    name = start_slow_migration(gateway, vms, testbed.nodes[1])

    with web_console(browser, gateway.url) as viewer:
        page = viewer.login(gateway.viewer)
        page.get_by_role("link", name="Migrations").click()
        row = page.locator(f'tr[data-migration="{vms}/{name}"]')
        expect(row.locator(".badge")).to_have_text("Running", timeout=60_000)
        expect(row.get_by_role("button", name="Cancel the migration of busy")).to_be_disabled()
        expect(page.locator("[data-write]:enabled")).to_have_count(0)
        page.set_viewport_size(PHONE)  # type: ignore[arg-type]
        expect(row.get_by_role("progressbar")).to_be_visible()
        page.screenshot(path=artifacts / "migrations-viewer-phone.png", full_page=True)

    page = web.login(gateway.admin)
    page.get_by_role("link", name="Migrations").click()
    row = page.locator(f'tr[data-migration="{vms}/{name}"]')
    expect(row.locator(".badge")).to_have_text("Running", timeout=60_000)
    expect(row.get_by_role("progressbar")).to_contain_text("left", timeout=60_000)
    page.screenshot(path=artifacts / "migrations-running.png")
    asked: list[str] = []  # the page keeps its pace: once a second while a migration runs, not after every answer
    page.on("request", lambda r: "/api/v1/migrations" in r.url and asked.append(r.url))
    page.wait_for_timeout(3000)
    assert 1 <= len(asked) <= 5, f"{len(asked)} requests for the migrations in 3 s"

    row.get_by_role("button", name="Cancel the migration of busy").click()
    confirm = page.get_by_role("dialog", name="Cancel the migration of busy?")
    expect(confirm).to_contain_text("stays on its source host")
    confirm.get_by_role("button", name="Cancel migration").click()
    expect(confirm).to_be_hidden()
    expect(row.locator(".badge")).to_have_text("Cancelled", timeout=60_000)
    expect(row.get_by_role("button")).to_have_count(0)  # nothing left to cancel
    expect(page.get_by_role("alert")).to_have_count(0)
    page.screenshot(path=artifacts / "migrations-cancelled.png")
    assert testbed.running_on(dom) == [0]
    assert testbed.domain(1, dom) is None

    # a migration that ends while its confirmation is open: the refusal is a sentence in a banner, not JSON
    wait_until(lambda: MIGRATING_ANNOTATION not in (testbed.vm(vms, "busy")["metadata"].get("annotations") or {}), 30)
    late = start_slow_migration(gateway, vms, testbed.nodes[1])
    row = page.locator(f'tr[data-migration="{vms}/{late}"]')
    expect(row.locator(".badge")).to_have_text("Running", timeout=60_000)
    row.get_by_role("button", name="Cancel the migration of busy").click()
    with gateway.client(gateway.admin) as api:
        assert api.post(f"/migrations/{late}/cancel", params={"namespace": vms}).status_code == 200
    assert testbed.end(vms, late)["phase"] == "Cancelled"
    expect(row.locator(".badge")).to_have_text("Cancelled")  # the gateway has seen it end (the page behind the dialog)
    page.get_by_role("dialog", name="Cancel the migration of busy?").get_by_role(
        "button", name="Cancel migration"
    ).click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(f"migration '{late}' has already finished (Cancelled); there is nothing to cancel")
    assert "{" not in alert.inner_text()
    page.screenshot(path=artifacts / "migrations-error.png")


def start_slow_migration(gateway: UserGateway, namespace: str, destination: str) -> str:
    """A migration of the VM busy at 1 MiB/s, which its memory-dirtying guest outruns: it goes on until cancelled."""
    body = {"destination_host_id": destination, "bandwidth_mib_per_second": 1, "completion_timeout_per_gib": 86_400}
    with gateway.client(gateway.admin) as api:
        r = api.post("/vms/busy/migrate", params={"namespace": namespace}, json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["name"])
