"""The console's write pages in Debian's chromium against the whole stack (marker browser): images, a host's
containers and accounts.

An admin uploads a local image file with a progress bar and sees it Ready on the
stack's host (with no "Upload…" left on it), creates an image from a loopback URL and watches the host fetch it
without a reload, deletes both; starts, stops and removes a container of the
module's dockerd; creates an account on the host, logs in with it and gives it a
new password. A viewer sees those controls disabled. Everything made is removed
after each test, even when it fails (images, containers, the account).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from ..agent.imagetools import make_qcow2, sha256_of
from ..support.dockerd import Dockerd
from ..support.imageserver import ImageServer
from ..support.stack import Stack
from .conftest import PHONE, WebConsole
from .test_console import confirm

READY = 60_000  # ms: the agent verifies the copy (qemu-img) and reports it; the page polls


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    """A qcow2 file with 4 MiB of data: a few seconds of upload at the throttled pace below."""
    return make_qcow2(tmp_path, "tiny.qcow2", data_mib=4)


def image_row(page: Page, name: str) -> Locator:
    return page.locator(f'tr[data-image="{name}"]')


def readable(alert: Locator, wanted: str | re.Pattern[str]) -> None:
    """An error shown as a person reads it: the API's message, never its JSON."""
    expect(alert).to_contain_text(wanted)
    assert "{" not in alert.inner_text(), alert.inner_text()


def test_an_admin_uploads_an_image_file_with_progress_sees_it_ready_and_deletes_it(
    web: WebConsole, stack: Stack, image_file: Path, cluster_objects: list[str], artifacts: Path
) -> None:
    name = f"vt-up-{uuid.uuid4().hex[:8]}"
    cluster_objects.append(f"images.vapor.io/{name}")  # deleted after the test, whatever happened
    page = web.login(stack.admin)
    page.get_by_role("link", name="Images").click()
    page.evaluate("window.__sameDocument = true")
    page.get_by_role("button", name="Add image…").click()
    dialog = page.get_by_role("dialog", name="Add an image")
    dialog.get_by_label("Upload a file from this computer").check()
    dialog.get_by_label(re.compile(r"^Host")).select_option(stack.node)
    dialog.get_by_label("Image file").set_input_files(image_file)
    expect(dialog.get_by_label("Format")).to_have_value("qcow2")  # from the file's name
    dialog.get_by_label("Name").fill(name)
    # 1 MB/s up: the 4 MiB take about four seconds, so the bar is seen on its way
    cdp = web.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 1_000_000},
    )
    dialog.get_by_role("button", name="Create and upload").click()
    bar = dialog.get_by_role("progressbar")
    expect(bar).to_have_attribute("aria-valuenow", re.compile(r"^[1-9][0-9]?$"))  # 1 to 99: moving
    expect(bar).to_contain_text(re.compile(r"MiB of 4\.\d+ MiB"))
    page.screenshot(path=artifacts / "image-upload.png")
    # cancelled half-way: the Image stays, waiting for its file, and "Upload…" sends it again
    dialog.get_by_role("button", name="Cancel upload").click()
    expect(dialog).to_be_hidden()
    row = image_row(page, name)
    expect(row.locator(".badge").first).to_have_text("Pending")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    row.get_by_role("button", name=f"Upload {name}").click()
    dialog = page.get_by_role("dialog", name=f"Upload the file of {name}")
    dialog.get_by_label(re.compile(r"^Host")).select_option(stack.node)
    dialog.get_by_label("Image file").set_input_files(image_file)
    dialog.get_by_role("button", name="Upload", exact=True).click()
    expect(dialog).to_be_hidden(timeout=READY)  # the agent verified it: the PUT answered 201

    expect(row.locator(".badge").first).to_have_text("Ready", timeout=READY)
    expect(row.locator(".host-copy", has_text=stack.node).locator(".badge")).to_have_text("Ready")
    expect(row).to_contain_text("uploaded")
    # Ready: nothing left to send, so no "Upload…" on it (Delete… stays)
    expect(row.get_by_role("button", name=f"Upload {name}")).to_have_count(0)
    expect(row.get_by_role("button", name=f"Delete {name}")).to_be_enabled()
    page.screenshot(path=artifacts / "images.png")

    row.get_by_role("button", name=f"Delete {name}").click()
    confirm(page, "Delete")
    expect(row).to_have_count(0, timeout=READY)
    assert page.evaluate("window.__sameDocument") is True


