"""The 批次详情 screen in a real browser on a real station: an operator reviews a batch with the keyboard only
(a page fed sideways that the station was unsure about, a back page taken for blank that carries a pencil
note), accepts what remains and files it under a 档号 found as she types; pages reordered by drag and drop;
a 500-page batch opens in under a second."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import pytest
from PIL import Image, ImageDraw, ImageFont
from playwright.sync_api import Page, expect

from scanner_service.archive import previews
from scanner_service.settings import Settings
from tests.conftest import SAMPLE
from tests.review_seed import FLAGGED_EVERY, seed_processed_batch
from tests.test_corrections_batch import faint
from tests.test_station import Station
from tests.web import Web, create_user

pytestmark = pytest.mark.slow

FONT = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
CODE = "C015-WS·2013-Y-BGS-0007"
PENCIL = "背面注：经办人王强核对"


def call(
    station: Station, method: str, path: str, body: bytes | None = None, type: str = "application/json"
) -> dict[str, Any]:
    request = urllib.request.Request(station.base + path, data=body, method=method)
    request.add_header("Authorization", f"Bearer {station.token}")
    if body is not None:
        request.add_header("Content-Type", type)
    with urllib.request.urlopen(request) as reply:
        answer: dict[str, Any] = json.loads(reply.read())
        return answer


def pencilled_back() -> Image.Image:
    """A blank back (the sample's bleed-through and all) with one short, faint pencil line: the station
    takes it for blank, but it holds text."""
    with Image.open(SAMPLE / "scan_0006.jpg") as im:
        page = im.convert("L")
    ImageDraw.Draw(page).text((400, 700), PENCIL, fill=186, font=ImageFont.truetype(FONT, 56))
    return page


def drop(station: Station, tmp: Path, name: str, pages: dict[str, Image.Image | str]) -> None:
    staging = tmp / "staging" / name
    staging.mkdir(parents=True)
    for file_name, page in pages.items():
        if isinstance(page, str):
            shutil.copy(SAMPLE / page, staging / file_name)
        else:
            page.save(staging / file_name, dpi=(300, 300))
    (staging / ".done").touch()
    os.rename(staging, station.inbox / name)  # as the scanner's software moves a finished folder in


def settings_of(station: Station) -> Settings:
    return Settings(data=station.data.resolve(), inbox=station.inbox.resolve())


def detail(station: Station, batch_id: int) -> dict[str, Any]:
    return call(station, "GET", f"/api/batches/{batch_id}")


def wait_page(
    web: Web, batch_id: int, seq: int, predicate: Callable[[dict[str, Any]], bool], timeout: float = 180
) -> dict[str, Any]:
    """The page as the API shows it once ``predicate`` holds. It waits through the browser (not time.sleep):
    the fixture's request watch runs in this thread, and the page's requests wait for it."""
    deadline = time.monotonic() + timeout
    while True:
        found = next(p for p in detail(web.station, batch_id)["page_list"] if p["seq"] == seq)
        if predicate(found):
            return found
        assert time.monotonic() < deadline, f"page {seq} not there in {timeout} s: {found}"
        cast(Page, web.page).wait_for_timeout(500)


def found(web: Web, words: str, timeout: float = 60) -> list[tuple[int, int]]:
    """Where search finds ``words`` (batch, page), once it finds them at all: the batch's pages are indexed
    again when its PDF is rebuilt, a moment after the page is."""
    deadline = time.monotonic() + timeout
    while True:
        hits = call(web.station, "GET", "/api/search?q=" + quote(words))["hits"]
        if hits or time.monotonic() > deadline:
            return [(h["batch_id"], h["page"]) for h in hits]
        cast(Page, web.page).wait_for_timeout(500)


def test_an_operator_reviews_a_batch_by_keyboard_and_files_it(web: Web, tmp_path: Path) -> None:
    station, page = web.station, cast(Page, web.page)
    create_user(station, "王安娜", "operator", "C015")
    sheet = f"序号,档号,题名,页数\n7,{CODE},关于留守坟村土地承包的合同,3\n".encode()
    call(station, "POST", "/api/catalogue?filename=" + quote("目录.csv"), sheet, "text/csv")
    name = "C015 文书 2013 第七批"  # not a 档号: the operator files it herself
    drop(
        station,
        tmp_path,
        name,
        {
            "001.jpg": "scan_0004.jpg",  # a land contract, upright
            "002.png": faint("scan_0003.jpg", 0.3, turn=90),  # fed sideways, faded: the station is unsure
            "003.png": pencilled_back(),
        },
    )
    [batch] = [
        b
        for b in station.wait(lambda bs: any(b["name"] == name and b["state"] == "needs_review" for b in bs), 300)
        if b["name"] == name
    ]
    batch_id = batch["id"]
    pages = {p["seq"]: p for p in detail(station, batch_id)["page_list"]}
    assert pages[2]["open_flags"] == ["orientation_unsure"] and pages[2]["details"]["turn"] == 0
    assert pages[3]["open_flags"] == ["blank"] and pages[1]["open_flags"] == []

    web.login("王安娜", then=f"/batches/{batch_id}")
    page.wait_for_url(f"**/batches/{batch_id}**")
    expect(page.locator("#batch-state")).to_have_text("待审核")
    expect(page.locator(".thumb")).to_have_count(3)
    expect(page.locator('.thumb[data-seq="2"] .badge.flag')).to_have_text(["方向不确定"])
    expect(page.locator('.thumb[data-seq="3"] .badge.flag')).to_have_text(["空白"])
    expect(page.locator("#viewer-title")).to_contain_text("第 2 页")  # the first page waiting for a person
    expect(page.locator("#master-frame img")).not_to_have_js_property("naturalWidth", 0)
    expect(page.locator("#processed-frame img")).not_to_have_js_property("naturalWidth", 0)
    expect(page.locator("#viewer .tools")).to_contain_text("向右转 ]E")
    page.select_option("#flag-filter", "open")
    expect(page.locator(".thumb:not([hidden])")).to_have_count(2)
    expect(page.locator("#grid-count")).to_contain_text("显示 2 / 3 页")
    web.shot("batch-review")

    # Keyboard only from here. J / K move through the pages shown; ] turns the page a quarter right.
    page.keyboard.press("j")
    expect(page.locator("#viewer-title")).to_contain_text("第 3 页")
    page.keyboard.press("k")
    expect(page.locator("#viewer-title")).to_contain_text("第 2 页")
    page.keyboard.press("+")
    page.keyboard.press("0")
    page.keyboard.press("]")
    turned = wait_page(web, batch_id, 2, lambda p: p["state"] == "done" and p["version"] == 2)
    assert turned["correction"] == {"turn": 90} and turned["details"]["turn"] == 90 and turned["open_flags"] == []
    assert found(web, "东方家园") == [(batch_id, 2)], "turned upright, the page reads"
    expect(page.locator('.thumb[data-seq="2"] .mark')).to_have_text("✎ 已更正")
    expect(page.locator("#viewer-state")).to_have_text("完成")

    page.keyboard.press("n")  # the next page still waiting: the false blank
    expect(page.locator("#viewer-title")).to_contain_text("第 3 页")
    page.keyboard.press("b")
    cleared = wait_page(web, batch_id, 3, lambda p: p["state"] == "done" and p["version"] >= 2)
    assert cleared["blank"] is False and cleared["correction"] == {"blank": False}
    where = found(web, "王强")
    assert where == [(batch_id, 3)], f"the pencil note is read, and found once the PDF is rebuilt: {where}, {cleared}"
    expect(page.locator('.thumb[data-seq="3"] .mark')).to_have_text("✎ 已更正")
    expect(page.locator('.thumb[data-seq="3"] .busy')).to_have_count(0)
    page.keyboard.press("Shift+A")  # accept whatever the new reading left open
    expect(page.locator("#accept-dialog")).to_be_visible()
    page.keyboard.type("已与纸质原件核对")
    page.keyboard.press("Enter")
    expect(page.locator("#batch-state")).to_have_text("完成", timeout=60_000)
    assert all(not p["open_flags"] for p in detail(station, batch_id)["page_list"])

    # F: file it under the 档号 found by typing part of it.
    page.keyboard.press("f")
    expect(page.locator("#file-dialog")).to_be_visible()
    page.keyboard.press("Control+a")
    page.keyboard.type("BGS 0007")
    expect(page.locator("#file-dialog .suggest li[data-code]")).to_have_count(1)
    expect(page.locator("#file-dialog .suggest li[data-code]")).to_contain_text("关于留守坟村土地承包的合同")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(page.locator("#file-code")).to_have_value(CODE)
    page.keyboard.press("Enter")
    expect(page.locator("#filed-as a")).to_have_text(CODE, timeout=60_000)
    expect(page.locator("#filed-as a")).to_have_attribute("href", "/items/" + quote(CODE, safe=""))
    item = call(station, "GET", "/api/items/" + quote(CODE))
    assert item["pages_filed"] == 3 and item["page_check"] is None
    filing = detail(station, batch_id)["filing"]
    assert [(e["archival_code"], e["batch_pages"]) for e in filing["by_hand"]] == [(CODE, [1, 2, 3])]
    web.shot("batch-filed")
    web.fits()
    web.clean()


def test_pages_are_reordered_by_drag_and_drop(web: Web, tmp_path: Path) -> None:
    station, page = web.station, cast(Page, web.page)
    create_user(station, "李明", "operator", "C015")
    batch_id = seed_processed_batch(settings_of(station), "C015 拖放排序", 4, tmp_path / "seed")
    web.login("李明", then=f"/batches/{batch_id}")
    expect(page.locator(".thumb")).to_have_count(4)
    for n in range(4):  # what a person drags is what she sees
        expect(page.locator(".thumb img").nth(n)).to_have_js_property("naturalWidth", 240)
    page.drag_and_drop('.thumb[data-seq="3"]', '.thumb[data-seq="1"]', target_position={"x": 4, "y": 60})
    expect(page.locator(".thumb").first).to_have_attribute("data-seq", "3")
    order = sorted(detail(station, batch_id)["page_list"], key=lambda p: p["position"])
    assert [p["seq"] for p in order] == [3, 1, 2, 4]
    expect(page.locator(".thumb .pos")).to_have_text(["1", "2", "3", "4"])
    page.locator('.thumb[data-seq="4"]').click()
    page.keyboard.press("Shift+ArrowLeft")  # the keyboard's way: one place earlier
    expect(page.locator(".thumb").nth(2)).to_have_attribute("data-seq", "4")
    order = sorted(detail(station, batch_id)["page_list"], key=lambda p: p["position"])
    assert [p["seq"] for p in order] == [3, 1, 4, 2]
    web.clean()


def test_a_500_page_batch_opens_in_under_a_second(web: Web, tmp_path: Path) -> None:
    station, page = web.station, cast(Page, web.page)
    create_user(station, "赵敏", "operator", "C015")
    batch_id = seed_processed_batch(settings_of(station), "C015 大批 500 页", 500, tmp_path / "seed")
    web.login("赵敏", then="/batches")
    web.goto(f"/batches/{batch_id}")
    expect(page.locator(".thumb")).to_have_count(500)
    # The thumbnails within the grid's visible part (a function the two scripts below share).
    on_screen = """const onScreen = () => {
          const box = document.querySelector('#thumbs').getBoundingClientRect();
          return [...document.querySelectorAll('.thumb img')].filter((i) => {
            const r = i.getBoundingClientRect();
            return r.bottom > box.top && r.top < box.bottom;
          });
        };"""
    page.wait_for_function(
        "() => { " + on_screen + " const seen = onScreen();"
        " return seen.length > 0 && seen.every((i) => i.complete && i.naturalWidth > 0); }"
    )
    timing = page.evaluate(
        "() => { "
        + on_screen
        + """
          const grid = performance.getEntriesByName('review-grid')[0].startTime;
          const thumbs = performance.getEntriesByType('resource').filter((r) => r.name.includes('/image?'));
          const seen = new Set(onScreen().map((i) => i.src));
          const first = thumbs.filter((r) => seen.has(r.name)).map((r) => r.responseEnd);
          return {grid, thumbs: thumbs.length, seen: first.length, loaded: Math.max(...first)};
        }"""
    )
    print("500-page batch:", timing)
    assert timing["grid"] < 1000, f"the grid was drawn {timing['grid']:.0f} ms after the page was asked for"
    assert timing["loaded"] < 1000, f"the first screen of thumbnails came {timing['loaded']:.0f} ms after"
    assert timing["thumbs"] < 120, "only the thumbnails near the screen are fetched"
    asked = page.evaluate("[...document.querySelectorAll('.thumb img[src]')].map((i) => i.src)")
    made_ahead = f"width={previews.THUMB_WIDTH}&"
    assert asked and all(made_ahead in src for src in asked), "the grid asks for the size the worker made"
    flagged = FLAGGED_EVERY
    expect(page.locator("#viewer-title")).to_contain_text(f"第 {flagged} 页")  # the first page waiting for a person
    last = page.locator(".thumb").last.locator("img")
    assert last.evaluate("(i) => !i.src"), "a thumbnail far down is not fetched before it is scrolled to"
    page.locator(".thumb").last.scroll_into_view_if_needed()
    expect(last).to_have_js_property("naturalWidth", 240)
    page.select_option("#flag-filter", "blank")
    expect(page.locator(".thumb:not([hidden])")).to_have_count(500 // flagged)
    web.shot("batch-500")
    web.fits()
    web.clean()
