"""The web page's front door in a real browser: log in, the header by role, a wrong password said in
Chinese, logging out, and a screen asked for without a login sends the person to the login first."""

from __future__ import annotations

import urllib.request
import uuid

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from tests.web import PASSWORD, Web, create_user

pytestmark = pytest.mark.slow


def test_log_in_see_the_screens_of_ones_role_and_log_out(web: Web) -> None:
    create_user(web.station, "王安娜", "operator", "C015")
    page = web.page
    web.goto("/search")
    page.wait_for_url("**/login?next=%2Fsearch")
    assert web.console_errors == [], "a first visit goes to the login without a refused request"
    web.goto("/")
    page.wait_for_url("**/login?next=%2F")
    page.fill("#name", "王安娜")
    page.fill("#password", "不是这个密码123")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_have_text("用户名或密码不对。")
    # The refused login is a 401, as it should be; nothing else.
    refused = "the server responded with a status of 401 (Unauthorized) @ " + web.base + "/api/session"
    assert web.console_errors and all(refused in e for e in web.console_errors), web.console_errors
    web.console_errors.clear()
    web.shot("login")
    web.login("王安娜", then="/search")
    page.wait_for_url("**/search")
    expect(page.locator("#top .who")).to_have_text("王安娜（操作员 · C015）")
    expect(page.locator("#top nav a")).to_have_text(["批次", "档案", "检索"])
    web.fits()
    page.click("#logout")
    page.wait_for_url("**/login")
    web.clean()


def test_the_page_names_no_other_host(web: Web) -> None:
    with urllib.request.urlopen(web.base + "/batches") as reply:
        policy = reply.headers["Content-Security-Policy"]
        html = reply.read().decode()
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    assert "http://" not in html and "https://" not in html and 'lang="zh-CN"' in html


def test_the_browser_of_these_tests_reaches_no_host_but_the_station(web: Web) -> None:
    # What every web test relies on for "works with no network": a request to any other host is stopped
    # and noted (a look-alike address that only starts with the station's too), the station's own go through.
    web.goto("/login")
    other_address = web.base.replace("127.0.0.1", "127.0.0.2") + "/login"
    look_alike = web.base[:-1] + "/x"  # the station's port but its last digit: another server
    elsewhere = ["http://192.0.2.7/archive", other_address, look_alike]
    for url in elsewhere:
        with pytest.raises(PlaywrightError):
            web.page.goto(url)
    assert web.foreign == elsewhere
    web.foreign.clear()
    # A new tab: the first one is on the browser's error page.
    page = web.context.new_page()  # type: ignore[attr-defined]
    page.goto(web.base + "/login")
    expect(page.locator("#login-submit")).to_be_visible()
    assert web.foreign == []


def test_the_package_ships_every_screen_and_its_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A plain install (the Docker image's) has the shell and every script, style and picture the screens load."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    from scanner_service.api.routes.web import SCREENS, STATIC, STYLES

    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(root),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("scanstation-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "scanner_service/api/web/shell.html" in names
    shipped = {n.rsplit("/", 1)[-1] for n in names if n.startswith("scanner_service/api/web/static/")}
    assert {f"{script}.js" for script, _ in SCREENS.values()} <= shipped
    assert {name for names in STYLES.values() for name in names} <= shipped, "every style a screen names"
    assert {p.name for p in STATIC.iterdir()} == shipped, "every file in static/ is in the package"


@pytest.mark.parametrize("elsewhere", ["/\\example.org/login", "/\t/example.org/login", "https://example.org/"])
def test_a_link_to_the_login_cannot_send_the_person_to_another_host(web: Web, elsewhere: str) -> None:
    """A link mailed to staff, /login?next=/\\example.org (a browser reads "/\\" as "//"), must not take the
    person who logs in to a look-alike page."""
    from urllib.parse import quote

    name = f"马丽{uuid.uuid4().hex[:6]}"
    create_user(web.station, name, "reader", "C015")
    page = web.page
    page.goto(f"{web.base}/login?next={quote(elsewhere)}")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#top .who")
    assert page.url.startswith(web.base + "/"), page.url
    web.clean()