def test_an_upload_the_host_refuses_is_a_readable_message_in_the_dialog(
    web: WebConsole, stack: Stack, tmp_path: Path, cluster_objects: list[str], artifacts: Path
) -> None:
    name = f"vt-bad-{uuid.uuid4().hex[:8]}"
    cluster_objects.append(f"images.vapor.io/{name}")
    fake = tmp_path / "fake.qcow2"  # named qcow2, but random bytes: qemu-img finds a raw file
    fake.write_bytes(os.urandom(256 << 10))
    page = web.login(stack.admin)
    page.get_by_role("link", name="Images").click()
    page.get_by_role("button", name="Add image…").click()
    dialog = page.get_by_role("dialog", name="Add an image")
    dialog.get_by_label("Upload a file from this computer").check()
    dialog.get_by_label(re.compile(r"^Host")).select_option(stack.node)
    dialog.get_by_label("Image file").set_input_files(fake)
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_role("button", name="Create and upload").click()
    readable(dialog.get_by_role("alert"), "qcow2")  # the agent's 422, through the gateway, in words
    page.screenshot(path=artifacts / "image-upload-refused.png")
    expect(dialog.get_by_role("button", name="Upload again")).to_be_enabled()  # the Image is made once
    page.keyboard.press("Escape")
    expect(image_row(page, name)).to_be_visible(timeout=READY)


def add_url_image(page: Page, name: str, url: str, checksum: str, labels: str) -> Locator:
    """Fill in and send the dialog for an image from ``url``; the dialog."""
    page.get_by_role("button", name="Add image…").click()
    dialog = page.get_by_role("dialog", name="Add an image")
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("URL", exact=True).fill(url)
    dialog.get_by_label("Checksum").fill(checksum)
    dialog.get_by_label("Fetch to hosts with labels").fill(labels)
    dialog.get_by_role("button", name="Create").click()
    return dialog


def test_an_admin_creates_an_image_from_a_url_and_sees_the_host_fetch_it_live(
    web: WebConsole, stack: Stack, image_file: Path, cluster_objects: list[str], artifacts: Path
) -> None:
    name = f"vt-url-{uuid.uuid4().hex[:8]}"
    cluster_objects.append(f"images.vapor.io/{name}")  # deleted after the test, whatever happened
    with ImageServer(image_file) as server:
        server.rate = 512 * 1024  # about eight seconds for the file: the fetch is seen moving
        page = web.login(stack.admin)
        page.get_by_role("link", name="Images").click()
        page.evaluate("window.__sameDocument = true")
        page.get_by_role("button", name="Add image…").click()
        dialog = page.get_by_role("dialog", name="Add an image")
        expect(dialog.get_by_label("Name")).to_be_focused()
        page.keyboard.type(name)
        dialog.get_by_label("URL", exact=True).fill(server.url)
        # checked in the page before anything is sent: an http image needs its checksum
        dialog.get_by_role("button", name="Create").click()
        readable(dialog.get_by_role("alert"), "Checksum is required")
        dialog.get_by_label("Checksum").fill(sha256_of(image_file))
        dialog.get_by_label("Fetch to hosts with labels").fill(f"e2e-run={stack.run}")
        page.screenshot(path=artifacts / "image-create.png")
        dialog.get_by_role("button", name="Create").click()
        expect(dialog).to_be_hidden()

        row = image_row(page, name)
        copy = row.locator(".host-copy", has_text=stack.node)
        expect(copy.get_by_role("progressbar")).to_be_visible(timeout=READY)  # Fetching, with its percent
        page.screenshot(path=artifacts / "image-fetching.png")
        expect(copy.locator(".badge")).to_have_text("Ready", timeout=READY)
        assert page.evaluate("window.__sameDocument") is True
        assert any(r.status in (200, 206) for r in server.requests)

        # a file whose sha256 is not the one given: the host's copy fails, and the page says why
        bad = f"{name}-bad"
        cluster_objects.append(f"images.vapor.io/{bad}")
        add_url_image(page, bad, server.url, "0" * 64, f"e2e-run={stack.run}")
        failed = image_row(page, bad).locator(".host-copy", has_text=stack.node)
        expect(failed.locator(".badge")).to_have_text("Failed", timeout=READY)
        readable(failed.locator(".bad-text"), "ChecksumMismatch")
        page.screenshot(path=artifacts / "image-failed.png")

    # the API's refusal of a taken name, as a readable message in the dialog
    dialog = add_url_image(page, name, "http://127.0.0.1:9/other.qcow2", "0" * 64, "")
    readable(dialog.get_by_role("alert"), "already exists")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    page.screenshot(path=artifacts / "image-failed-phone.png", full_page=True)
    page.get_by_role("button", name=f"Delete {bad}").click()
    confirm(page, "Delete")

    expect(row).to_be_visible()
    page.screenshot(path=artifacts / "images-phone.png", full_page=True)
    row.get_by_role("button", name=f"Delete {name}").click()
    confirm(page, "Delete")
    expect(row).to_have_count(0, timeout=READY)


