"""The web console in a real browser: Debian's chromium driven by Playwright, against the whole stack.

One stack (tests/support/stack.py on a private libvirtd, real PAM users, the
agent on a hermetic dockerd of the stack's: tests/support/dockerd.py) and
one browser for the whole folder (every module shares them); each test gets its own browser context (no
shared tokens). The agent reads a live journald of the stack's own
(tests/support/journald.py), so the journal viewer can be shown a line that
arrives while it follows. Screenshots go to $VAPOR_ARTIFACTS/browser (default
.artifacts/browser in the checkout); the folder is printed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from vapor.agent.host.journal import JOURNAL_PATH_ENV
from vapor.devenv import ControlPlane

from ..conftest import Kubectl
from ..support.dockerd import Dockerd
from ..support.journald import Journald
from ..support.pam import LinuxUser
from ..support.stack import Stack, private_stack, vm_namespace

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "api" / "static" / "index.html"
CHROMIUM = os.environ.get("VAPOR_CHROMIUM", "/usr/bin/chromium")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def artifacts() -> Path:
    folder = Path(os.environ.get("VAPOR_ARTIFACTS", REPO / ".artifacts")) / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser screenshots: {folder}")
    return folder


@pytest.fixture(scope="package")
def journal() -> Iterator[Journald]:
    """A live journald the stack's agent reads (the agent inherits $VAPOR_JOURNAL_PATH when it starts)."""
    with Journald() as journald, pytest.MonkeyPatch.context() as env:
        env.setenv(JOURNAL_PATH_ENV, str(journald.directory))
        yield journald


def require_build() -> None:
    """Fail, not skip, when the console is not built: `make test` builds it first."""
    if not BUILD.exists():
        pytest.fail(f"the web console is not built ({BUILD} is missing): run `make ui`")


@pytest.fixture(scope="package")
def dockerd() -> Iterator[Dockerd]:
    """The stack's own Docker engine, whose containers the host page shows and changes."""
    with Dockerd() as daemon:
        yield daemon


@pytest.fixture(scope="package")
def stack(control_plane: ControlPlane, kubectl: Kubectl, journal: Journald, dockerd: Dockerd) -> Iterator[Stack]:
    require_build()
    with private_stack(control_plane, kubectl, ("--docker-host", dockerd.base_url)) as s:
        yield s


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """The system chromium (never a browser Playwright downloads); --no-sandbox as the tests run as root."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"chromium is not installed at {CHROMIUM}: apt-get install chromium (hack/setup.sh does)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    yield browser
    browser.close()


class WebConsole:
    """A browser context on the console, and every request it made outside the gateway."""

    def __init__(self, browser: Browser, url: str) -> None:
        self.url = url
        self.context: BrowserContext = browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
        self.context.set_default_timeout(30_000)
        self.outside: list[str] = []
        gateway = urlsplit(url).netloc
        self.context.on("request", lambda r: urlsplit(r.url).netloc != gateway and self.outside.append(r.url))
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def login(self, user: LinuxUser) -> Page:
        """Log in as a person does with the keyboard: the name field has focus; Tab, then Enter."""
        page = self.page
        page.goto(self.url + "/")
        expect(page.get_by_label("User name")).to_be_focused()
        page.keyboard.type(user.name)
        page.keyboard.press("Tab")
        page.keyboard.type(user.password)
        page.keyboard.press("Enter")
        expect(page.get_by_role("button", name="Log out")).to_be_visible()
        return page

    def close(self) -> None:
        self.context.close()


@contextlib.contextmanager
def web_console(browser: Browser, url: str) -> Iterator[WebConsole]:
    """A fresh browser context on the console at ``url``; it made no request outside it and no page error."""
    c = WebConsole(browser, url)
    try:
        yield c
        assert c.outside == [], f"requests outside the gateway: {c.outside}"
        assert c.errors == [], f"errors in the page: {c.errors}"
    finally:
        c.close()


@pytest.fixture
def web(browser: Browser, stack: Stack) -> Iterator[WebConsole]:
    with web_console(browser, stack.url) as c:
        yield c


@pytest.fixture
def vms_namespace(stack: Stack, kubectl: Kubectl) -> Iterator[str]:
    with vm_namespace(stack, kubectl) as name:
        yield name


@pytest.fixture
def rest_vm(stack: Stack, kubectl: Kubectl, vms_namespace: str) -> str:
    """A VM made through the admin's REST token (the viewer's test needs one to look at): 'namespace/name'."""
    with stack.client(stack.admin) as client:
        body = {"name": "seen", "namespace": vms_namespace, "cpu": 1, "memory": "32Mi"}
        r = client.post("/vms", json={**body, "host_selector": {"e2e-run": stack.run}})
        assert r.status_code in (200, 201), r.text
    return f"{vms_namespace}/seen"
