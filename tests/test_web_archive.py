"""The archive screens in a real browser on a real station: a name searched, its hit opening the item at
its page (viewer, text, PDF link); the archive browsed 全宗 → 门类 → 年度 → 件 and a description changed,
a wrong value refused beside its field; readers of another fonds seeing nothing, readers of the fonds the
open item."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from playwright.sync_api import expect

from tests.conftest import SAMPLE
from tests.test_station import Station
from tests.web import Web, create_user

pytestmark = pytest.mark.slow

CODE = "C015-WS·2013-Y-BGS-0001"
TITLE = "农村土地承包经营权合同"
PAGES = ["scan_0001.jpg", "scan_0003.jpg", "scan_0008.png"]  # the batch's pages 1, 2, 3 (name order)
NAME = "侯福"  # 承包方代表 on scan_0008 only: page 3
CATALOGUE = f"""序号,档号,题名,责任者,页数,开放标识
1,{CODE},{TITLE},东部风景社区村民委员会,3,开放
2,C015-WS·2013-Y-BGS-0002,养老保险名册,东部风景社区村民委员会,2,开放
3,C016-WS·2013-Y-0001,村规民约,留守坟村村民委员会,1,开放
"""


def call(station: Station, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
    """The API as the admin's token (station.token) sees it."""
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {station.token}", "Content-Type": content_type}
    req = urllib.request.Request(station.base + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as reply:
        raw = reply.read()
        return json.loads(raw) if "json" in reply.headers.get("Content-Type", "") else raw.decode()


def item_path(code: str = CODE) -> str:
    return f"/api/items/{quote(code)}"


@pytest.fixture(scope="module")
def archive(web_station: Station, tmp_path_factory: pytest.TempPathFactory) -> Station:
    """The catalogue imported and one item scanned and filed, as a station would have them; the people."""
    station = web_station
    truth = {e["file"]: "".join(e["lines"]) for e in json.loads((SAMPLE.parent / "truth.json").read_text("utf-8"))}
    assert [n for n in PAGES if NAME in truth[n]] == ["scan_0008.png"], "the name must be on page 3 alone"
    imported = call(station, "POST", "/api/catalogue?filename=x.csv", CATALOGUE, "text/csv; charset=utf-8")
    assert imported["created"] == 3
    staging = tmp_path_factory.mktemp("staging") / CODE
    staging.mkdir()
    for name in PAGES:
        shutil.copy(SAMPLE / name, staging / name)
    (staging / ".done").touch()
    os.rename(staging, station.inbox / CODE)  # as the scanner's operator moves a finished folder in
    [batch] = station.wait(lambda bs: len(bs) == 1 and bs[0]["state"] in ("done", "needs_review", "failed"), 300)
    if batch["state"] == "needs_review":  # a flag on a page: a person looked and it stands
        call(station, "POST", f"/api/batches/{batch['id']}/accept", {"note": "checked"})
    station.wait(lambda bs: bs[0]["state"] == "done" and bs[0]["archival_code"] == CODE, 120)
    item = call(station, "GET", item_path())
    assert item["pages_filed"] == 3 and item["page_check"] is None
    found = call(station, "GET", "/api/search?" + urlencode({"q": NAME}))
    assert [(h["archival_code"], h["page"]) for h in found["hits"]] == [(CODE, 3)], found
    assert NAME in call(station, "GET", item_path() + "/pages/3/text")
    create_user(station, "李档案", "archivist", "C015")
    create_user(station, "赵读者", "reader", "C016")
    create_user(station, "钱读者", "reader", "C015")
    return station


def test_a_name_searched_opens_its_item_at_the_page_it_is_on(web: Web, archive: Station) -> None:
    page = web.page
    web.login("李档案", then="/search")
    page.wait_for_url("**/search")
    page.keyboard.press("/")
    expect(page.locator("#q")).to_be_focused()
    page.keyboard.type(NAME)
    page.keyboard.press("Enter")
    hits = page.locator("#hits li")
    expect(hits).to_have_count(1)
    expect(page.locator("#hit-count")).to_have_text("找到 1 处")
    expect(hits.first.locator(".code")).to_have_text(CODE)
    expect(hits.first.locator(".hit-title")).to_have_text(TITLE)
    expect(hits.first.locator(".hit-page")).to_have_text("第 3 页")
    expect(hits.first.locator(".snippet mark")).to_have_text(NAME)
    assert "q=" in page.url and "%E4%BE%AF%E7%A6%8F" in page.url, "the search is in the URL"
    web.fits()
    web.shot("search-hits")
    page.keyboard.press("ArrowDown")
    expect(page.locator("#hits a.hit-link").first).to_be_focused()
    page.keyboard.press("Enter")  # the hit opens the item at its page
    page.wait_for_url("**/items/**")
    assert "page=3" in page.url
    expect(page.locator("#item-code")).to_have_text(CODE)
    expect(page.locator("#page-no")).to_have_text("第 3 页")
    expect(page.locator("#page-text")).to_contain_text(NAME)
    expect(page.locator("#page-text mark").first).to_have_text(NAME)
    pdf = page.locator("#open-pdf")
    expect(pdf).to_have_attribute("href", f"/api/items/{quote(CODE, safe='')}/pdf#page=3")
    expect(pdf).to_have_attribute("target", "_blank")
    expect(page.locator(".thumb[aria-selected=true]")).to_have_text("3")
    expect(page.locator("#page-image")).to_have_js_property("complete", True)
    assert page.locator("#page-image").evaluate("img => img.naturalWidth") > 500, "the page's image is shown"
    web.fits()
    web.shot("item")
    page.keyboard.press("ArrowLeft")  # previous page, by key
    expect(page.locator("#page-no")).to_have_text("第 2 页")
    assert page.url.endswith("page=2") or "page=2&" in page.url
    expect(page.locator("#open-pdf")).to_have_attribute("href", f"/api/items/{quote(CODE, safe='')}/pdf#page=2")
    expect(page.locator("#page-text")).not_to_contain_text(NAME)
    page.locator(".thumb").nth(0).click()
    expect(page.locator("#page-no")).to_have_text("第 1 页")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#page-no")).to_have_text("第 2 页")
    # The 利用登记 of this item: the archivist sees the views just made.
    page.reload()
    expect(page.locator("#access-rows tbody tr").first).to_be_visible()
    expect(page.locator("#access-rows")).to_contain_text("李档案")
    web.clean()


def test_browse_down_to_the_item_and_change_its_description(web: Web, archive: Station) -> None:
    page = web.page
    web.login("李档案", then="/archive")
    page.wait_for_url("**/archive")
    levels = page.locator(".level-link")
    expect(levels).to_have_count(1)  # an archivist of C015 sees that fonds only
    expect(levels.first).to_contain_text("全宗 C015")
    expect(levels.first).to_contain_text("2 件")
    expect(levels.first).to_contain_text("已扫描 1 件 · 3 页")
    web.fits()
    web.shot("archive-fonds")
    levels.first.click()
    expect(page.locator(".crumbs [aria-current]")).to_have_text("全宗 C015")
    expect(levels).to_have_count(1)
    expect(levels.first).to_contain_text("WS 文书")
    web.shot("archive-category")
    page.keyboard.press("Enter")  # the first value has the focus: Enter goes in
    expect(page.locator(".crumbs [aria-current]")).to_have_text("门类 WS 文书")
    expect(levels.first).to_contain_text("2013 年度")
    web.shot("archive-year")
    levels.first.click()
    rows = page.locator("#items tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#items-count")).to_have_text("共 2 件")
    first = rows.nth(0)
    expect(first.locator("a.code")).to_have_text(CODE)
    expect(first).to_contain_text("3 / 3")
    expect(first.locator(".page-check")).to_have_text("相符")
    expect(rows.nth(1).locator(".page-check")).to_have_text("未扫描")
    expect(first).to_contain_text("开放")
    web.fits()
    web.shot("archive-items")
    page.keyboard.press("Backspace")  # one level up, by key
    expect(page.locator(".crumbs [aria-current]")).to_have_text("门类 WS 文书")
    page.go_back()
    first.locator("a.code").click()
    page.wait_for_url("**/items/**")
    expect(page.locator("#page-no")).to_have_text("第 1 页")

    # A wrong 页数 is refused beside its field, and nothing is sent.
    page.fill("#f-pages", "0")
    expect(page.locator("#f-pages-error")).to_have_text("请填 1 到 9999 之间的整数。")
    page.click("#save")
    expect(page.locator(".form-status")).to_have_text("有填写错误，请按提示改正后再保存。")
    expect(page.locator("#f-pages")).to_have_attribute("aria-invalid", "true")
    assert call(archive, "GET", item_path())["pages"] == 3
    web.shot("item-field-error")

    # A right one is saved (Ctrl+Enter), and the page-count check follows it.
    page.fill("#f-pages", "4")
    expect(page.locator("#f-pages-error")).to_have_text("")
    page.fill("#f-doc_number", "东风村〔2013〕12号")
    page.keyboard.press("Control+Enter")
    expect(page.locator(".form-status")).to_contain_text("已保存")
    item = call(archive, "GET", item_path())
    assert (item["pages"], item["doc_number"], item["page_check"]) == (4, "东风村〔2013〕12号", "missing_pages")
    expect(page.locator("#page-check .page-check")).to_have_text("漏扫")
    expect(page.locator("#page-check-text")).to_contain_text("漏扫 1 页")
    expect(page.locator("#f-pages")).to_have_value("4")
    web.shot("item-saved")
    call(archive, "PUT", item_path(), {"pages": 3})  # as it was, for the other tests
    web.clean()


