"""目录导入 and 管理 in a real browser on a real station: a catalogue checked row by row before anything is
stored, imported, separator sheets for chosen items; people, tokens, fonds settings, grants and the
利用登记 managed by an admin; an operator told there is nothing for them there."""

from __future__ import annotations

import io
import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pikepdf
import pytest
from playwright.sync_api import expect

from tests.conftest import SAMPLE
from tests.test_station import Station
from tests.web import PASSWORD, Web, create_user, open_web

pytestmark = pytest.mark.slow

HEADER = "序号,档号,题名,页数,密级,开放标识\n"
GOOD_ROWS = (
    "1,C021-WS·2016-Y-BGS-0001,村民委员会会议记录,3,,开放\n"
    "2,C021-WS·2016-Y-BGS-0002,土地承包合同,2,,开放\n"
    "3,C021-WS·2016-Y-BGS-0003,养老保险名册,2,,开放\n"
)
BAD_ROWS = GOOD_ROWS.replace("C021-WS·2016-Y-BGS-0002", "C021-WS·2016-X-BGS-0002")
SECRET_CODE = "C022-WS·2016-Y-BGS-0001"


def call(station: Station, path: str, *, method: str = "GET", body: Any = None, secret: str | None = None) -> Any:
    """The API as a system sees it (the station's admin token, or ``secret``): (status, JSON or bytes)."""
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(station.base + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {secret or station.token}")
    if isinstance(body, str):
        request.add_header("Content-Type", "text/csv")
    elif body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request) as reply:
            raw = reply.read()
            status = reply.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


@pytest.fixture
def other(browser, web_station: Station) -> Iterator[Web]:  # type: ignore[no-untyped-def]
    """A second browser context (another person at another PC), watched as the first is."""
    seen = open_web(browser, web_station)
    yield seen
    seen.context.close()  # type: ignore[attr-defined]