@pytest.fixture(scope="module")
def busybox(dockerd: Dockerd) -> str:
    """An image on the module's dockerd that runs until stopped."""
    return dockerd.import_image("vapor-test/busybox", "1", cmd=["/bin/sh", "-c", "exec sleep 600"])


@pytest.fixture
def container_name(dockerd: Dockerd) -> Iterator[str]:
    """A name for the test's container; whatever container has it is removed after the test, whatever happened."""
    name = f"vt-{uuid.uuid4().hex[:10]}"
    yield name
    with contextlib.closing(dockerd.client()) as client, contextlib.suppress(docker.errors.NotFound):
        client.api.remove_container(name, force=True)


@pytest.fixture
def container(dockerd: Dockerd, busybox: str, container_name: str) -> str:
    """A created (not started) container of the module's dockerd."""
    with contextlib.closing(dockerd.client()) as client:
        client.containers.create(busybox, name=container_name)
    return container_name


def host_page(page: Page, stack: Stack) -> None:
    page.get_by_role("link", name="Hosts").click()
    page.get_by_role("link", name=stack.node, exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(stack.node))).to_be_visible()


def test_an_admin_creates_starts_stops_and_removes_a_container(
    web: WebConsole, stack: Stack, dockerd: Dockerd, busybox: str, container_name: str, artifacts: Path
) -> None:
    container = container_name
    page = web.login(stack.admin)
    host_page(page, stack)
    section = page.get_by_role("region", name=re.compile("^Containers"))
    expect(section.get_by_role("heading")).to_have_text("Containers (docker)")

    # a pull the daemon cannot do: its own words, readable
    section.get_by_role("button", name="Pull image…").click()
    dialog = page.get_by_role("dialog", name="Pull an image")
    dialog.get_by_label("Image").fill("127.0.0.1:9/nothing/here")
    dialog.get_by_role("button", name="Pull").click()
    readable(dialog.get_by_role("alert"), re.compile("127.0.0.1:9"))
    page.keyboard.press("Escape")

    section.get_by_role("button", name="Create container…").click()
    dialog = page.get_by_role("dialog", name="Create a container")
    dialog.get_by_label("Image").fill("Busybox")
    dialog.get_by_role("button", name="Create").click()
    readable(dialog.get_by_role("alert"), "lower-case")  # checked before anything is sent
    dialog.get_by_label("Image").fill(busybox)
    dialog.get_by_label("Name", exact=True).fill(container)
    dialog.get_by_label("Environment").fill("MODE=ui\nWHO=browser")
    dialog.get_by_role("button", name="Create").click()
    expect(dialog).to_be_hidden()
    expect(section.get_by_role("status")).to_contain_text(f"Container {container} created")
    row = section.locator(f'tr[data-container="{container}"]')
    expect(row.locator(".badge")).to_have_text("CONTAINER_CREATED")
    with contextlib.closing(dockerd.client()) as client:
        assert "MODE=ui" in client.containers.get(container).attrs["Config"]["Env"]

    row.get_by_role("button", name=f"Start {container}").click()
    expect(row.locator(".badge")).to_have_text("CONTAINER_RUNNING")
    expect(section.get_by_role("status")).to_contain_text(container)
    with contextlib.closing(dockerd.client()) as client:
        assert client.containers.get(container).status == "running"
    expect(row.get_by_role("button", name=f"Remove {container}")).to_be_disabled()  # stop it first
    section.scroll_into_view_if_needed()
    page.screenshot(path=artifacts / "containers.png")

    row.get_by_role("button", name=f"Stop {container}").click()
    confirm(page, "Stop")
    expect(row.locator(".badge")).to_have_text("CONTAINER_EXITED", timeout=30_000)
    row.get_by_role("button", name=f"Remove {container}").click()
    confirm(page, "Remove")
    expect(row).to_have_count(0)
    with contextlib.closing(dockerd.client()) as client, pytest.raises(docker.errors.NotFound):
        client.containers.get(container)