def test_a_reader_of_another_fonds_sees_nothing_of_it(web: Web, archive: Station) -> None:
    page = web.page
    web.login("赵读者", then="/archive")
    page.wait_for_url("**/archive")
    levels = page.locator(".level-link")
    expect(levels).to_have_count(1)
    expect(levels.first).to_contain_text("全宗 C016")
    expect(page.locator("#level")).not_to_contain_text("C015")
    web.goto("/archive?fonds=C015&category=WS")
    expect(page.locator("#level-empty")).to_have_text("这个门类里没有您可以查看的档案。")
    web.goto("/search?" + urlencode({"q": NAME}))
    expect(page.locator("#no-hits")).to_contain_text(f"没有找到“{NAME}”")
    expect(page.locator("#hits")).to_have_count(0)
    web.shot("search-none")
    web.goto(f"/items/{quote(CODE)}?page=3")
    expect(page.locator("#not-found")).to_contain_text("找不到或无权查看")
    expect(page.locator("#viewer")).to_have_count(0)
    web.fits()
    web.shot("item-hidden")
    # The one answer that should be a 404: the hidden item itself, asked for by its URL.
    hidden = (
        f"Failed to load resource: the server responded with a status of 404 (Not Found) @ {archive.base}{item_path()}"
    )
    assert hidden in web.console_errors, web.console_errors
    web.console_errors.remove(hidden)

    # A reader of C015 finds the open item and reads it; its description is not a form to change.
    page.click("#logout")
    page.wait_for_url("**/login")
    web.login("钱读者", then="/search?" + urlencode({"q": NAME}))
    expect(page.locator("#hits li")).to_have_count(1)
    page.locator("#hits a.hit-link").first.click()
    expect(page.locator("#page-no")).to_have_text("第 3 页")
    expect(page.locator("#page-text")).to_contain_text(NAME)
    expect(page.locator("#f-title")).to_have_value(TITLE)
    expect(page.locator("#f-title")).to_have_attribute("readonly", "")
    expect(page.locator("#save")).to_have_count(0)
    expect(page.locator("#access-log")).to_have_count(0)
    web.shot("item-reader")
    web.goto("/archive")
    expect(page.locator(".level-link")).to_have_count(1)
    expect(page.locator(".level-link").first).to_contain_text("全宗 C015")
    web.clean()


def test_the_archive_screens_refuse_a_wrong_year_before_asking(web: Web, archive: Station) -> None:
    page = web.page
    web.login("钱读者", then="/search")
    page.fill("#q", NAME)
    page.fill("#year", "13")
    page.keyboard.press("Enter")
    expect(page.locator("#year-error")).to_have_text("年度请填 1900 到 2100 之间的四位数。")
    expect(page.locator("#hits")).to_have_count(0)
    page.fill("#year", "2013")
    page.keyboard.press("Enter")
    expect(page.locator("#hits li")).to_have_count(1)
    page.fill("#year", "2014")
    page.keyboard.press("Enter")
    expect(page.locator("#no-hits")).to_be_visible()
    web.clean()