def test_check_a_catalogue_see_the_bad_row_fix_it_import_and_print_separator_sheets(web: Web, tmp_path: Path) -> None:
    station, page = web.station, web.page
    create_user(station, "陈档案", "archivist")
    web.login("陈档案", then="/import")
    expect(page.locator("h1")).to_have_text("目录导入")
    # Dropped on the page as an archivist drags it from the desktop.
    page.evaluate(
        """([name, text]) => {
          const dt = new DataTransfer();
          dt.items.add(new File([text], name, {type: "text/csv"}));
          document.querySelector("#drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
        }""",
        ["目录.csv", HEADER + BAD_ROWS],
    )
    rows = page.locator("#check-errors tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("第 3 行")
    expect(rows.first).to_contain_text("保管期限只能是 Y（永久）、D30（30 年）或 D10（10 年）")
    expect(page.locator("#check-summary")).to_contain_text("未导入任何一行")
    expect(page.locator("#import")).to_be_disabled()
    assert call(station, "/api/items?fonds=C021")[1] == [], "the check stored nothing"
    web.fits()
    web.shot("import-bad-row")

    fixed = tmp_path / "目录-改正.csv"
    fixed.write_text(HEADER + GOOD_ROWS, encoding="utf-8")
    page.set_input_files("#catalogue-file", str(fixed))
    expect(page.locator("#check-summary")).to_contain_text("检查通过：共 3 行，导入后将新建 3 件、更新 0 件")
    expect(page.locator("#import")).to_be_enabled()
    assert call(station, "/api/items?fonds=C021")[1] == []
    page.keyboard.press("i")  # the import's key
    expect(page.locator("#import-done")).to_have_text("已导入 3 行：新建 3 件，更新 0 件。")
    status, items = call(station, "/api/items?fonds=C021")
    assert status == 200 and [i["title"] for i in items] == ["村民委员会会议记录", "土地承包合同", "养老保险名册"]

    page.select_option("#sep-fonds", "C021")
    expect(page.locator("#sep-items tbody tr")).to_have_count(3)
    page.check("input.sep-choose[value='C021-WS·2016-Y-BGS-0001']")
    page.check("input.sep-choose[value='C021-WS·2016-Y-BGS-0003']")
    expect(page.locator("#sep-count")).to_have_text("已选 2 件")
    href = page.get_attribute("#print-separators", "href")
    assert href and "code=" in href
    reply = page.request.get(web.base + href)  # with the archivist's login cookie, as the new tab opens it
    assert reply.status == 200 and reply.headers["content-type"] == "application/pdf"
    with pikepdf.open(io.BytesIO(reply.body())) as pdf:
        assert len(pdf.pages) == 2, "one sheet for each item chosen"
    web.fits()
    web.shot("import-done")
    web.clean()


def _file_a_restricted_item(station: Station, tmp_path: Path) -> None:
    """A 秘密 item of fonds C022 with one page filed (a batch named by its 档号, through real OCR)."""
    sheet = HEADER + f"1,{SECRET_CODE},土地确权登记簿,1,秘密,\n"
    status, body = call(station, "/api/catalogue?filename=c022.csv", method="POST", body=sheet)
    assert status == 200, body
    staging = tmp_path / "staging" / SECRET_CODE
    staging.mkdir(parents=True)
    shutil.copy(SAMPLE / "scan_0008.png", staging / "scan_0008.png")
    (staging / ".done").touch()
    os.rename(staging, station.inbox / staging.name)


def test_an_admin_manages_people_tokens_fonds_grants_and_reads_the_access_log(
    web: Web, other: Web, tmp_path: Path
) -> None:
    station, page = web.station, web.page
    _file_a_restricted_item(station, tmp_path)  # OCR runs while the admin works
    create_user(station, "郑管理", "admin")
    web.login("郑管理", then="/admin")
    expect(page.locator("#admin-nav a")).to_have_text(["人员1", "API 令牌2", "全宗设置3", "授权查阅4", "利用登记5"])

    # People: create a reader, who logs in elsewhere and sees the screens of a reader.
    page.fill("#new-user-name", "李查阅")
    page.select_option("#new-user-role", "reader")
    page.fill("#new-user-fonds", "c022")
    page.fill("#new-user-password", PASSWORD)
    page.fill("#new-user-password2", PASSWORD)
    page.click("#new-user-submit")
    row = page.locator("#users-table tr[data-name='李查阅']")
    expect(row).to_contain_text("查阅者")
    expect(row).to_contain_text("C022")
    expect(row).to_contain_text("从未登录")
    expect(page.locator("#new-user-role")).to_have_value("operator")  # the form is ready for the next one
    web.fits()
    web.shot("admin-people")
    other.login("李查阅", then="/archive")
    expect(other.page.locator("#top nav a")).to_have_text(["档案", "检索"])
    expect(other.page.locator("#top .who")).to_have_text("李查阅（查阅者 · C022）")

    # Tokens: made, shown once with a copy button, refused by the API once revoked.
    web.context.grant_permissions(["clipboard-read", "clipboard-write"])  # type: ignore[attr-defined]
    page.keyboard.press("2")
    page.fill("#new-token-name", "县档案馆接口")
    page.select_option("#new-token-role", "reader")
    page.click("#new-token-submit")
    secret = page.locator("#new-token-secret").inner_text()
    assert secret.startswith("sst_")
    expect(page.locator("#new-token-role")).to_have_value("reader")  # never back to admin by itself
    page.click("#copy-token")
    expect(page.locator("#copy-token")).to_have_text("已复制")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    assert call(station, "/api/items", secret=secret)[0] == 200
    token_row = page.locator("#tokens-table tbody tr").filter(has_text="县档案馆接口")
    expect(token_row).to_contain_text("有效")
    web.fits()
    web.shot("admin-tokens")
    page.reload()
    expect(page.locator("#tokens-table")).to_be_visible()
    expect(page.locator("#new-token-secret")).to_have_count(0)  # shown once only
    assert secret not in page.content()
    token_row.locator("button.revoke").click()
    page.locator("dialog button.primary").click()
    expect(token_row).to_contain_text("已吊销")
    assert call(station, "/api/items", secret=secret)[0] == 401, "a revoked token opens nothing"

    # Fonds settings.
    page.keyboard.press("3")
    fonds_row = page.locator("#fonds-table tr[data-code='C022']")
    fonds_row.locator("input.fonds-name").fill("东风村")
    fonds_row.locator("select.fonds-style").select_option("dat13")
    fonds_row.locator("input.fonds-allow").uncheck()
    fonds_row.locator("button.fonds-save").click()
    expect(page.locator("#toasts")).to_contain_text("全宗 C022 的设置已保存")
    [c022] = [f for f in call(station, "/api/fonds")[1] if f["code"] == "C022"]
    assert (c022["name"], c022["code_style"], c022["allow_new_items"]) == ("东风村", "dat13", False)
    web.fits()
    web.shot("admin-fonds")

    # Grants: the reader sees the 秘密 item once granted.
    item = "/api/items/" + quote(SECRET_CODE)
    station.wait(lambda bs: any(b.get("archival_code") == SECRET_CODE and b["state"] == "done" for b in bs), 240)
    assert call(station, item)[1]["pages_filed"] == 1
    assert other.page.request.get(other.base + item).status == 404, "hidden from a reader without a grant"
    page.keyboard.press("4")
    page.fill("#grant-code", SECRET_CODE)
    page.fill("#grant-holder", "李查阅")
    page.fill("#grant-reason", "土地确权查档")
    page.click("#new-grant-submit")
    grant_row = page.locator("#grants-table tbody tr").filter(has_text="李查阅")
    expect(grant_row).to_contain_text("土地确权登记簿")
    expect(grant_row).to_contain_text("有效")
    expect(grant_row).to_contain_text("当天止")
    web.fits()
    web.shot("admin-grants")
    seen = other.page.request.get(other.base + item)
    assert seen.status == 200 and seen.json()["title"] == "土地确权登记簿"
    pdf = other.page.request.get(other.base + item + "/pdf?purpose=" + quote("土地确权"))
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"

    # The 利用登记 shows the reader's download; its CSV has Chinese headers.
    page.keyboard.press("5")
    page.fill("#log-who", "李查阅")
    page.click("#log-search")
    log_row = page.locator("#log-table tbody tr").first
    expect(log_row).to_contain_text("下载 PDF")
    expect(log_row).to_contain_text(SECRET_CODE)
    expect(log_row).to_contain_text("土地确权")
    web.fits()
    web.shot("admin-log")
    csv = page.request.get(web.base + page.get_attribute("#log-csv", "href"))
    assert csv.status == 200 and csv.text().startswith("\ufeff时间,利用者,角色,操作,档号")
    assert "李查阅" in csv.text()

    # Revoking the grant hides the item again; disabling the reader ends their login.
    page.keyboard.press("4")
    grant_row.locator("button.revoke-grant").click()
    page.locator("dialog button.primary").click()
    expect(page.locator("#grants")).to_contain_text("没有授权")
    assert other.page.request.get(other.base + item).status == 404
    page.keyboard.press("1")
    page.locator("#users-table tr[data-name='李查阅'] button.disable").click()
    page.locator("dialog button.primary").click()
    expect(page.locator("#users-table tr[data-name='李查阅']")).to_contain_text("已停用")
    assert other.page.request.get(other.base + "/api/session").status == 401
    expect(page.locator("#users-table tr[data-name='郑管理'] button.disable")).to_be_disabled()
    web.clean()
    other.clean()


def test_an_operator_is_told_there_is_no_access_to_import_and_admin(web: Web) -> None:
    station, page = web.station, web.page
    create_user(station, "吴操作", "operator", "C021")
    web.login("吴操作", then="/admin")
    expect(page.locator("#app .error")).to_have_text("您的账号没有这项权限。")
    expect(page.locator("#top nav a")).to_have_text(["批次", "档案", "检索"])
    web.goto("/import")
    expect(page.locator("#app .error")).to_have_text("您的账号没有这项权限。")
    web.shot("admin-no-access")
    for path in ("/api/users", "/api/tokens", "/api/grants"):
        assert page.request.get(web.base + path).status == 403, path
    csrf = page.evaluate("fetch('/api/session').then(r => r.json()).then(s => s.csrf_token)")
    refused = page.request.post(
        web.base + "/api/catalogue?filename=a.csv&dry_run=true",
        data=HEADER + GOOD_ROWS,
        headers={"Content-Type": "text/csv", "X-CSRF-Token": csrf},
    )
    assert refused.status == 403
    web.clean()
