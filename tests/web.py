"""What the web page's tests share: a real station (``scanstation up``: its own redis-server, real workers
and OCR), Debian's chromium driven by Playwright, a watch on the browser console and on every request, and
screenshots of each screen at both screen sizes kept as test artefacts.

Artefacts go to ``$SCANSTATION_ARTIFACTS`` or ``test-artifacts/`` at the top of the checkout:
``screens/<name>-1366x768.png`` and ``…-1920x1080.png``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.test_station import Station

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("SCANSTATION_ARTIFACTS") or ROOT / "test-artifacts")
SCREENS = ARTIFACTS / "screens"
SIZES = [(1366, 768), (1920, 1080)]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "十二个字符的密码abcd"


def scanstation(station: Station, *args: str, stdin: str | None = None) -> str:
    """Run the station's CLI against its data folder (as an admin at the machine would)."""
    exe = Path(sys.executable).with_name("scanstation")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCANSTATION_")}
    out = subprocess.run(
        [str(exe), *args, "--data", str(station.data)], input=stdin, capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def create_user(station: Station, name: str, role: str, fonds: str | None = None) -> None:
    args = ["user", "create", name, "--role", role, "--password-stdin"]
    if fonds:
        args += ["--fonds", fonds]
    scanstation(station, *args, stdin=PASSWORD + "\n")


@pytest.fixture(scope="module")
def web_station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    """One running station for a module's browser tests (starting one takes a few seconds)."""
    station = Station(tmp_path_factory.mktemp("web"))
    station.start()
    yield station
    if station.proc is not None and station.proc.poll() is None:
        station.stop()


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    """Debian's chromium, for one test module: a Playwright left running past its module keeps its event
    loop on the main thread, and a later test that runs one of its own (anyio.run) fails."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian's chromium is not at {CHROMIUM}: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@dataclass
class Web:
    """One browser context on the station, with what it saw go wrong."""

    station: Station
    context: object
    page: object
    console_errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.station.base

    def goto(self, path: str) -> None:
        self.page.goto(self.base + path)  # type: ignore[attr-defined]

    def login(self, name: str, password: str = PASSWORD, then: str = "/") -> None:
        page = self.page
        page.goto(f"{self.base}/login?next={then}")  # type: ignore[attr-defined]
        page.fill("#name", name)  # type: ignore[attr-defined]
        page.fill("#password", password)  # type: ignore[attr-defined]
        page.click("#login-submit")  # type: ignore[attr-defined]
        page.wait_for_selector("#top .who")  # type: ignore[attr-defined]

    def shot(self, name: str) -> list[Path]:
        """The screen as it is now, at 1366×768 and 1920×1080 (then back to the first)."""
        SCREENS.mkdir(parents=True, exist_ok=True)
        paths = []
        for width, height in [*SIZES[1:], SIZES[0]]:
            self.page.set_viewport_size({"width": width, "height": height})  # type: ignore[attr-defined]
            self.page.wait_for_timeout(150)  # type: ignore[attr-defined]
            path = SCREENS / f"{name}-{width}x{height}.png"
            self.page.screenshot(path=str(path))  # type: ignore[attr-defined]
            paths.append(path)
        return paths

    def fits(self) -> None:
        """Nothing sticks out sideways at either screen size (a horizontal scroll bar is a layout bug)."""
        for width, height in SIZES:
            self.page.set_viewport_size({"width": width, "height": height})  # type: ignore[attr-defined]
            over = self.page.evaluate("document.documentElement.scrollWidth - innerWidth")  # type: ignore[attr-defined]
            assert over <= 1, f"the page is {over}px wider than a {width}×{height} screen"
        self.page.set_viewport_size({"width": SIZES[0][0], "height": SIZES[0][1]})  # type: ignore[attr-defined]

    def clean(self) -> None:
        """No error in the browser console and no request to any host but the station."""
        assert not self.foreign, f"requests left the station: {self.foreign}"
        assert not self.console_errors, f"console errors: {self.console_errors}"


def open_web(browser, station: Station) -> Web:  # type: ignore[no-untyped-def]
    """A fresh browser context on the station (another person at another PC), watched on every tab it opens:
    console errors, uncaught errors, and requests to any other host (refused, as with no network)."""
    context = browser.new_context(
        viewport={"width": SIZES[0][0], "height": SIZES[0][1]}, locale="zh-CN", timezone_id="Asia/Shanghai"
    )
    seen = Web(station, context, None)
    station_netloc = urlsplit(station.base).netloc

    def on_request(route, request) -> None:  # type: ignore[no-untyped-def]
        seen.foreign.append(request.url)  # never let it out: the archive room may have no network at all
        route.abort()

    # Every URL but the station's (and data:, blob:, about:) is stopped. The pattern is matched in the browser's
    # driver, so the station's own requests do not wait for this process: the page loads as fast as a
    # person's would, and the timing tests measure the station, not the test's interception.
    station_root = re.escape(f"{urlsplit(station.base).scheme}://{station_netloc}/")
    context.route(re.compile(f"^(?!{station_root}|data:|blob:|about:)"), on_request)

    def on_console(msg) -> None:  # type: ignore[no-untyped-def]
        if msg.type == "error":
            seen.console_errors.append(f"{msg.text} @ {msg.location.get('url')}")

    # On the context, not the first page: a tab the test opens later is watched as well.
    context.on("console", on_console)
    context.on("weberror", lambda error: seen.console_errors.append(f"uncaught: {error.error}"))
    seen.page = context.new_page()
    return seen


@pytest.fixture
def web(browser, web_station: Station) -> Iterator[Web]:  # type: ignore[no-untyped-def]
    seen = open_web(browser, web_station)
    yield seen
    seen.context.close()  # type: ignore[attr-defined]