@pytest.fixture
def account() -> Iterator[str]:
    """A name no account of the machine has; the account the test makes with it is removed after, even on failure."""
    name = f"vt{uuid.uuid4().hex[:8]}ui"
    assert subprocess.run(["id", name], capture_output=True).returncode != 0
    yield name
    subprocess.run(["userdel", "-r", "-f", name], capture_output=True, check=False)


def logs_in(stack: Stack, name: str, password: str) -> bool:
    r = httpx.post(f"{stack.url}/api/v1/auth/login", json={"username": name, "password": password}, timeout=30)
    assert r.status_code in (200, 401), r.text
    return r.status_code == 200


def test_an_admin_creates_an_account_and_gives_it_a_new_password(
    web: WebConsole, stack: Stack, account: str, artifacts: Path
) -> None:
    page = web.login(stack.admin)
    host_page(page, stack)
    users = page.get_by_role("region", name="Users")
    users.get_by_role("button", name="Create account…").click()
    dialog = page.get_by_role("dialog", name="Create an account")
    dialog.get_by_label("User name").fill(account)
    dialog.get_by_label("Password", exact=True).fill("first pass 1")
    dialog.get_by_label("Password again").fill("first pass 2")
    dialog.get_by_role("button", name="Create").click()
    readable(dialog.get_by_role("alert"), "The two passwords differ")  # checked before anything is sent
    dialog.get_by_label("Password again").fill("first pass 1")
    dialog.get_by_label("Groups").fill(f"{account}-nogroup")
    dialog.get_by_role("button", name="Create").click()
    readable(dialog.get_by_role("alert"), f"{account}-nogroup")  # the host's answer: no such group
    dialog.get_by_label("Groups").fill("")
    page.screenshot(path=artifacts / "user-create.png")
    dialog.get_by_role("button", name="Create").click()
    expect(dialog).to_be_hidden()
    expect(users.get_by_role("status")).to_contain_text(f"Account {account} created")
    row = users.locator(f'tr[data-user="{account}"]')
    expect(row).to_contain_text("/bin/bash")
    assert logs_in(stack, account, "first pass 1")

    row.get_by_role("button", name=f"New password for {account}").click()
    dialog = page.get_by_role("dialog", name=f"New password for {account}")
    dialog.get_by_label("New password").fill("short")
    dialog.get_by_label("Password again").fill("short")
    dialog.get_by_role("button", name="Set password").click()
    readable(dialog.get_by_role("alert"), "8 to 1024 characters")
    dialog.get_by_label("New password").fill("second pass")
    dialog.get_by_label("Password again").fill("second pass")
    dialog.get_by_role("button", name="Set password").click()
    expect(dialog).to_be_hidden()
    expect(users.get_by_role("status")).to_contain_text(f"New password set for {account}")
    assert logs_in(stack, account, "second pass")
    assert not logs_in(stack, account, "first pass 1")
    users.scroll_into_view_if_needed()
    page.screenshot(path=artifacts / "users.png")
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    expect(row).to_be_visible()
    page.screenshot(path=artifacts / "host-phone.png", full_page=True)


def test_a_viewer_sees_the_container_and_image_controls_disabled(web: WebConsole, stack: Stack, container: str) -> None:
    page = web.login(stack.viewer)
    host_page(page, stack)
    section = page.get_by_role("region", name=re.compile("^Containers"))
    row = section.locator(f'tr[data-container="{container}"]')
    expect(row.get_by_role("button", name=f"Start {container}")).to_be_disabled()
    expect(row.get_by_role("button", name=f"Remove {container}")).to_be_disabled()
    expect(page.get_by_role("button", name="Create account…")).to_be_disabled()
    expect(page.locator("[data-write]:enabled")).to_have_count(0)
    page.get_by_role("link", name="Images").click()
    expect(page.get_by_role("button", name="Add image…")).to_be_disabled()
